//! TODO(skeleton): pcap backend.
