//! The shared netmap memory region and the `struct netmap_if` at its front door.
//!
//! After `NIOCREGIF` and `mmap`, everything netmap shares with user space lives in one region:
//! a `netmap_if` at `nr_offset`, whose `ring_ofs[]` gives each ring's offset *relative to the
//! `netmap_if`*, and the rings, whose `buf_ofs` gives the buffer pool's offset *relative to each
//! ring*. This module owns the region's bounds ([`Region`]), reads the `netmap_if`
//! ([`InterfaceView`]) and turns a ring's place in `ring_ofs[]` into an offset that is checked to
//! lie inside the region. Nothing read from the region is trusted: every offset is bounds-checked
//! before it becomes a pointer.
//!
//! `ring_ofs[]` holds the TX rings first, then the RX rings; each group ends with its host ring
//! (`netmap_if.ni_tx_rings` and `ni_rx_rings` count the NIC rings only). An entry is 0 for a
//! ring this descriptor did not bind.

use std::mem::{align_of, size_of};
use std::ptr::{NonNull, addr_of};

use netmap_sys::netmap::{netmap_if, netmap_ring, netmap_slot};

/// Bytes of a `struct netmap_if` followed by its `ring_ofs[]` for `tx_rings` + `rx_rings` NIC
/// rings and one host ring each way, as the kernel sizes it.
pub const fn netmap_if_bytes(tx_rings: usize, rx_rings: usize) -> usize {
    size_of::<netmap_if>() + (tx_rings + 1 + rx_rings + 1) * size_of::<isize>()
}

/// Bytes of a `struct netmap_ring` with `num_slots` slots, as the kernel sizes it.
pub const fn netmap_ring_bytes(num_slots: usize) -> usize {
    size_of::<netmap_ring>() + num_slots * size_of::<netmap_slot>()
}

/// Which ring of an interface: its place in `ring_ofs[]` depends on the ring counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingId {
    /// NIC transmit ring `n`.
    Tx(u32),
    /// The host transmit ring: frames written here go up to the host network stack.
    HostTx,
    /// NIC receive ring `n`.
    Rx(u32),
    /// The host receive ring: frames the host stack sends, to be passed on to the NIC.
    HostRx,
}

impl RingId {
    /// Index into `ring_ofs[]` for an interface with `tx_rings` and `rx_rings` NIC rings, or
    /// `None` if there is no such ring.
    pub fn ring_ofs_index(self, tx_rings: u32, rx_rings: u32) -> Option<usize> {
        let index = match self {
            RingId::Tx(n) if n < tx_rings => u64::from(n),
            RingId::HostTx => u64::from(tx_rings),
            RingId::Rx(n) if n < rx_rings => u64::from(tx_rings) + 1 + u64::from(n),
            RingId::HostRx => u64::from(tx_rings) + 1 + u64::from(rx_rings),
            RingId::Tx(_) | RingId::Rx(_) => return None,
        };
        usize::try_from(index).ok()
    }

    pub fn is_tx(self) -> bool {
        matches!(self, RingId::Tx(_) | RingId::HostTx)
    }
}

/// What is wrong with a region the kernel (or an emulation) handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("netmap_if at offset {offset} does not fit in a {len}-byte region")]
    InterfaceOutOfBounds { offset: usize, len: usize },
    #[error("{what} at offset {offset} is not {align}-byte aligned")]
    Misaligned {
        what: &'static str,
        offset: usize,
        align: usize,
    },
    #[error("ring {ring:?} does not exist (interface has {tx} TX and {rx} RX rings)")]
    NoSuchRing { ring: RingId, tx: u32, rx: u32 },
    #[error("ring {ring:?} is not bound to this descriptor (ring_ofs is 0)")]
    RingNotBound { ring: RingId },
    #[error("ring at offset {offset} with {slots} slots does not fit in a {len}-byte region")]
    RingOutOfBounds {
        offset: i128,
        slots: u32,
        len: usize,
    },
    #[error("ring at offset {offset} has an unusable geometry ({slots} slots of {buf_size} B)")]
    BadRingGeometry {
        offset: usize,
        slots: u32,
        buf_size: u32,
    },
    #[error("buffer pool of ring at offset {offset} starts outside the region (buf_ofs {buf_ofs})")]
    BuffersOutOfBounds { offset: usize, buf_ofs: i64 },
}

