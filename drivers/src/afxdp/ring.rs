//! The single-producer, single-consumer rings that AF_XDP shares with the kernel.
//!
//! Each ring is a power-of-two array of descriptors plus three `u32` words: a producer index,
//! a consumer index and flags. Indexes run freely and wrap at `u32::MAX`; a slot is
//! `index & (size - 1)`. The producer writes slots, then publishes them with a **Release**
//! store of its index; the consumer reads that index with an **Acquire** load, reads the
//! slots, then hands them back with a Release store of its own index, which the producer
//! reads with Acquire before it reuses them.
//!
//! We are the producer of the fill and TX rings ([`ProducerRing`]) and the consumer of the RX
//! and completion rings ([`ConsumerRing`]). Both sides batch: `reserve`/`write`/`submit` and
//! `peek`/`read`/`release` touch the shared indexes once per batch, not once per frame, and
//! cache the other side's index until it runs out.
//!
//! # Invariants
//!
//! - A slot is read or written only while this side owns it: between `reserve` and `submit`
//!   for a producer, between `peek` and `release` for a consumer.
//! - The other side's index is never trusted: a value that would give us more than `size`
//!   slots is ignored, so a misbehaving peer can stall a ring but never makes us touch a slot
//!   outside the array or one we do not own by our own bookkeeping.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Mmap;

/// Byte offsets of a ring's parts inside its mapping, as `XDP_MMAP_OFFSETS` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingLayout {
    pub(crate) producer: u64,
    pub(crate) consumer: u64,
    pub(crate) flags: u64,
    pub(crate) descs: u64,
}

impl From<libc::xdp_ring_offset> for RingLayout {
    fn from(off: libc::xdp_ring_offset) -> Self {
        RingLayout {
            producer: off.producer,
            consumer: off.consumer,
            flags: off.flags,
            descs: off.desc,
        }
    }
}

impl RingLayout {
    /// Bytes to map for a ring of `size` descriptors of type `T`.
    pub(crate) fn map_len<T>(&self, size: u32) -> Option<usize> {
        let descs = usize::try_from(self.descs).ok()?;
        let array = usize::try_from(size)
            .ok()?
            .checked_mul(std::mem::size_of::<T>())?;
        descs.checked_add(array)
    }
}

/// The shared memory of one ring, with its pointers checked against the mapping once.
struct RingMemory<T> {
    // Keeps the mapping alive as long as the pointers below are used.
    _area: Arc<Mmap>,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    size: u32,
}

impl<T: Copy> RingMemory<T> {
    /// # Safety
    ///
    /// `area` may be shared only with one peer (the kernel, or a test) that follows the ring
    /// protocol in the module documentation: it touches the index words only with atomic
    /// operations and a descriptor slot only while it owns it.
    unsafe fn new(area: Arc<Mmap>, layout: RingLayout, size: u32) -> io::Result<Self> {
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ring layout {layout:?} with {size} slots: {what}"),
            )
        };
        if !size.is_power_of_two() {
            return Err(invalid("size is not a power of two"));
        }
        let word = |offset: u64, name: &str| -> io::Result<*const AtomicU32> {
            let offset = usize::try_from(offset).map_err(|_| invalid(name))?;
            let fits = offset
                .checked_add(std::mem::size_of::<AtomicU32>())
                .is_some_and(|end| end <= area.len());
            if !fits || !offset.is_multiple_of(std::mem::align_of::<AtomicU32>()) {
                return Err(invalid(name));
            }
            // SAFETY: `offset + 4 <= area.len()`, so the result stays inside the mapping.
            Ok(unsafe { area.as_ptr().add(offset) }.cast::<AtomicU32>())
        };
        let producer = word(layout.producer, "producer index outside the mapping")?;
        let consumer = word(layout.consumer, "consumer index outside the mapping")?;
        let flags = word(layout.flags, "flags outside the mapping")?;
        let descs_fit = layout
            .map_len::<T>(size)
            .is_some_and(|end| end <= area.len());
        let descs_offset = usize::try_from(layout.descs).map_err(|_| invalid("descriptors"))?;
        if !descs_fit || !descs_offset.is_multiple_of(std::mem::align_of::<T>()) {
            return Err(invalid(
                "descriptor array outside the mapping or misaligned",
            ));
        }
        // SAFETY: the whole array `descs_offset .. descs_offset + size * size_of::<T>()` was
        // just checked to lie inside the mapping.
        let descs = unsafe { area.as_ptr().add(descs_offset) }.cast::<T>();
        Ok(RingMemory {
            _area: area,
            producer,
            consumer,
            flags,
            descs,
            size,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: `new` checked the pointer is in bounds and aligned; the mapping lives as long
        // as `self`; the peer only touches this word atomically (contract of `new`).
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { &*self.consumer }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as in `producer`.
        unsafe { &*self.flags }
    }

    /// # Safety
    ///
    /// This side must own the slot of `index` (see the module invariants).
    unsafe fn write_slot(&self, index: u32, value: T) {
        let slot = (index & (self.size - 1)) as usize;
        // SAFETY: `slot < size` and `new` checked the array of `size` slots is in bounds and
        // aligned; the caller owns the slot, so the peer does not access it concurrently.
        unsafe { self.descs.add(slot).write(value) }
    }

    /// # Safety
    ///
    /// As for [`RingMemory::write_slot`].
    unsafe fn read_slot(&self, index: u32) -> T {
        let slot = (index & (self.size - 1)) as usize;
        // SAFETY: as in `write_slot`; `T` is a plain C struct or integer, valid for any bits.
        unsafe { self.descs.add(slot).read() }
    }
}

