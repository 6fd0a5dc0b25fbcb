//! sirocco-tools library: simulation harness.
