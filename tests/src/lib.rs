//! sirocco-tests: shared helpers for the integration tests.