/// Our side of a ring we fill (the fill and TX rings).
pub(crate) struct ProducerRing<T> {
    mem: RingMemory<T>,
    /// The producer index we last stored.
    published: u32,
    /// `published` plus the slots claimed by `reserve` and not yet submitted.
    reserved: u32,
    /// Cached `consumer + size`: we may claim slots up to (not including) this index.
    limit: u32,
}

// SAFETY: the ring exclusively owns its producer side; the raw pointers refer to a mapping
// kept alive by the `Arc<Mmap>` inside, which is `Send + Sync`.
unsafe impl<T: Send> Send for ProducerRing<T> {}

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    ///
    /// As for the ring memory: `area` is shared only with one consumer that follows the ring
    /// protocol, and no other `ProducerRing` is made over the same ring.
    pub(crate) unsafe fn new(area: Arc<Mmap>, layout: RingLayout, size: u32) -> io::Result<Self> {
        // SAFETY: forwarded contract.
        let mem = unsafe { RingMemory::new(area, layout, size) }?;
        let published = mem.producer().load(Ordering::Relaxed);
        let limit = mem.consumer().load(Ordering::Acquire).wrapping_add(size);
        Ok(ProducerRing {
            mem,
            published,
            reserved: published,
            limit,
        })
    }

    pub(crate) fn size(&self) -> u32 {
        self.mem.size
    }

    fn refresh_limit(&mut self) {
        let consumer = self.mem.consumer().load(Ordering::Acquire);
        // A consumer ahead of what we published, or more than a ring behind, is lying: keep
        // the old limit rather than claim slots it may still be reading.
        if self.published.wrapping_sub(consumer) <= self.mem.size {
            self.limit = consumer.wrapping_add(self.mem.size);
        }
    }

    /// Claims up to `n` more slots and returns how many it claimed. Loads the consumer index
    /// only when the cached one does not leave room for `n`.
    pub(crate) fn reserve(&mut self, n: u32) -> u32 {
        let mut free = self.limit.wrapping_sub(self.reserved);
        if free < n {
            self.refresh_limit();
            free = self.limit.wrapping_sub(self.reserved);
        }
        let granted = n.min(free);
        self.reserved = self.reserved.wrapping_add(granted);
        granted
    }

    /// Slots claimed by `reserve` and not yet submitted.
    pub(crate) fn claimed(&self) -> u32 {
        self.reserved.wrapping_sub(self.published)
    }

    /// Writes the `i`-th claimed slot (0 is the oldest unsubmitted one). Returns `false` and
    /// writes nothing if that slot is not claimed.
    pub(crate) fn write(&mut self, i: u32, value: T) -> bool {
        if i >= self.claimed() {
            return false;
        }
        // SAFETY: the slot lies between `published` and `reserved`: claimed by us and not yet
        // handed to the consumer, which does not read past our published index.
        unsafe { self.mem.write_slot(self.published.wrapping_add(i), value) };
        true
    }

    /// Gives back the last `n` claimed slots without submitting them.
    pub(crate) fn cancel(&mut self, n: u32) {
        self.reserved = self.reserved.wrapping_sub(n.min(self.claimed()));
    }

    /// Hands the first `n` claimed slots to the consumer with one Release store.
    pub(crate) fn submit(&mut self, n: u32) {
        let n = n.min(self.claimed());
        if n == 0 {
            return;
        }
        self.published = self.published.wrapping_add(n);
        self.mem.producer().store(self.published, Ordering::Release);
    }

    /// Submitted entries the consumer has not taken yet (one Acquire load).
    pub(crate) fn in_flight(&self) -> u32 {
        let consumer = self.mem.consumer().load(Ordering::Acquire);
        let pending = self.published.wrapping_sub(consumer);
        if pending <= self.mem.size {
            pending
        } else {
            self.mem.size
        }
    }

    /// Slots `reserve` could claim right now (one Acquire load).
    pub(crate) fn room(&self) -> u32 {
        self.mem
            .size
            .saturating_sub(self.in_flight().saturating_add(self.claimed()))
    }

    /// Whether the kernel asks for a syscall to notice new entries (`XDP_RING_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.mem.flags().load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// The producer index we last stored.
    #[cfg(test)]
    pub(crate) fn published(&self) -> u32 {
        self.published
    }
}

