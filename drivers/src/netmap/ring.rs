//! One `struct netmap_ring` inside a mapped region: head/cur/tail and the slots.
//!
//! # The netmap ownership rule
//!
//! Slots `[head, tail)` belong to user space, slots `[tail, head)` to the kernel (indices modulo
//! `num_slots`, so one slot always stays with the kernel and a full TX ring holds
//! `num_slots - 1` frames).
//!
//! - **RX:** `[head, tail)` are received frames. User space reads them, then gives them back by
//!   moving `head` (and `cur`) past them; the kernel sees that at the next `NIOCRXSYNC` or
//!   `poll`, refills those slots and advances `tail`.
//! - **TX:** `[head, tail)` are free slots. User space fills them, moves `head` (and `cur`) past
//!   the filled ones, and `NIOCTXSYNC` sends them; the kernel advances `tail` as transmissions
//!   complete.
//!
//! A slot names its buffer by index: the buffer is at `ring + buf_ofs + buf_idx * nr_buf_size`.
//! Either side may *swap* the buffer of a slot it owns for another one (zero-copy forwarding);
//! whoever changes `buf_idx` sets `NS_BUF_CHANGED` so the other side reloads it. So the buffer
//! index is read from the slot every time, never cached.
//!
//! # Invariants of [`NetmapRing`]
//!
//! - Construction checked that the ring header and all `num_slots` slots lie inside the region,
//!   that `nr_buf_size` is non-zero, and where the buffer pool starts. The geometry
//!   (`num_slots`, `nr_buf_size`, `buf_ofs`) is const in netmap and read once.
//! - Everything read later (head, tail, `buf_idx`, `len`) is checked before use: an index is
//!   accepted only if the buffer lies wholly inside the region and is not one of the two
//!   buffers netmap reserves; a length only if it fits the buffer. A bad slot is reported as a
//!   [`SlotError`], never followed. So no value from the other side can make a method read or
//!   write outside the region, or panic.
//! - Control fields and slots are accessed with volatile reads and writes: the other side
//!   changes them between our reads (during a sync).

use std::mem::size_of;
use std::ptr::{NonNull, addr_of, addr_of_mut};

use netmap_sys::netmap::{NS_BUF_CHANGED, NS_MOREFRAG, netmap_ring, netmap_slot};

use super::region::{LayoutError, Region, netmap_ring_bytes};

/// Buffers 0 and 1 are reserved by netmap (0 is the "no buffer" sentinel) and never appear in a
/// valid slot.
pub const RESERVED_BUFFERS: u32 = 2;

/// Largest ring this driver accepts. netmap itself caps rings at 16384 slots; the extra margin
/// only rejects nonsense.
pub const MAX_SLOTS: u32 = 1 << 16;

/// What one slot says: its buffer, the frame length and the `NS_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub buf_idx: u32,
    pub len: u16,
    pub flags: u16,
}

/// Why a slot could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("slot {0} is outside the ring")]
    NoSuchSlot(u32),
    #[error("slot {0} belongs to the kernel (outside [head, tail))")]
    NotUserOwned(u32),
    #[error("buffer index {0} is reserved or outside the region")]
    BadBufIdx(u32),
    #[error("length {len} exceeds the {buf_size}-byte buffer")]
    BadLen { len: usize, buf_size: u32 },
}

/// A validated view of one ring. See the module documentation for the invariants.
#[derive(Debug)]
pub struct NetmapRing {
    ring: NonNull<netmap_ring>,
    slots: NonNull<netmap_slot>,
    /// Address of buffer 0 (`ring + buf_ofs`). It may lie past the region's end when the region
    /// holds no buffers, in which case `buf_count` is 0; it is only dereferenced after an index
    /// check against `buf_count`.
    bufs: *mut u8,
    num_slots: u32,
    buf_size: u32,
    /// Buffers `[0, buf_count)` lie wholly inside the region.
    buf_count: u32,
    offset: usize,
}

