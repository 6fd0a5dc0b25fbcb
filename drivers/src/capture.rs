//! TODO(skeleton): capture backend.