/// Our side of a ring the kernel fills (the RX and completion rings).
pub(crate) struct ConsumerRing<T> {
    mem: RingMemory<T>,
    /// The consumer index we last stored.
    released: u32,
    /// `released` plus the entries handed out by `peek` and not yet released.
    peeked: u32,
    /// Cached producer index: entries before it are ready to read.
    ready_end: u32,
}

// SAFETY: as for `ProducerRing`: exclusive ownership of the consumer side of the ring.
unsafe impl<T: Send> Send for ConsumerRing<T> {}

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    ///
    /// As for [`ProducerRing::new`], with the roles swapped.
    pub(crate) unsafe fn new(area: Arc<Mmap>, layout: RingLayout, size: u32) -> io::Result<Self> {
        // SAFETY: forwarded contract.
        let mem = unsafe { RingMemory::new(area, layout, size) }?;
        let released = mem.consumer().load(Ordering::Relaxed);
        Ok(ConsumerRing {
            mem,
            released,
            peeked: released,
            ready_end: released,
        })
    }

    fn refresh_ready(&mut self) {
        let producer = self.mem.producer().load(Ordering::Acquire);
        // More than a ring ahead of what we released, or behind it, is a lie: ignore it.
        if producer.wrapping_sub(self.released) <= self.mem.size {
            self.ready_end = producer;
        }
    }

    /// Takes up to `max` more ready entries and returns how many. Loads the producer index
    /// only when the cached one shows fewer than `max`.
    pub(crate) fn peek(&mut self, max: u32) -> u32 {
        let mut ready = self.ready_end.wrapping_sub(self.peeked);
        if ready < max {
            self.refresh_ready();
            ready = self.ready_end.wrapping_sub(self.peeked);
        }
        let n = max.min(ready);
        self.peeked = self.peeked.wrapping_add(n);
        n
    }

    /// Entries taken by `peek` and not yet released.
    pub(crate) fn peeked(&self) -> u32 {
        self.peeked.wrapping_sub(self.released)
    }

    /// The `i`-th peeked entry (0 is the oldest unreleased one), or `None` if it is not one.
    pub(crate) fn read(&self, i: u32) -> Option<T> {
        if i >= self.peeked() {
            return None;
        }
        // SAFETY: the slot lies between `released` and `peeked`: published by the producer
        // (seen through an Acquire load) and not yet handed back, so the producer leaves it be.
        Some(unsafe { self.mem.read_slot(self.released.wrapping_add(i)) })
    }

    /// Hands the first `n` peeked entries back to the producer with one Release store.
    pub(crate) fn release(&mut self, n: u32) {
        let n = n.min(self.peeked());
        if n == 0 {
            return;
        }
        self.released = self.released.wrapping_add(n);
        self.mem.consumer().store(self.released, Ordering::Release);
    }

    /// Forgets the entries peeked and not released: the next `peek` takes them again. No
    /// load or store of a shared index.
    pub(crate) fn unpeek(&mut self) {
        self.peeked = self.released;
    }

    /// Sets the ring's flags word, as the kernel does on the rings we produce into.
    #[cfg(test)]
    pub(crate) fn set_flags(&self, flags: u32) {
        self.mem.flags().store(flags, Ordering::Release);
    }

    /// Entries ready and not yet peeked (one Acquire load).
    pub(crate) fn ready(&self) -> u32 {
        let producer = self.mem.producer().load(Ordering::Acquire);
        if producer.wrapping_sub(self.released) <= self.mem.size {
            producer.wrapping_sub(self.peeked).min(self.mem.size)
        } else {
            self.ready_end.wrapping_sub(self.peeked)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A layout like the kernel's: each index on its own cache line, then the descriptors.
    pub(crate) const LAYOUT: RingLayout = RingLayout {
        producer: 0,
        consumer: 64,
        flags: 128,
        descs: 192,
    };

    /// One ring's memory in anonymous memory with both sides over it, both indexes at
    /// `start`: the producer and the consumer. One is the driver's, the other plays the kernel.
    pub(crate) fn ring_pair<T: Copy>(size: u32, start: u32) -> (ProducerRing<T>, ConsumerRing<T>) {
        let area = Arc::new(Mmap::anonymous(LAYOUT.map_len::<T>(size).unwrap()).unwrap());
        set_indexes(&area, start);
        // SAFETY: the two rings are the only users of `area`, one per side.
        unsafe {
            (
                ProducerRing::new(area.clone(), LAYOUT, size).unwrap(),
                ConsumerRing::new(area, LAYOUT, size).unwrap(),
            )
        }
    }

    fn set_indexes(area: &Mmap, start: u32) {
        for offset in [LAYOUT.producer, LAYOUT.consumer] {
            // SAFETY: the offsets are inside the fresh mapping, aligned, and no ring exists yet.
            unsafe {
                (*area.as_ptr().add(offset as usize).cast::<AtomicU32>())
                    .store(start, Ordering::Relaxed)
            };
        }
    }

    #[test]
    fn layout_outside_the_mapping_is_refused() {
        let area = Arc::new(Mmap::anonymous(4096).unwrap());
        let too_big = RingLayout {
            descs: 4000,
            ..LAYOUT
        };
        // SAFETY: nothing else uses the mapping.
        let err = unsafe { ProducerRing::<u64>::new(area.clone(), too_big, 64) };
        assert!(err.is_err());
        // SAFETY: as above.
        let err = unsafe { ConsumerRing::<u64>::new(area.clone(), LAYOUT, 48) };
        assert!(err.is_err(), "48 is not a power of two");
        let misaligned = RingLayout {
            consumer: 66,
            ..LAYOUT
        };
        // SAFETY: as above.
        let err = unsafe { ConsumerRing::<u64>::new(area, misaligned, 64) };
        assert!(err.is_err());
    }

    #[test]
    fn reserve_beyond_capacity_grants_what_is_free() {
        let (mut ours, mut kernel) = ring_pair::<u64>(8, 0);
        assert_eq!(ours.reserve(20), 8);
        assert_eq!(ours.reserve(1), 0);
        assert_eq!(ours.claimed(), 8);
        for i in 0..8 {
            assert!(ours.write(i, 100 + u64::from(i)));
        }
        assert!(!ours.write(8, 0), "slot 8 is not claimed");
        // Nothing is visible to the consumer before submit.
        assert_eq!(kernel.peek(8), 0);
        ours.submit(5);
        assert_eq!(ours.claimed(), 3);
        assert_eq!(ours.in_flight(), 5);
        assert_eq!(kernel.peek(8), 5);
        assert_eq!(kernel.read(0), Some(100));
        assert_eq!(kernel.read(4), Some(104));
        assert_eq!(kernel.read(5), None);
        // Still full until the consumer releases.
        assert_eq!(ours.reserve(1), 0);
        assert_eq!(ours.room(), 0);
        kernel.release(2);
        assert_eq!(ours.room(), 2);
        assert_eq!(ours.reserve(4), 2);
        ours.cancel(1);
        assert_eq!(ours.claimed(), 4);
    }

    #[test]
    fn indexes_wrap_around_u32_and_the_ring() {
        let start = u32::MAX - 5;
        let (mut ours, mut kernel) = ring_pair::<u64>(4, start);
        let mut next_value = 0u64;
        let mut expected = 0u64;
        for round in 0..50u32 {
            let want = round % 4 + 1;
            let got = ours.reserve(want);
            assert_eq!(got, want);
            for i in 0..got {
                assert!(ours.write(i, next_value));
                next_value += 1;
            }
            ours.submit(got);
            let n = kernel.peek(u32::MAX);
            assert_eq!(n, got);
            for i in 0..n {
                assert_eq!(kernel.read(i), Some(expected));
                expected += 1;
            }
            kernel.release(n);
            assert_eq!(ours.in_flight(), 0);
        }
        assert!(
            ours.published < start,
            "the producer index wrapped past u32::MAX"
        );
    }

    #[test]
    fn a_lying_peer_cannot_grant_extra_slots() {
        let (mut ours, kernel) = ring_pair::<u64>(8, 0);
        assert_eq!(ours.reserve(8), 8);
        ours.submit(8);
        // The "kernel" claims to have consumed 1000 entries it never saw.
        kernel.mem.consumer().store(1000, Ordering::Release);
        assert_eq!(ours.reserve(1), 0);
        assert_eq!(ours.in_flight(), 8);

        let (_, mut rx) = ring_pair::<u64>(8, 0);
        // A producer index far ahead of anything possible is ignored too.
        rx.mem.producer().store(9, Ordering::Release);
        assert_eq!(rx.peek(64), 0);
        rx.mem.producer().store(3, Ordering::Release);
        assert_eq!(rx.ready(), 3);
        assert_eq!(rx.peek(64), 3);
        rx.release(10);
        assert_eq!(rx.peeked(), 0);
        assert_eq!(rx.released, 3);
    }

    #[test]
    fn unpeeked_entries_are_peeked_again_and_release_stays_put() {
        let (mut kernel, mut ours) = ring_pair::<u64>(8, u32::MAX - 2);
        assert_eq!(kernel.reserve(6), 6);
        for i in 0..6 {
            assert!(kernel.write(i, 10 + u64::from(i)));
        }
        kernel.submit(6);
        assert_eq!(ours.peek(5), 5);
        ours.release(2);
        ours.unpeek();
        assert_eq!(ours.peeked(), 0);
        assert_eq!(ours.read(0), None, "nothing peeked");
        assert_eq!(kernel.in_flight(), 4, "unpeek hands nothing back");
        // The three unreleased entries come again, then the one never peeked.
        assert_eq!(ours.peek(64), 4);
        let again: Vec<u64> = (0..4).map(|i| ours.read(i).unwrap()).collect();
        assert_eq!(again, vec![12, 13, 14, 15]);
        ours.release(4);
        assert_eq!(kernel.in_flight(), 0);
    }

    #[test]
    fn acquire_release_hands_descriptors_across_threads() {
        const TOTAL: u64 = 200_000;
        let (mut ours, mut kernel) = ring_pair::<u64>(64, u32::MAX - 1000);
        let consumer = std::thread::spawn(move || {
            let mut expected = 0u64;
            while expected < TOTAL {
                let n = kernel.peek(16);
                for i in 0..n {
                    // Each value must be the one written before the producer's Release store.
                    assert_eq!(kernel.read(i), Some(expected * 3 + 1));
                    expected += 1;
                }
                kernel.release(n);
                if n == 0 {
                    std::hint::spin_loop();
                }
            }
        });
        let mut sent = 0u64;
        while sent < TOTAL {
            let want = u32::try_from((TOTAL - sent).min(13)).unwrap();
            let got = ours.reserve(want);
            for i in 0..got {
                assert!(ours.write(i, (sent + u64::from(i)) * 3 + 1));
            }
            ours.submit(got);
            sent += u64::from(got);
            if got == 0 {
                std::hint::spin_loop();
            }
        }
        consumer.join().unwrap();
        assert_eq!(ours.in_flight(), 0);
    }

    #[test]
    fn need_wakeup_flag_is_read_from_the_flags_word() {
        let (ours, kernel) = ring_pair::<u64>(8, 0);
        assert!(!ours.needs_wakeup());
        kernel
            .mem
            .flags()
            .store(libc::XDP_RING_NEED_WAKEUP, Ordering::Release);
        assert!(ours.needs_wakeup());
    }
}
