//! A cache prefetch hint that safe crates can call.
//!
//! `_mm_prefetch` takes a raw pointer and so is an `unsafe fn`, which `sirocco-netstack`
//! (`forbid(unsafe_code)`) cannot call. The netstack takes this function as a plain `fn`
//! pointer instead (`sirocco_netstack::Stack::set_prefetch` in the server), and uses it to
//! bring the flow entries and cells of a received burst into cache ahead of processing them.

/// Asks the CPU to bring the cache line holding `addr` into all cache levels. A hint only:
/// it never faults and has no effect on memory, whatever the address. A no-op on targets
/// other than x86_64.
pub fn prefetch(addr: *const u8) {
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
    fn prefetching_any_address_is_harmless() {
        let data = [7u8; 256];
        for i in 0..data.len() {
            prefetch(data[i..].as_ptr());
        }
        prefetch(std::ptr::null());
        prefetch(usize::MAX as *const u8);
        assert_eq!(data, [7u8; 256]);
    }
}
