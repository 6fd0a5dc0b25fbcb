//! A cache prefetch hint that safe crates can call.
//!
//! `_mm_prefetch` takes a raw pointer and so is an `unsafe fn`, which `sirocco-netstack`
//! (`forbid(unsafe_code)`) cannot call. The netstack takes this function as a plain `fn`
//! pointer instead (`sirocco_netstack::Stack::set_prefetch` in the server), and uses it to
//! bring the flow entries and cells of a received burst into cache ahead of processing them.

/// Bytes per cache line on every x86_64 CPU sirocco runs on.
const LINE: usize = 64;

/// The most a single call hints: one page. Past that a hint is no longer cheap, and the
/// netstack never asks for more than a few lines.
const MAX_HINT: usize = 4096;

/// Asks the CPU to bring every cache line that the `len` bytes at `addr` touch (in the first
/// 4 KiB of them) into all cache levels, the first line first. A hint only: it never
/// faults and has no effect on memory, whatever the address and length. A no-op on targets
/// other than x86_64.
///
/// It takes a range, not one line, because the netstack calls it through a function pointer
/// (see the module documentation): one call per structure instead of one per line.
pub fn prefetch(addr: *const u8, len: usize) {
    // From the line holding the first byte to the one holding the last; the address is only
    // ever passed to the hint, never read.
    if len == 0 {
        return;
    }
    let offset = addr.addr() % LINE;
    let first = addr.wrapping_sub(offset);
    let lines = (offset + len.min(MAX_HINT)).div_ceil(LINE);
    for line in 0..lines {
        hint(first.wrapping_add(line * LINE));
    }
}

#[inline(always)]
fn hint(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally and never faults, even for an
    // invalid or unmapped address (Intel SDM, PREFETCHh), so any pointer value is fine; SSE,
    // which it needs, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_address_and_length_is_harmless() {
        let data = [7u8; 256];
        for i in 0..data.len() {
            prefetch(data[i..].as_ptr(), data.len() - i);
            prefetch(data[i..].as_ptr(), 0);
        }
        prefetch(std::ptr::null(), 4096);
        prefetch(usize::MAX as *const u8, 1);
        prefetch(usize::MAX as *const u8, 200);
        prefetch(data.as_ptr(), usize::MAX);
        assert_eq!(data, [7u8; 256]);
    }
}