/// A mapped netmap region: `len` bytes at `base`, shared with the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    /// # Safety
    ///
    /// `base..base + len` must be one allocation (an `mmap` of `/dev/netmap`, or an emulation's
    /// heap block), valid for reads and writes, and aligned to at least 8 bytes. It must stay
    /// mapped for as long as this `Region`, or any view made from it, is used. The other side
    /// (kernel or emulation) writes only what netmap lets it write: the kernel-owned slots and
    /// buffers, and `tail`; it never touches a buffer the user currently owns.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Region { base, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the region.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// A pointer to `bytes` bytes at `offset`, aligned for `T`, or `None` if they do not fit.
    pub(crate) fn checked_ptr<T>(&self, offset: usize, bytes: usize) -> Option<NonNull<T>> {
        let end = offset.checked_add(bytes)?;
        if end > self.len || !offset.is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: `offset + bytes <= len`, so the result stays inside the allocation `Region::new`
        // promised, and it is non-null because `base` is.
        Some(unsafe { self.base.add(offset) }.cast())
    }

    /// Reads the `netmap_if` at `offset` (the `nr_offset` from `NIOCREGIF`).
    ///
    /// # Safety
    ///
    /// The region must still be mapped, and stay mapped for as long as the returned view is
    /// used (a `Region` is `Copy` and may outlive the port that mapped it; the view may not).
    pub unsafe fn interface(&self, offset: usize) -> Result<InterfaceView, LayoutError> {
        if !offset.is_multiple_of(align_of::<netmap_if>()) {
            return Err(LayoutError::Misaligned {
                what: "netmap_if",
                offset,
                align: align_of::<netmap_if>(),
            });
        }
        let out_of_bounds = LayoutError::InterfaceOutOfBounds {
            offset,
            len: self.len,
        };
        let nifp: NonNull<netmap_if> = self
            .checked_ptr(offset, size_of::<netmap_if>())
            .ok_or(out_of_bounds)?;
        // SAFETY: `nifp` is aligned and the whole header lies inside the region (checked above),
        // which the caller guarantees is still mapped.
        let (tx_rings, rx_rings, name) = unsafe {
            let p = nifp.as_ptr();
            let name = addr_of!((*p).ni_name).read_volatile();
            (
                addr_of!((*p).ni_tx_rings).read_volatile(),
                addr_of!((*p).ni_rx_rings).read_volatile(),
                name,
            )
        };
        let needed = usize::try_from(tx_rings)
            .ok()
            .zip(usize::try_from(rx_rings).ok())
            .and_then(|(tx, rx)| tx.checked_add(rx)?.checked_add(2))
            .and_then(|n| n.checked_mul(size_of::<isize>()))
            .and_then(|n| n.checked_add(size_of::<netmap_if>()));
        match needed {
            Some(bytes) if self.checked_ptr::<netmap_if>(offset, bytes).is_some() => {}
            _ => return Err(out_of_bounds),
        }
        let name: Vec<u8> = name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(InterfaceView {
            region: *self,
            offset,
            tx_rings,
            rx_rings,
            name: String::from_utf8_lossy(&name).into_owned(),
        })
    }
}

/// A validated `netmap_if`: its ring counts, and the offsets of its rings.
#[derive(Debug, Clone)]
pub struct InterfaceView {
    region: Region,
    offset: usize,
    tx_rings: u32,
    rx_rings: u32,
    name: String,
}

impl InterfaceView {
    /// NIC TX rings (`ni_tx_rings`), host ring not included.
    pub fn tx_rings(&self) -> u32 {
        self.tx_rings
    }

