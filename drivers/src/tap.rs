//! TODO(skeleton): tap backend.
