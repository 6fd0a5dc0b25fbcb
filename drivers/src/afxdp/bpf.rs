//! The `bpf(2)` commands the driver needs, with no libbpf: create an XSKMAP, load an XDP
//! program, point a map slot at a socket, and attach the program with a BPF link.
//!
//! Each command has its own `#[repr(C)]` prefix of `union bpf_attr` (linux/bpf.h); the kernel
//! accepts a shorter attr and treats the rest as zero. The link is what keeps the program on
//! the interface: closing its descriptor (on drop, or when the process dies, even by SIGKILL)
//! detaches the program, unlike a netlink `IFLA_XDP` attach that outlives its owner.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::sys::Fd;

use super::program::Insn;
use crate::sys::xdp::{bpf, bpf_create};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: `BPF_XDP`.
const BPF_XDP: u32 = 37;

const LICENSE: &CStr = c"Dual MIT/GPL";
const LOG_SIZE: usize = 64 * 1024;

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// An object name as the kernel wants it: at most 15 bytes, NUL-padded.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (dst, src) in out.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    out
}

fn raw_u32(fd: BorrowedFd<'_>) -> u32 {
    // A live descriptor is never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// Creates an XSKMAP with slots `0 .. max_entries` (queue index → AF_XDP socket).
pub(crate) fn create_xskmap(max_entries: u32) -> io::Result<Fd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: object_name("sirocco_xsks"),
    };
    // SAFETY: `attr` is the BPF_MAP_CREATE member of `bpf_attr` and holds no pointers.
    unsafe { bpf_create(BPF_MAP_CREATE, &mut attr) }
}

/// A failed program load, with the verifier's log when it gave one.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub(crate) error: io::Error,
    pub(crate) log: String,
}

/// `BPF_F_XDP_HAS_FRAGS` (linux/bpf.h, 5.18+): the program copes with multi-buffer frames
/// (it reads only the first buffer's headers), so drivers may hand it frames longer than a
/// page, and veth accepts native XDP above its single-buffer MTU limit.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// Loads an XDP program, frags-aware if `has_frags`. On failure loads it again with the
/// verifier log on, to say why.
pub(crate) fn load_xdp_program(
    insns: &[Insn],
    name: &str,
    has_frags: bool,
) -> Result<Fd, LoadError> {
    let attempt = |log: Option<&mut [u8]>| -> io::Result<Fd> {
        let (log_level, log_size, log_buf) = match log {
            Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: u32::try_from(insns.len())
                .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: if has_frags { BPF_F_XDP_HAS_FRAGS } else { 0 },
            prog_name: object_name(name),
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
        };
        // SAFETY: `attr` is the BPF_PROG_LOAD member; `insns` points at `insn_cnt` valid
        // 8-byte instructions, `license` at a NUL-terminated string, and `log_buf` (if set)
        // at `log_size` writable bytes; all outlive the call.
        unsafe { bpf_create(BPF_PROG_LOAD, &mut attr) }
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut log = vec![0u8; LOG_SIZE];
            // The second attempt only fetches the explanation; its result does not matter.
            let _ = attempt(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(LoadError { error, log })
        }
    }
}

/// `map[key] = value` for a map with `u32` keys and values (an XSKMAP: queue → socket fd).
pub(crate) fn update_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: raw_u32(map),
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
    };
    // SAFETY: `attr` is the BPF_MAP_UPDATE_ELEM member; `key` and `value` point at live
    // `u32`s matching the map's key and value sizes, and outlive the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }?;
    Ok(())
}

/// Attaches `prog` to interface `ifindex` with a BPF link; `xdp_flags` picks the mode
/// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`). Closing the returned descriptor detaches it.
pub(crate) fn attach_xdp_link(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    xdp_flags: u32,
) -> io::Result<Fd> {
    let mut attr = LinkCreateAttr {
        prog_fd: raw_u32(prog),
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: xdp_flags,
    };
    // SAFETY: `attr` is the BPF_LINK_CREATE member and holds no pointers.
    unsafe { bpf_create(BPF_LINK_CREATE, &mut attr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_match_the_kernel_layout() {
        // Offsets from `union bpf_attr` in linux/bpf.h.
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
    }

    #[test]
    fn object_names_are_cut_and_nul_padded() {
        assert_eq!(&object_name("abc")[..4], b"abc\0");
        let long = object_name("a_very_long_program_name");
        assert_eq!(&long[..15], b"a_very_long_pro");
        assert_eq!(long[15], 0);
    }
}
