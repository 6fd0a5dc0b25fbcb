//! Kernel ABI constants for AF_XDP and XDP that the `libc` crate does not carry.
//!
//! The structs (`sockaddr_xdp`, `xdp_umem_reg`, `xdp_mmap_offsets`, `xdp_desc`,
//! `xdp_statistics`) and the socket-option names come from `libc`; only what it lacks lives
//! here, each value copied from the named uapi header.

use libc::c_int;

/// `XDP_FLAGS_SKB_MODE` (linux/if_link.h): generic XDP, run on the skb after the driver.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE` (linux/if_link.h): native XDP, run by the driver before any skb exists.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `XDP_MAX_TX_SKB_BUDGET` (linux/if_xdp.h, 6.17+): frames one copy-mode TX kick may send.
pub(crate) const XDP_MAX_TX_SKB_BUDGET: c_int = 9;
/// The kernel's default TX budget per kick, and the smallest value it accepts for the option.
pub(crate) const DEFAULT_TX_BUDGET: u32 = 32;

/// `XDP_PACKET_HEADROOM` (linux/bpf.h): in an aligned UMEM the kernel writes a received frame
/// this far into its chunk, so a chunk holds at most `chunk_size - XDP_PACKET_HEADROOM` bytes.
pub(crate) const XDP_PACKET_HEADROOM: u32 = 256;

/// The XDP verdict that hands a frame to the kernel's own stack (`enum xdp_action`).
pub(crate) const XDP_PASS: i32 = 2;