impl NetmapRing {
    /// The ring at `offset` bytes into `region`.
    ///
    /// # Safety
    ///
    /// The region must still be mapped, and stay mapped for as long as the returned ring is
    /// used: the ring keeps raw pointers into it.
    pub unsafe fn new(region: Region, offset: usize) -> Result<Self, LayoutError> {
        let header: NonNull<netmap_ring> = region
            .checked_ptr(offset, size_of::<netmap_ring>())
            .ok_or(LayoutError::RingOutOfBounds {
                offset: offset as i128,
                slots: 0,
                len: region.len(),
            })?;
        // SAFETY: the header lies inside the region and is aligned (checked above); the caller
        // guarantees the region is mapped.
        let (buf_ofs, num_slots, buf_size) = unsafe {
            let r = header.as_ptr();
            (
                addr_of!((*r).buf_ofs).read_volatile(),
                addr_of!((*r).num_slots).read_volatile(),
                addr_of!((*r).nr_buf_size).read_volatile(),
            )
        };
        if !(2..=MAX_SLOTS).contains(&num_slots) || !(1..=u32::from(u16::MAX)).contains(&buf_size) {
            return Err(LayoutError::BadRingGeometry {
                offset,
                slots: num_slots,
                buf_size,
            });
        }
        let ring_bytes = netmap_ring_bytes(num_slots as usize);
        region
            .checked_ptr::<netmap_ring>(offset, ring_bytes)
            .ok_or(LayoutError::RingOutOfBounds {
                offset: offset as i128,
                slots: num_slots,
                len: region.len(),
            })?;
        let buf_start = (offset as i128) + i128::from(buf_ofs);
        let buf_start = usize::try_from(buf_start)
            .ok()
            .filter(|&start| start <= region.len())
            .ok_or(LayoutError::BuffersOutOfBounds { offset, buf_ofs })?;
        let buf_count = (region.len() - buf_start) / buf_size as usize;
        let buf_count = u32::try_from(buf_count).unwrap_or(u32::MAX);
        // SAFETY: `buf_start <= region.len()`, so the pointer is inside the allocation or one
        // past its end.
        let bufs = unsafe { region.base().as_ptr().add(buf_start) };
        // SAFETY: the slot array starts right after the header; the whole ring, slots included,
        // lies inside the region (checked above), so this stays in bounds and is non-null.
        let slots = unsafe { header.byte_add(size_of::<netmap_ring>()) }.cast();
        Ok(NetmapRing {
            ring: header,
            slots,
            bufs,
            num_slots,
            buf_size,
            buf_count,
            offset,
        })
    }

    pub fn num_slots(&self) -> u32 {
        self.num_slots
    }

    /// `nr_buf_size`: the size of every buffer, the largest frame one slot carries.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Offset of the ring from the start of the region.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of buffers, reserved ones included, that lie inside the region.
    pub fn buf_count(&self) -> u32 {
        self.buf_count
    }

    pub fn head(&self) -> u32 {
        // SAFETY: `ring` points at a header inside the region (construction invariant).
        unsafe { addr_of!((*self.ring.as_ptr()).head).read_volatile() }
    }

    pub fn cur(&self) -> u32 {
        // SAFETY: as in `head`.
        unsafe { addr_of!((*self.ring.as_ptr()).cur).read_volatile() }
    }

    pub fn tail(&self) -> u32 {
        // SAFETY: as in `head`.
        unsafe { addr_of!((*self.ring.as_ptr()).tail).read_volatile() }
    }

    /// User side: moves `head` and `cur` to `index` (releases RX slots, or publishes TX slots).
    /// `cur == head` asks for a wake-up as soon as anything is there.
    pub fn set_head_cur(&self, index: u32) {
        let r = self.ring.as_ptr();
        // SAFETY: as in `head`; the fields are plain `u32`s the user side may write.
        unsafe {
            addr_of_mut!((*r).cur).write_volatile(index);
            addr_of_mut!((*r).head).write_volatile(index);
        }
    }

    /// Kernel side (emulation): publishes `tail`.
    pub(crate) fn set_tail(&self, index: u32) {
        // SAFETY: as in `head`.
        unsafe { addr_of_mut!((*self.ring.as_ptr()).tail).write_volatile(index) }
    }

