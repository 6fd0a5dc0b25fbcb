//! TODO(skeleton): memory backend.