    /// NIC RX rings (`ni_rx_rings`), host ring not included.
    pub fn rx_rings(&self) -> u32 {
        self.rx_rings
    }

    /// `ni_name`, as the kernel wrote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offset of `ring` from the start of the region: `nr_offset + ring_ofs[i]`. Checks that the
    /// ring exists and is bound; [`super::ring::NetmapRing::new`] checks that it fits.
    pub fn ring_offset(&self, ring: RingId) -> Result<usize, LayoutError> {
        let no_such = LayoutError::NoSuchRing {
            ring,
            tx: self.tx_rings,
            rx: self.rx_rings,
        };
        let index = ring
            .ring_ofs_index(self.tx_rings, self.rx_rings)
            .ok_or(no_such)?;
        let entry = self
            .offset
            .checked_add(size_of::<netmap_if>())
            .and_then(|o| o.checked_add(index.checked_mul(size_of::<isize>())?));
        let ptr: NonNull<isize> = entry
            .and_then(|o| self.region.checked_ptr(o, size_of::<isize>()))
            .ok_or(no_such)?;
        // SAFETY: `ptr` is an aligned `isize` inside the region: `Region::interface` checked the
        // whole `ring_ofs[]` array fits, and `checked_ptr` checked this entry again. Whoever made
        // this view promised the region stays mapped while it is used.
        let relative = unsafe { ptr.as_ptr().read_volatile() };
        if relative == 0 {
            return Err(LayoutError::RingNotBound { ring });
        }
        let absolute = i128::try_from(self.offset).unwrap_or(i128::MAX) + relative as i128;
        usize::try_from(absolute)
            .ok()
            .filter(|&o| o < self.region.len())
            .ok_or(LayoutError::RingOutOfBounds {
                offset: absolute,
                slots: 0,
                len: self.region.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_ofs_index_puts_tx_then_host_tx_then_rx_then_host_rx() {
        assert_eq!(RingId::Tx(0).ring_ofs_index(2, 3), Some(0));
        assert_eq!(RingId::Tx(1).ring_ofs_index(2, 3), Some(1));
        assert_eq!(RingId::HostTx.ring_ofs_index(2, 3), Some(2));
        assert_eq!(RingId::Rx(0).ring_ofs_index(2, 3), Some(3));
        assert_eq!(RingId::Rx(2).ring_ofs_index(2, 3), Some(5));
        assert_eq!(RingId::HostRx.ring_ofs_index(2, 3), Some(6));
        assert_eq!(RingId::Tx(2).ring_ofs_index(2, 3), None);
        assert_eq!(RingId::Rx(3).ring_ofs_index(2, 3), None);
    }

    #[test]
    fn interface_outside_region_is_refused() {
        let mut backing = vec![0u64; 8];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is 64 writable, 8-aligned bytes that outlive `region`.
        let region = unsafe { Region::new(base, 64) };
        // SAFETY: `backing` is alive for the whole test.
        let (far, misaligned) = unsafe { (region.interface(16), region.interface(4)) };
        assert!(matches!(far, Err(LayoutError::InterfaceOutOfBounds { .. })));
        assert!(matches!(misaligned, Err(LayoutError::Misaligned { .. })));
    }

    #[test]
    fn interface_whose_ring_counts_overflow_the_region_is_refused() {
        let mut backing = vec![0u64; 16];
        // ni_tx_rings (bytes 24..28) = u32::MAX: ring_ofs[] cannot fit.
        backing[3] = u64::from(u32::MAX);
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is 128 writable, 8-aligned bytes that outlive `region`.
        let region = unsafe { Region::new(base, 128) };
        // SAFETY: `backing` is alive for the whole test.
        let view = unsafe { region.interface(0) };
        assert!(matches!(
            view,
            Err(LayoutError::InterfaceOutOfBounds { .. })
        ));
    }
}