    /// The slot after `index`, wrapping.
    pub fn next(&self, index: u32) -> u32 {
        if index.saturating_add(1) >= self.num_slots {
            0
        } else {
            index + 1
        }
    }

    /// Slots from `from` up to (not including) `to`, going forward and wrapping. Both must be
    /// below `num_slots`.
    pub fn distance(&self, from: u32, to: u32) -> u32 {
        if to >= from {
            to - from
        } else {
            self.num_slots - from + to
        }
    }

    /// `head` and the number of user-owned slots `[head, tail)`, or `None` if the kernel left
    /// `head` or `tail` outside the ring.
    pub fn user_span(&self) -> Option<(u32, u32)> {
        let (head, tail) = (self.head(), self.tail());
        if head >= self.num_slots || tail >= self.num_slots {
            return None;
        }
        Some((head, self.distance(head, tail)))
    }

    fn slot_ptr(&self, index: u32) -> Result<*mut netmap_slot, SlotError> {
        if index >= self.num_slots {
            return Err(SlotError::NoSuchSlot(index));
        }
        // SAFETY: `index < num_slots` and all `num_slots` slots lie inside the region.
        Ok(unsafe { self.slots.as_ptr().add(index as usize) })
    }

    pub fn slot(&self, index: u32) -> Result<Slot, SlotError> {
        let p = self.slot_ptr(index)?;
        // SAFETY: `p` is an aligned slot inside the region (`slot_ptr`).
        Ok(unsafe {
            Slot {
                buf_idx: addr_of!((*p).buf_idx).read_volatile(),
                len: addr_of!((*p).len).read_volatile(),
                flags: addr_of!((*p).flags).read_volatile(),
            }
        })
    }

    pub fn set_slot(&self, index: u32, slot: Slot) -> Result<(), SlotError> {
        let p = self.slot_ptr(index)?;
        // SAFETY: `p` is an aligned slot inside the region (`slot_ptr`).
        unsafe {
            addr_of_mut!((*p).buf_idx).write_volatile(slot.buf_idx);
            addr_of_mut!((*p).len).write_volatile(slot.len);
            addr_of_mut!((*p).flags).write_volatile(slot.flags);
        }
        Ok(())
    }

    /// `Ok` if slot `index` is in `[head, tail)`, the part of the ring user space owns.
    pub fn check_user_owned(&self, index: u32) -> Result<(), SlotError> {
        match self.user_span() {
            Some((head, owned)) if index < self.num_slots && self.distance(head, index) < owned => {
                Ok(())
            }
            _ => Err(SlotError::NotUserOwned(index)),
        }
    }

    /// `Ok` if buffer `buf_idx` may be used: not reserved, and wholly inside the region.
    pub fn check_buf_idx(&self, buf_idx: u32) -> Result<(), SlotError> {
        if buf_idx < RESERVED_BUFFERS || buf_idx >= self.buf_count {
            return Err(SlotError::BadBufIdx(buf_idx));
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), SlotError> {
        if len > self.buf_size as usize {
            return Err(SlotError::BadLen {
                len,
                buf_size: self.buf_size,
            });
        }
        Ok(())
    }

    /// Start of buffer `buf_idx`, after [`Self::check_buf_idx`].
    fn buffer_ptr(&self, buf_idx: u32) -> Result<*mut u8, SlotError> {
        self.check_buf_idx(buf_idx)?;
        // SAFETY: `buf_idx < buf_count`, so `buf_idx * buf_size + buf_size` bytes from `bufs` lie
        // inside the region (how `buf_count` was computed).
        Ok(unsafe { self.bufs.add(buf_idx as usize * self.buf_size as usize) })
    }

    /// Lends the frame in slot `index` to `f` without copying, after checking that the slot is
    /// user-owned (`[head, tail)`) and its buffer index and length. The kernel does not write a
    /// user-owned slot's buffer until `head` moves past it, which cannot happen while `f` runs.
    pub fn with_frame<R>(&self, index: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, SlotError> {
        self.check_user_owned(index)?;
        let slot = self.slot(index)?;
        let len = usize::from(slot.len);
        self.check_len(len)?;
        let data = self.buffer_ptr(slot.buf_idx)?;
        // SAFETY: `data..data + len` lies inside the region (`len <= buf_size`, index checked).
        // The slot is user-owned, so the other side does not write the buffer while the shared
        // slice lives, and this driver creates no `&mut` to it meanwhile.
        let frame = unsafe { std::slice::from_raw_parts(data, len) };
        Ok(f(frame))
    }

    /// Lends the first `len` bytes of the buffer in user-owned slot `index` to `fill`, then sets
    /// the slot's length to `len`; `head` is not moved.
    pub fn fill(
        &self,
        index: u32,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), SlotError> {
        self.check_user_owned(index)?;
        let mut slot = self.slot(index)?;
        self.check_len(len)?;
        let data = self.buffer_ptr(slot.buf_idx)?;
        // SAFETY: `data..data + len` lies inside the region (`len <= buf_size`, index checked).
        // The slot is user-owned, so the other side neither reads nor writes the buffer until
        // `head` moves past it; no other reference to it exists while `fill` runs.
        let buf = unsafe { std::slice::from_raw_parts_mut(data, len) };
        fill(buf);
        slot.len = u16::try_from(len).unwrap_or(u16::MAX);
        // One slot, one frame: this driver never chains slots.
        slot.flags &= !NS_MOREFRAG;
        self.set_slot(index, slot)
    }

    /// Kernel side (emulation): copies `frame` into buffer `buf_idx`.
    pub(crate) fn write_buffer(&self, buf_idx: u32, frame: &[u8]) -> Result<(), SlotError> {
        self.check_len(frame.len())?;
        let data = self.buffer_ptr(buf_idx)?;
        // SAFETY: the destination lies inside the region (length and index checked); the caller
        // (the emulated kernel) owns the slot, so user space holds no reference to the buffer.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), data, frame.len()) };
        Ok(())
    }

    /// Kernel side (emulation): lends `len` bytes of buffer `buf_idx`.
    pub(crate) fn read_buffer<R>(
        &self,
        buf_idx: u32,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, SlotError> {
        self.check_len(len)?;
        let data = self.buffer_ptr(buf_idx)?;
        // SAFETY: the bytes lie inside the region; the emulated kernel owns the slot, so user
        // space does not write the buffer while the slice lives.
        Ok(f(unsafe { std::slice::from_raw_parts(data, len) }))
    }
}

/// Zero-copy forwarding: moves the frame in `from[from_index]` to `to[to_index]` by exchanging
/// the two slots' buffers, and sets `NS_BUF_CHANGED` on both so each side reloads its buffer.
/// Both slots must be user-owned and both rings in the same region (one netmap allocator).
/// Nothing changes if either slot is bad.
pub fn swap_buffers(
    from: &NetmapRing,
    from_index: u32,
    to: &NetmapRing,
    to_index: u32,
) -> Result<(), SlotError> {
    from.check_user_owned(from_index)?;
    to.check_user_owned(to_index)?;
    let mut src = from.slot(from_index)?;
    let mut dst = to.slot(to_index)?;
    from.check_buf_idx(src.buf_idx)?;
    from.check_len(usize::from(src.len))?;
    to.check_buf_idx(src.buf_idx)?;
    to.check_len(usize::from(src.len))?;
    to.check_buf_idx(dst.buf_idx)?;
    from.check_buf_idx(dst.buf_idx)?;
    std::mem::swap(&mut src.buf_idx, &mut dst.buf_idx);
    dst.len = src.len;
    dst.flags = (dst.flags & !NS_MOREFRAG) | NS_BUF_CHANGED;
    src.flags |= NS_BUF_CHANGED;
    from.set_slot(from_index, src)?;
    to.set_slot(to_index, dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netmap::emulated::{EmulatedConfig, EmulatedLayout, EmulatedRegion};

    fn region(config: &EmulatedConfig) -> EmulatedRegion {
        EmulatedRegion::new(EmulatedLayout::new(config), "t0")
    }

    /// The ring at `ring_offsets[index]`. Tests keep `mem` alive longer than the ring.
    fn ring_at(mem: &EmulatedRegion, index: usize) -> NetmapRing {
        // SAFETY: `mem` owns the region and outlives the returned ring in every test.
        unsafe { NetmapRing::new(mem.region(), mem.layout().ring_offsets[index]) }.unwrap()
    }

    #[test]
    fn fresh_rings_follow_the_kernel_initial_state() {
        let config = EmulatedConfig {
            num_slots: 8,
            ..EmulatedConfig::default()
        };
        let mem = region(&config);
        let tx = ring_at(&mem, 0);
        assert_eq!((tx.head(), tx.cur(), tx.tail()), (0, 0, 7));
        assert_eq!(tx.user_span(), Some((0, 7)));
        let rx_index = mem.layout().rx_ring_index(0);
        let rx = ring_at(&mem, rx_index);
        assert_eq!(rx.user_span(), Some((0, 0)));
        assert_eq!(rx.buf_size(), 2048);
    }

    #[test]
    fn distance_and_next_wrap() {
        let config = EmulatedConfig {
            num_slots: 8,
            ..EmulatedConfig::default()
        };
        let mem = region(&config);
        let ring = ring_at(&mem, 0);
        assert_eq!(ring.next(7), 0);
        assert_eq!(ring.next(3), 4);
        assert_eq!(ring.distance(6, 2), 4);
        assert_eq!(ring.distance(2, 6), 4);
        assert_eq!(ring.distance(5, 5), 0);
    }

    #[test]
    fn kernel_garbage_is_reported_not_followed() {
        let config = EmulatedConfig {
            num_slots: 8,
            ..EmulatedConfig::default()
        };
        let mem = region(&config);
        let ring = ring_at(&mem, 0);
        let good = ring.slot(0).unwrap();
        for bad_idx in [0, 1, ring.buf_count(), u32::MAX] {
            ring.set_slot(
                0,
                Slot {
                    buf_idx: bad_idx,
                    ..good
                },
            )
            .unwrap();
            assert_eq!(
                ring.with_frame(0, |f| f.len()),
                Err(SlotError::BadBufIdx(bad_idx))
            );
        }
        ring.set_slot(0, Slot { len: 2049, ..good }).unwrap();
        assert!(matches!(
            ring.with_frame(0, |f| f.len()),
            Err(SlotError::BadLen { len: 2049, .. })
        ));
        assert_eq!(ring.slot(8), Err(SlotError::NoSuchSlot(8)));
        ring.set_tail(99);
        assert_eq!(ring.user_span(), None);
    }

    #[test]
    fn fill_then_read_back_and_swap_marks_both_slots() {
        let config = EmulatedConfig {
            num_slots: 8,
            ..EmulatedConfig::default()
        };
        let mem = region(&config);
        let a = ring_at(&mem, 0);
        let rx_index = mem.layout().rx_ring_index(0);
        let b = ring_at(&mem, rx_index);
        a.fill(1, 5, &mut |buf| buf.copy_from_slice(b"hello"))
            .unwrap();
        assert_eq!(a.with_frame(1, |f| f.to_vec()).unwrap(), b"hello");
        // b is an RX ring with nothing received: its slots are the kernel's.
        assert_eq!(swap_buffers(&a, 1, &b, 3), Err(SlotError::NotUserOwned(3)));
        assert_eq!(
            b.with_frame(3, |f| f.len()),
            Err(SlotError::NotUserOwned(3))
        );
        b.set_tail(5); // the "kernel" hands slots 0..5 over
        let (a_idx, b_idx) = (a.slot(1).unwrap().buf_idx, b.slot(3).unwrap().buf_idx);
        swap_buffers(&a, 1, &b, 3).unwrap();
        let (sa, sb) = (a.slot(1).unwrap(), b.slot(3).unwrap());
        assert_eq!((sa.buf_idx, sb.buf_idx), (b_idx, a_idx));
        assert_ne!(sa.flags & NS_BUF_CHANGED, 0);
        assert_ne!(sb.flags & NS_BUF_CHANGED, 0);
        assert_eq!(b.with_frame(3, |f| f.to_vec()).unwrap(), b"hello");
        let err = a.fill(2, 2049, &mut |_| panic!("must not be lent"));
        assert!(matches!(err, Err(SlotError::BadLen { .. })));
    }
}
