//! The AF_XDP data path of one queue: the four rings, the UMEM, and what `rx_batch`,
//! `rx_burst`, `tx_stage` and `tx_flush` do with them. No setup and no system call lives
//! here: the two notifications the kernel may need go through a [`Doorbell`], which the socket
//! rings with `sendto`/`recvfrom` and the tests with a counter.
//!
//! A [`Queue`] does not care where its rings live. [`AfXdp`](super::AfXdp) builds them over the
//! socket's mappings; the tests below build them over anonymous memory and play the kernel's
//! side of each ring themselves, as s2n-quic-xdp tests its I/O over paired rings and as
//! `netmap::emulated` emulates netmap.
//!
//! # The frame path
//!
//! - [`Queue::rx_batch`] takes finished TX chunks off the completion ring, then works through
//!   up to `max` RX descriptors in batches of at most [`RX_LEND_MAX`]: it peeks a batch with
//!   one Acquire load, lends its frames straight from the UMEM (checked to lie inside one
//!   chunk, else counted and dropped) to the caller's closure all at once, as one slice, and
//!   only once the closure has returned releases the batch and gives the same chunks back to
//!   the fill ring: one Release store each. No allocation: the slice array is on the stack.
//!   [`Queue::rx_burst`] is the same walk, lending the frames one by one.
//! - [`Queue::tx_stage`] takes a free chunk (reclaiming completions only when it runs out), lets
//!   the caller write the frame into it and claims a TX slot, so staging touches no shared
//!   cache line but the TX ring's.
//! - [`Queue::tx_flush`] reclaims completions, publishes every staged slot at once and rings
//!   the doorbell (in copy mode always; with need-wakeup only when the kernel asks). `EAGAIN`,
//!   `EBUSY`, `ENOBUFS` and `EINTR` are back-pressure, not errors: the frames stay on the ring
//!   and the next flush kicks again.
//! - [`Queue::tx_flush_lazy`] publishes the same way but may leave the doorbell owed, so that
//!   the passes of one wake-up share a kick: a pass that submits frames while none are owed
//!   leaves the kick; the next pass that submits frames or received some rings it for both;
//!   a pass with neither leaves it to [`Queue::before_wait`]. That one, called before the
//!   caller sleeps in `poll()`, rings it only where the `poll()` would not send the frames
//!   itself: in copy mode `xsk_poll` sends up to a kick's budget from the TX ring (in
//!   zero-copy mode it wakes the driver), but a `poll()` is not made when frames are already
//!   waiting, and more than a budget would wait for the next wake-up.
//!
//! # Multi-buffer frames (jumbo MTUs)
//!
//! A frame longer than one chunk travels as a chain of descriptors, each but the last flagged
//! `XDP_PKT_CONTD` (the socket is bound with `XDP_USE_SG`). A multi-buffer queue has two
//! scratch buffers of `max_frame_len` bytes, allocated once in [`Queue::new`]:
//!
//! - RX gathers a chain into its scratch buffer and lends that as one frame; a frame in one
//!   descriptor is still lent straight from the UMEM. The buffer holds one chain at a time, so
//!   a gathered chain ends its batch: the descriptors after it stay on the ring for the next
//!   batch. A chain may straddle two batches or bursts (the gather goes on where it stopped). A chain longer than `max_frame_len`, or with a
//!   descriptor that does not fit its chunk, is dropped whole when it ends and counted
//!   (`rx_chains_dropped`), never delivered in part.
//! - TX lets the caller write a frame longer than a chunk into its scratch buffer, then copies
//!   it into as many chunks as it needs and claims one TX slot per chunk; the whole chain is
//!   staged or none of it. Every chunk comes back on the completion ring on its own.

use std::io;

use super::XdpCounters;
use super::ring::{ConsumerRing, ProducerRing};
use super::tx_meta::{self, TX_METADATA_LEN, TxChecksum};
use super::umem::Umem;
use crate::{DriverCounters, DriverError, RX_LEND_MAX};

/// Bytes of the next TX chunk hinted into the cache after each staged frame: the headers and
/// the start of the payload. The rest of a frame is written in order, which the hardware
/// prefetcher follows.
const TX_HINT_BYTES: usize = 256;

/// The four rings of one AF_XDP socket, seen from our side.
pub(crate) struct Rings {
    pub(crate) rx: ConsumerRing<libc::xdp_desc>,
    pub(crate) tx: ProducerRing<libc::xdp_desc>,
    pub(crate) fill: ProducerRing<u64>,
    pub(crate) completion: ConsumerRing<u64>,
}

/// How the data path tells the kernel it has work: the only two system calls it makes.
pub(crate) trait Doorbell {
    /// New TX descriptors are on the ring (`sendto` on the socket).
    fn kick_tx(&self) -> io::Result<()>;
    /// The fill ring has entries again, and the kernel asked to be told (`recvfrom`).
    fn wake_rx(&self) -> io::Result<()>;
    /// Frames one kick, or one `poll()`, sends at most.
    fn tx_budget(&self) -> u32;
}

/// One queue's data path: the rings, the UMEM whose chunks they pass around, and the counters.
pub(crate) struct Queue<D> {
    // Field order is drop order: the rings are unmapped and the socket closed before the UMEM
    // they point into.
    rings: Rings,
    doorbell: D,
    umem: Umem,
    max_frame_len: usize,
    need_wakeup: bool,
    counters: DriverCounters,
    xdp: XdpCounters,
    /// TX slots claimed and written since the last flush, and the frames they make up.
    staged: u32,
    staged_frames: u32,
    staged_bytes: u64,
    /// Published TX descriptors whose kick [`Queue::tx_flush_lazy`] left for later.
    kick_owed: bool,
    /// Descriptors were taken off the RX ring since the last flush.
    received_since_flush: bool,
    /// Multi-buffer only (else empty): where RX gathers a chain, and where TX lets the caller
    /// write a frame longer than a chunk. `max_frame_len` bytes each.
    rx_scratch: Box<[u8]>,
    tx_scratch: Box<[u8]>,
    /// The RX chain being gathered, if its last descriptor has not come yet.
    rx_chain: Option<Chain>,
    /// Bytes in front of each TX frame in its chunk: [`TX_METADATA_LEN`] for a UMEM
    /// registered with TX metadata (the kernel then wants them before every descriptor), else
    /// none.
    tx_headroom: u32,
    /// Who completes the TCP checksums of what this queue sends.
    tx_checksum: TxChecksum,
}

/// With a checksum request wanted (`tx_checksum` not `Stack`): prepares `frame` and writes its
/// request into `meta` (the bytes in front of it) if it is TCP, counting it in `xdp`. Returns
/// the descriptor option that goes with it.
fn request_checksum(
    tx_checksum: TxChecksum,
    meta: &mut [u8],
    frame: &mut [u8],
    xdp: &mut XdpCounters,
) -> u32 {
    if tx_checksum == TxChecksum::Stack {
        return 0;
    }
    let Some((start, offset)) = tx_meta::prepare_tcp(frame) else {
        return 0;
    };
    tx_meta::write_request(meta, start, offset);
    xdp.tx_checksum_requests += 1;
    libc::XDP_TX_METADATA
}

/// What one [`Queue::rx_lend`] did: descriptors walked and released, frames lent, and whether
/// it stopped after a chain before the descriptors it peeked ran out.
#[derive(Debug, Clone, Copy, Default)]
struct Lent {
    descs: u32,
    frames: usize,
    cut: bool,
}

/// An RX chain in progress: bytes gathered so far, and whether it is already doomed (too long
/// for the scratch buffer, or a descriptor that did not fit its chunk).
#[derive(Debug, Clone, Copy, Default)]
struct Chain {
    len: usize,
    broken: bool,
}

impl<D> std::fmt::Debug for Queue<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("umem", &self.umem)
            .field("max_frame_len", &self.max_frame_len)
            .field("need_wakeup", &self.need_wakeup)
            .field("counters", &self.counters)
            .field("xdp", &self.xdp)
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

impl<D: Doorbell> Queue<D> {
    /// A queue over `rings` and `umem`, with up to a ring's worth (at most half the UMEM) of
    /// chunks handed to the fill ring for the kernel to receive into. `multi_buffer` (the
    /// socket is bound with `XDP_USE_SG`) allocates the two scratch buffers for frames longer
    /// than a chunk; without it `max_frame_len` must fit one chunk.
    pub(crate) fn new(
        rings: Rings,
        umem: Umem,
        doorbell: D,
        max_frame_len: usize,
        need_wakeup: bool,
        multi_buffer: bool,
    ) -> Self {
        let scratch = || {
            if multi_buffer {
                vec![0u8; max_frame_len].into_boxed_slice()
            } else {
                Box::default()
            }
        };
        let mut queue = Queue {
            rings,
            doorbell,
            umem,
            max_frame_len,
            need_wakeup,
            counters: DriverCounters::default(),
            xdp: XdpCounters::default(),
            staged: 0,
            staged_frames: 0,
            staged_bytes: 0,
            kick_owed: false,
            received_since_flush: false,
            rx_scratch: scratch(),
            tx_scratch: scratch(),
            rx_chain: None,
            tx_headroom: 0,
            tx_checksum: TxChecksum::Stack,
        };
        queue.prime_fill_ring();
        queue
    }

    fn prime_fill_ring(&mut self) {
        let fill = &mut self.rings.fill;
        let wanted = fill.size().min(self.umem.chunk_count() / 2);
        let granted = fill.reserve(wanted);
        let mut filled = 0;
        while filled < granted {
            let Some(addr) = self.umem.alloc() else { break };
            fill.write(filled, addr);
            filled += 1;
        }
        fill.cancel(granted - filled);
        fill.submit(filled);
    }

    /// For a UMEM registered with [`TX_METADATA_LEN`] bytes of TX metadata, before anything
    /// is staged: keeps those bytes in front of every TX frame, and leaves TCP checksums to
    /// `tx_checksum` (anything but [`TxChecksum::Stack`] needs the metadata).
    pub(crate) fn set_tx_metadata(&mut self, tx_checksum: TxChecksum) {
        self.tx_headroom = TX_METADATA_LEN;
        self.tx_checksum = tx_checksum;
    }

    /// Longest part of a TX frame one chunk holds, after the metadata in front of it.
    fn tx_part_len(&self) -> usize {
        (self.umem.chunk_size() - self.tx_headroom) as usize
    }

    pub(crate) fn doorbell(&self) -> &D {
        &self.doorbell
    }

    pub(crate) fn counters(&self) -> DriverCounters {
        self.counters
    }

    pub(crate) fn xdp_counters(&self) -> XdpCounters {
        self.xdp
    }

    /// Whether received frames wait on the RX ring (one Acquire load).
    pub(crate) fn rx_ready(&self) -> bool {
        self.rings.rx.ready() > 0
    }

    /// Frames are ready, or the kernel asks to be woken to fill the ring (which the next
    /// `rx_burst` does): either way the caller should poll. No syscall.
    pub(crate) fn rx_pending(&self) -> bool {
        self.rx_ready() || (self.need_wakeup && self.rings.fill.needs_wakeup())
    }

    /// [`Queue::rx_batch`] lending the frames one at a time. Returns how many `on_frame` saw.
    pub(crate) fn rx_burst(&mut self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> usize {
        self.rx_batch(max, &mut |frames| {
            for frame in frames {
                on_frame(frame);
            }
        })
    }

    /// See the module documentation. Takes up to `max` descriptors off the RX ring (`max`
    /// frames at most, fewer if some are chains) and lends their frames to `on_frames` in
    /// batches of at most [`RX_LEND_MAX`]. Returns how many frames `on_frames` saw.
    pub(crate) fn rx_batch(&mut self, max: usize, on_frames: &mut dyn FnMut(&[&[u8]])) -> usize {
        self.reclaim_completions();
        let mut budget = u32::try_from(max).unwrap_or(u32::MAX);
        let mut taken = 0;
        let mut delivered = 0;
        while budget > 0 {
            // `RX_LEND_MAX` is 64: a u32.
            let want = budget.min(RX_LEND_MAX as u32);
            let batch = self.rx_lend(want, on_frames);
            taken += batch.descs;
            budget -= batch.descs;
            delivered += batch.frames;
            // The ring ran dry, unless the batch stopped early after a chain.
            if batch.descs == 0 || (batch.descs < want && !batch.cut) {
                break;
            }
        }
        if taken == 0 {
            self.wake_rx_if_asked();
        }
        self.received_since_flush |= taken > 0;
        delivered
    }

    /// One batch: walks up to `want` (at most [`RX_LEND_MAX`]) RX descriptors, lends their
    /// frames to `on_frames` in one call, then releases the descriptors it walked and gives
    /// their chunks back to the fill ring (or, if it is short of room, the free stack).
    ///
    /// A frame in one descriptor is lent straight from the UMEM. A chain is gathered into
    /// `rx_scratch`; since that holds one chain at a time, a completed chain is the last frame
    /// of its batch: the walk stops after it, and the descriptors peeked past it are left on
    /// the ring, unreleased, for the next batch.
    fn rx_lend(&mut self, want: u32, on_frames: &mut dyn FnMut(&[&[u8]])) -> Lent {
        let Queue {
            rings: Rings { rx, fill, .. },
            umem,
            max_frame_len,
            counters,
            xdp,
            rx_scratch,
            rx_chain,
            ..
        } = self;
        let n = rx.peek(want.min(RX_LEND_MAX as u32));
        if n == 0 {
            return Lent::default();
        }
        let mut slices: [&[u8]; RX_LEND_MAX] = [&[]; RX_LEND_MAX];
        let mut lent = 0;
        let mut walked = n;
        let mut chain_done = None;
        for i in 0..n {
            let Some(desc) = rx.read(i) else {
                // Unreachable: `i < n`, all peeked.
                walked = i;
                break;
            };
            let continued = desc.options & libc::XDP_PKT_CONTD != 0;
            // SAFETY: the descriptor came off the RX ring, so its chunk is ours until it goes
            // back on the fill ring or the free stack, which happens below only after
            // `on_frames` has returned, when no slice of `slices` is alive any more.
            let frame = unsafe { umem.frame(desc.addr, desc.len) };
            if frame.is_none() {
                xdp.rx_invalid_descs += 1;
            }
            if rx_chain.is_none() && !continued {
                // A whole frame in one descriptor: lent straight from the UMEM.
                match frame {
                    Some(frame) if frame.len() <= *max_frame_len => {
                        counters.rx_frames += 1;
                        counters.rx_bytes += frame.len() as u64;
                        // `lent <= i < n <= RX_LEND_MAX`.
                        slices[lent] = frame;
                        lent += 1;
                    }
                    _ => counters.rx_dropped += 1,
                }
                continue;
            }
            let chain = rx_chain.get_or_insert_with(Chain::default);
            match frame {
                Some(part) if !chain.broken => {
                    match rx_scratch.get_mut(chain.len..chain.len + part.len()) {
                        Some(to) => {
                            to.copy_from_slice(part);
                            chain.len += part.len();
                        }
                        None => chain.broken = true,
                    }
                }
                _ => chain.broken = true,
            }
            if continued {
                continue;
            }
            let chain = rx_chain.take().unwrap_or_default();
            if chain.broken {
                counters.rx_dropped += 1;
                xdp.rx_chains_dropped += 1;
            } else {
                counters.rx_frames += 1;
                counters.rx_bytes += chain.len as u64;
                xdp.rx_chains += 1;
                chain_done = Some(chain.len);
                walked = i + 1;
                break;
            }
        }
        if let Some(len) = chain_done {
            slices[lent] = &rx_scratch[..len];
            lent += 1;
        }
        if lent > 0 {
            on_frames(&slices[..lent]);
        }
        // Every slice lent is dead from here on: the chunks may go back to the kernel.
        let granted = fill.reserve(walked);
        let mut refilled = 0;
        for i in 0..walked {
            let Some(desc) = rx.read(i) else {
                break;
            };
            if let Some(base) = umem.chunk_base(desc.addr) {
                if refilled < granted {
                    fill.write(refilled, base);
                    refilled += 1;
                } else {
                    umem.release(base);
                }
            }
        }
        rx.release(walked);
        // Descriptors peeked past a lent chain: the next batch takes them again.
        rx.unpeek();
        if fill.in_flight() == 0 {
            xdp.fill_ring_empty += 1;
        }
        fill.cancel(granted - refilled);
        fill.submit(refilled);
        Lent {
            descs: walked,
            frames: lent,
            cut: walked < n,
        }
    }

    /// Frames `tx_stage` will take before the next flush, however long: free chunks (counting
    /// those waiting on the completion ring) and TX slots, whichever runs out first, divided by
    /// the descriptors the longest frame needs.
    pub(crate) fn tx_room(&self) -> usize {
        let chunks = self.umem.free_count() + self.rings.completion.ready() as usize;
        let descriptors = chunks.min(self.rings.tx.room() as usize);
        descriptors / self.descriptors_for(self.max_frame_len).max(1)
    }

    /// Descriptors (and chunks) a TX frame of `len` bytes takes.
    fn descriptors_for(&self, len: usize) -> usize {
        len.div_ceil(self.tx_part_len())
    }

    /// See the module documentation and [`FrameIo::tx_stage`](crate::FrameIo::tx_stage).
    pub(crate) fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let Some(len32) = u32::try_from(len).ok().filter(|&l| l > 0) else {
            self.counters.tx_dropped += 1;
            return false;
        };
        if len > self.max_frame_len {
            self.counters.tx_dropped += 1;
            return false;
        }
        if len > self.tx_part_len() {
            return self.tx_stage_chain(len, fill);
        }
        if self.umem.free_count() == 0 {
            self.reclaim_completions();
        }
        let Some(addr) = self.umem.alloc() else {
            self.counters.tx_ring_full += 1;
            return false;
        };
        let tx = &mut self.rings.tx;
        if tx.reserve(1) == 0 {
            self.umem.release(addr);
            self.counters.tx_ring_full += 1;
            return false;
        }
        let headroom = self.tx_headroom;
        // SAFETY: `addr` came off the free stack: no descriptor the kernel holds names it.
        let Some(buf) = (unsafe { self.umem.frame_mut(addr, headroom + len32) }) else {
            // Unreachable: `len <= tx_part_len()`. Undo rather than panic.
            tx.cancel(1);
            self.umem.release(addr);
            self.counters.tx_dropped += 1;
            return false;
        };
        let (meta, frame) = buf.split_at_mut(headroom as usize);
        fill(frame);
        let options = request_checksum(self.tx_checksum, meta, frame, &mut self.xdp);
        let desc = libc::xdp_desc {
            addr: addr + u64::from(headroom),
            len: len32,
            options,
        };
        tx.write(self.staged, desc);
        self.staged += 1;
        self.staged_frames += 1;
        self.staged_bytes += len as u64;
        self.umem.hint_next(headroom, TX_HINT_BYTES);
        true
    }

    /// `tx_stage` for a frame longer than a chunk: written into the TX scratch buffer, then
    /// copied into a chain of chunks, one TX slot each, `XDP_PKT_CONTD` on all but the last.
    /// All or nothing: if chunks or slots run short, nothing is claimed and `fill` is not
    /// called.
    fn tx_stage_chain(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if len > self.tx_scratch.len() {
            // Not a multi-buffer queue.
            self.counters.tx_dropped += 1;
            return false;
        }
        let descs = self.descriptors_for(len);
        if self.umem.free_count() < descs {
            self.reclaim_completions();
        }
        // At most `max_frame_len / 4096 + 1` descriptors: a u32.
        let descs32 = descs as u32;
        let tx = &mut self.rings.tx;
        if self.umem.free_count() < descs {
            self.counters.tx_ring_full += 1;
            return false;
        }
        let claimed = tx.reserve(descs32);
        if claimed < descs32 {
            tx.cancel(claimed);
            self.counters.tx_ring_full += 1;
            return false;
        }
        fill(&mut self.tx_scratch[..len]);
        let headroom = self.tx_headroom;
        // The request goes with the first descriptor, as the kernel reads it: written here,
        // copied in front of the first part below.
        let mut first_meta = [0u8; TX_METADATA_LEN as usize];
        let first_options = if self.tx_checksum == TxChecksum::KernelSoftware {
            // The kernel's software completion runs on the first descriptor alone, before the
            // rest of the chain joins the packet: complete a chain here instead.
            if let Some((start, offset)) = tx_meta::prepare_tcp(&mut self.tx_scratch[..len]) {
                tx_meta::complete(&mut self.tx_scratch[..len], start, offset);
            }
            0
        } else {
            request_checksum(
                self.tx_checksum,
                &mut first_meta,
                &mut self.tx_scratch[..len],
                &mut self.xdp,
            )
        };
        let part_len = (self.umem.chunk_size() - headroom) as usize;
        for (i, part) in self.tx_scratch[..len].chunks(part_len).enumerate() {
            // Cannot fail: `free_count() >= descs` was checked above and nothing took a
            // chunk since; the `else` only keeps a broken invariant from panicking.
            let Some(addr) = self.umem.alloc() else {
                break;
            };
            // `part` is at most one chunk: a u32.
            let part_len = part.len() as u32;
            let mut options = if i + 1 == descs {
                0
            } else {
                libc::XDP_PKT_CONTD
            };
            // SAFETY: `addr` came off the free stack: no descriptor the kernel holds names it.
            if let Some(to) = unsafe { self.umem.frame_mut(addr, headroom + part_len) } {
                let (meta, to) = to.split_at_mut(headroom as usize);
                to.copy_from_slice(part);
                if i == 0 && first_options != 0 {
                    meta.copy_from_slice(&first_meta);
                    options |= first_options;
                }
            }
            let desc = libc::xdp_desc {
                addr: addr + u64::from(headroom),
                len: part_len,
                options,
            };
            tx.write(self.staged + i as u32, desc);
        }
        self.staged += descs32;
        self.staged_frames += 1;
        self.staged_bytes += len as u64;
        self.xdp.tx_chains += 1;
        true
    }

    /// See the module documentation.
    pub(crate) fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.publish();
        self.kick()
    }

    /// See the module documentation.
    pub(crate) fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
        let received = self.received_since_flush;
        let submitted = self.publish();
        if self.rings.tx.in_flight() == 0 {
            self.kick_owed = false;
            return Ok(());
        }
        if self.kick_owed {
            if !submitted && !received {
                return Ok(());
            }
        } else if submitted {
            self.kick_owed = true;
            self.xdp.tx_kicks_deferred += 1;
            return Ok(());
        }
        self.kick()
    }

    /// Rings the doorbell owed by [`Queue::tx_flush_lazy`], unless the `poll()` the caller is
    /// about to make sends those frames itself (see the module documentation).
    pub(crate) fn before_wait(&mut self) -> Result<(), DriverError> {
        if !std::mem::take(&mut self.kick_owed) {
            return Ok(());
        }
        if self.rx_ready() || self.rings.tx.in_flight() > self.doorbell.tx_budget() {
            return self.kick();
        }
        self.xdp.tx_kicks_left_to_poll += 1;
        Ok(())
    }

    /// Reclaims completions and publishes every staged slot at once. Returns whether there
    /// were any.
    fn publish(&mut self) -> bool {
        self.reclaim_completions();
        self.received_since_flush = false;
        if self.staged == 0 {
            return false;
        }
        self.rings.tx.submit(self.staged);
        self.counters.tx_frames += u64::from(self.staged_frames);
        self.counters.tx_bytes += self.staged_bytes;
        self.staged = 0;
        self.staged_frames = 0;
        self.staged_bytes = 0;
        true
    }

    /// Kicks while the kernel has frames left on the ring: a kick sends at most the TX budget,
    /// so a big burst may need the next flush to kick again.
    fn kick(&mut self) -> Result<(), DriverError> {
        self.kick_owed = false;
        let tx = &self.rings.tx;
        if tx.in_flight() == 0 {
            return Ok(());
        }
        if self.need_wakeup && !tx.needs_wakeup() {
            return Ok(());
        }
        self.counters.kicks += 1;
        match self.doorbell.kick_tx() {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR)
                ) =>
            {
                self.xdp.tx_kick_busy += 1;
                Ok(())
            }
            Err(e) => Err(DriverError::io("AF_XDP TX kick (sendto)", e)),
        }
    }

    /// Takes sent chunks off the completion ring and back onto the free stack.
    fn reclaim_completions(&mut self) {
        let completion = &mut self.rings.completion;
        let n = completion.peek(u32::MAX);
        for i in 0..n {
            match completion.read(i) {
                Some(addr) if self.umem.release(addr) => self.xdp.tx_completed += 1,
                _ => self.xdp.completion_invalid += 1,
            }
        }
        completion.release(n);
    }

    fn wake_rx_if_asked(&mut self) {
        if self.need_wakeup && self.rings.fill.needs_wakeup() {
            self.counters.kicks += 1;
            self.xdp.rx_wakeups += 1;
            // Errors here are all transient (nothing to read); the next burst asks again.
            let _ = self.doorbell.wake_rx();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afxdp::ring::tests::ring_pair;
    use crate::afxdp::umem::CHUNK_SIZE;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts the doorbell's rings, and fails the TX kick with an errno when told to.
    #[derive(Default, Clone)]
    struct Bell {
        kicks: Rc<Cell<u32>>,
        wakes: Rc<Cell<u32>>,
        kick_errno: Rc<Cell<Option<i32>>>,
    }

    impl Doorbell for Bell {
        fn kick_tx(&self) -> io::Result<()> {
            self.kicks.set(self.kicks.get() + 1);
            match self.kick_errno.get() {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => Ok(()),
            }
        }
        fn wake_rx(&self) -> io::Result<()> {
            self.wakes.set(self.wakes.get() + 1);
            Ok(())
        }
        fn tx_budget(&self) -> u32 {
            BUDGET
        }
    }

    /// What the fake doorbell says one kick, or one `poll()`, sends.
    const BUDGET: u32 = 4;

    /// The kernel's side of the four rings, over the same anonymous memory as the queue's.
    struct FakeKernel {
        rx: ProducerRing<libc::xdp_desc>,
        tx: ConsumerRing<libc::xdp_desc>,
        fill: ConsumerRing<u64>,
        completion: ProducerRing<u64>,
        /// Chunks sent and not yet posted on the completion ring.
        sent: Vec<u64>,
    }

    const MAX_FRAME: usize = 1514;

    /// A queue with `ring` entries per ring and `chunks` UMEM chunks, whose ring indexes all
    /// start at `start` (close to `u32::MAX` to test the wrap-around), and the fake kernel
    /// across from it.
    fn queue(ring: u32, chunks: u32, start: u32, need_wakeup: bool) -> (Queue<Bell>, FakeKernel) {
        queue_with(ring, chunks, start, need_wakeup, MAX_FRAME, false)
    }

    /// A jumbo frame: Ethernet header and an MTU of 9000.
    const JUMBO: usize = 9014;

    /// A multi-buffer queue for frames up to `JUMBO` bytes, and the fake kernel.
    fn jumbo_queue(ring: u32, chunks: u32) -> (Queue<Bell>, FakeKernel) {
        queue_with(ring, chunks, 0, false, JUMBO, true)
    }

    fn queue_with(
        ring: u32,
        chunks: u32,
        start: u32,
        need_wakeup: bool,
        max_frame: usize,
        multi_buffer: bool,
    ) -> (Queue<Bell>, FakeKernel) {
        let (rx_kernel, rx) = ring_pair(ring, start);
        let (tx, tx_kernel) = ring_pair(ring, start);
        let (fill, fill_kernel) = ring_pair(ring, start);
        let (completion_kernel, completion) = ring_pair(ring, start);
        let rings = Rings {
            rx,
            tx,
            fill,
            completion,
        };
        let umem = Umem::new(chunks, CHUNK_SIZE).unwrap();
        let queue = Queue::new(
            rings,
            umem,
            Bell::default(),
            max_frame,
            need_wakeup,
            multi_buffer,
        );
        let kernel = FakeKernel {
            rx: rx_kernel,
            tx: tx_kernel,
            fill: fill_kernel,
            completion: completion_kernel,
            sent: Vec::new(),
        };
        (queue, kernel)
    }

    impl FakeKernel {
        /// Receives `frames` as a NIC would: each into a chunk taken off the fill ring, then
        /// posted on the RX ring. Returns how many fitted (free fill entries and RX slots).
        fn receive(&mut self, queue: &mut Queue<Bell>, frames: &[&[u8]]) -> usize {
            let n = (frames.len() as u32)
                .min(self.fill.ready())
                .min(self.rx.room());
            assert_eq!(self.fill.peek(n), n);
            assert_eq!(self.rx.reserve(n), n);
            for (i, frame) in frames.iter().take(n as usize).enumerate() {
                let addr = self.fill.read(i as u32).unwrap();
                // SAFETY: the chunk came off the fill ring, so the kernel side owns it until
                // its descriptor is on the RX ring; the queue does not touch it meanwhile.
                let buf = unsafe { queue.umem.frame_mut(addr, frame.len() as u32) }.unwrap();
                buf.copy_from_slice(frame);
                let desc = libc::xdp_desc {
                    addr,
                    len: frame.len() as u32,
                    options: 0,
                };
                assert!(self.rx.write(i as u32, desc));
            }
            self.fill.release(n);
            self.rx.submit(n);
            n as usize
        }

        /// Receives `frame` as a multi-buffer NIC would: cut into pieces of `piece` bytes, each
        /// written 256 bytes into a chunk taken off the fill ring (the kernel's headroom),
        /// posted as one chain with `XDP_PKT_CONTD` on all but the last descriptor.
        fn receive_chain(&mut self, queue: &mut Queue<Bell>, frame: &[u8], piece: usize) {
            let pieces: Vec<&[u8]> = frame.chunks(piece).collect();
            let n = pieces.len() as u32;
            assert_eq!(self.fill.peek(n), n, "fill ring short");
            assert_eq!(self.rx.reserve(n), n, "RX ring full");
            for (i, part) in pieces.iter().enumerate() {
                let addr = self.fill.read(i as u32).unwrap() + 256;
                // SAFETY: as in `receive`.
                let buf = unsafe { queue.umem.frame_mut(addr, part.len() as u32) }.unwrap();
                buf.copy_from_slice(part);
                let last = i + 1 == pieces.len();
                let desc = libc::xdp_desc {
                    addr,
                    len: part.len() as u32,
                    options: if last { 0 } else { libc::XDP_PKT_CONTD },
                };
                assert!(self.rx.write(i as u32, desc));
            }
            self.fill.release(n);
            self.rx.submit(n);
        }

        /// Takes a chunk off the fill ring and posts a descriptor for it that runs 50 bytes
        /// past the chunk's end (a buggy or hostile kernel), flagged `options`.
        fn receive_across_chunk_end(&mut self, options: u32) {
            assert_eq!(self.fill.peek(1), 1, "fill ring empty");
            let base = self.fill.read(0).unwrap();
            self.fill.release(1);
            self.post_rx(libc::xdp_desc {
                addr: base + u64::from(CHUNK_SIZE) - 10,
                len: 60,
                options,
            });
        }

        /// Posts one raw descriptor on the RX ring (a buggy or hostile kernel).
        fn post_rx(&mut self, desc: libc::xdp_desc) {
            assert_eq!(self.rx.reserve(1), 1);
            self.rx.write(0, desc);
            self.rx.submit(1);
        }

        /// Sends what is on the TX ring and returns the frames (a chain of descriptors joined
        /// into one); with `complete`, posts every chunk sent so far on the completion ring.
        fn send(&mut self, queue: &Queue<Bell>, complete: bool) -> Vec<Vec<u8>> {
            let n = self.tx.peek(u32::MAX);
            let mut frames = Vec::new();
            let mut open: Option<Vec<u8>> = None;
            for i in 0..n {
                let desc = self.tx.read(i).unwrap();
                // SAFETY: the descriptor is on the TX ring: the queue handed the chunk over
                // and does not write it until it comes back on the completion ring.
                let part = unsafe { queue.umem.frame(desc.addr, desc.len) }.unwrap();
                let mut frame = open.take().unwrap_or_default();
                frame.extend_from_slice(part);
                if desc.options & libc::XDP_PKT_CONTD != 0 {
                    open = Some(frame);
                } else {
                    frames.push(frame);
                }
                self.sent.push(desc.addr);
            }
            assert!(
                open.is_none(),
                "a chain ends past the descriptors submitted"
            );
            self.tx.release(n);
            if complete {
                self.complete();
            }
            frames
        }

        /// Posts the chunks sent so far on the completion ring.
        fn complete(&mut self) {
            let n = self.completion.reserve(self.sent.len() as u32);
            assert_eq!(n as usize, self.sent.len(), "completion ring full");
            for (i, &addr) in self.sent.iter().enumerate() {
                self.completion.write(i as u32, addr);
            }
            self.completion.submit(n);
            self.sent.clear();
        }

        /// Posts one raw address on the completion ring.
        fn post_completion(&mut self, addr: u64) {
            assert_eq!(self.completion.reserve(1), 1);
            self.completion.write(0, addr);
            self.completion.submit(1);
        }
    }

    fn frame(tag: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..4].copy_from_slice(&tag.to_be_bytes());
        f
    }

    fn collect(queue: &mut Queue<Bell>, max: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let n = queue.rx_burst(max, &mut |f| got.push(f.to_vec()));
        assert_eq!(n, got.len());
        got
    }

    /// `rx_batch`'s frames, one `Vec` for each call of its closure.
    fn batches(queue: &mut Queue<Bell>, max: usize) -> Vec<Vec<Vec<u8>>> {
        let mut got = Vec::new();
        let n = queue.rx_batch(max, &mut |frames| {
            assert!(!frames.is_empty(), "an empty batch was lent");
            assert!(frames.len() <= RX_LEND_MAX);
            got.push(frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>());
        });
        assert_eq!(n, got.iter().map(Vec::len).sum::<usize>());
        got
    }

    #[test]
    fn the_fill_ring_is_primed_with_half_the_umem_at_most() {
        let (_, kernel) = queue(64, 32, 0, false);
        assert_eq!(kernel.fill.ready(), 16, "half of 32 chunks");
        let (queue, kernel) = queue(8, 32, 0, false);
        assert_eq!(kernel.fill.ready(), 8, "a ring's worth");
        assert_eq!(queue.umem.free_count(), 24);
    }

    #[test]
    fn rx_burst_lends_frames_in_order_and_refills_their_chunks() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 60 + i as usize)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(kernel.receive(&mut queue, &refs), 5);
        // The fill ring had 8 chunks; the kernel took 5.
        assert_eq!(kernel.fill.ready(), 3);

        assert_eq!(collect(&mut queue, 3), frames[..3]);
        assert_eq!(collect(&mut queue, 64), frames[3..]);
        assert!(collect(&mut queue, 64).is_empty());

        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (5, 0));
        assert_eq!(c.rx_bytes, (60..65).sum::<u64>());
        // Each chunk went back on the fill ring, and no chunk was lost.
        assert_eq!(kernel.fill.ready(), 8);
        assert_eq!(queue.umem.free_count(), 24);
        assert_eq!(queue.xdp_counters().fill_ring_empty, 0);
    }

    #[test]
    fn bad_rx_descriptors_are_dropped_and_counted() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        // Outside the UMEM, across a chunk end, and longer than the MTU allows.
        kernel.post_rx(libc::xdp_desc {
            addr: 32 * u64::from(CHUNK_SIZE),
            len: 60,
            options: 0,
        });
        kernel.post_rx(libc::xdp_desc {
            addr: u64::from(CHUNK_SIZE) - 10,
            len: 60,
            options: 0,
        });
        let long = frame(7, MAX_FRAME + 1);
        assert_eq!(kernel.receive(&mut queue, &[&long]), 1);
        assert!(collect(&mut queue, 64).is_empty());
        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (0, 3));
        assert_eq!(queue.xdp_counters().rx_invalid_descs, 2);
    }

    #[test]
    fn an_emptied_fill_ring_is_counted() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        let frames: Vec<Vec<u8>> = (0..8).map(|i| frame(i, 60)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(kernel.receive(&mut queue, &refs), 8);
        // Every fill entry was taken; a ninth frame has nowhere to go.
        assert_eq!(kernel.receive(&mut queue, &[&frames[0]]), 0);
        let mut seen = 0;
        queue.rx_burst(64, &mut |_| {
            seen += 1;
        });
        assert_eq!(seen, 8);
        assert_eq!(queue.xdp_counters().fill_ring_empty, 1);
        assert_eq!(kernel.fill.ready(), 8);
        assert_eq!(kernel.receive(&mut queue, &[&frames[0]]), 1);
    }

    #[test]
    fn tx_stage_and_flush_send_frames_and_recycle_their_chunks() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        let bell = queue.doorbell().clone();
        assert_eq!(queue.tx_room(), 8);
        let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(i, 100)).collect();
        for f in &frames {
            assert!(queue.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(f)));
        }
        // Nothing is visible to the kernel before the flush.
        assert!(kernel.send(&queue, true).is_empty());
        assert_eq!(bell.kicks.get(), 0);
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.send(&queue, true), frames);
        let c = queue.counters();
        assert_eq!((c.tx_frames, c.tx_bytes, c.kicks), (3, 300, 1));
        assert_eq!(queue.umem.free_count(), 24 - 3);
        // A flush with nothing on the ring takes the completions back and does not kick.
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(queue.umem.free_count(), 24);
        assert_eq!(queue.xdp_counters().tx_completed, 3);
        // Bad lengths are refused without touching the ring.
        assert!(!queue.tx_stage(0, &mut |_| panic!("empty frame")));
        assert!(!queue.tx_stage(MAX_FRAME + 1, &mut |_| panic!("oversize frame")));
        assert_eq!(queue.counters().tx_dropped, 2);
        assert_eq!(queue.tx_room(), 8);
    }

    /// A TX descriptor and the metadata in front of its frame.
    type DescAndMeta = (libc::xdp_desc, Vec<u8>);

    /// Takes what is on the TX ring: each descriptor with the metadata in front of its frame,
    /// and the frames (a chain joined into one).
    fn take_tx(queue: &Queue<Bell>, kernel: &mut FakeKernel) -> (Vec<DescAndMeta>, Vec<Vec<u8>>) {
        let n = kernel.tx.peek(u32::MAX);
        let mut descs = Vec::new();
        let mut frames = Vec::new();
        let mut open = Vec::new();
        for i in 0..n {
            let desc = kernel.tx.read(i).unwrap();
            let meta_at = desc.addr - u64::from(TX_METADATA_LEN);
            // SAFETY: the chunk is on the TX ring: the queue does not write it until it
            // comes back on the completion ring.
            let meta = unsafe { queue.umem.frame(meta_at, TX_METADATA_LEN) }.unwrap();
            // SAFETY: as above.
            let part = unsafe { queue.umem.frame(desc.addr, desc.len) }.unwrap();
            open.extend_from_slice(part);
            if desc.options & libc::XDP_PKT_CONTD == 0 {
                frames.push(std::mem::take(&mut open));
            }
            descs.push((desc, meta.to_vec()));
        }
        kernel.tx.release(n);
        (descs, frames)
    }

    #[test]
    fn with_tx_metadata_tcp_frames_go_with_a_checksum_request_and_the_rest_as_they_are() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        queue.set_tx_metadata(TxChecksum::Device);
        let tcp = tx_meta::tests::frame(false, b"payload");
        let other = frame(1, 100);
        for f in [&tcp, &other] {
            assert!(queue.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(f)));
        }
        queue.tx_flush().unwrap();
        let (descs, mut sent) = take_tx(&queue, &mut kernel);
        assert_eq!(descs.len(), 2);
        for (desc, _) in &descs {
            assert_eq!(
                desc.addr % u64::from(CHUNK_SIZE),
                u64::from(TX_METADATA_LEN)
            );
        }
        let (tcp_desc, meta) = &descs[0];
        assert_eq!(tcp_desc.options, libc::XDP_TX_METADATA);
        let mut request = vec![0; TX_METADATA_LEN as usize];
        tx_meta::write_request(&mut request, 34, 16);
        assert_eq!(meta, &request);
        assert_eq!(descs[1].0.options, 0, "not TCP: no request");
        assert_eq!(queue.xdp_counters().tx_checksum_requests, 1);
        // The frame went with the pseudo-header sum in its field; completing it gives back
        // smoltcp's checksum.
        assert_eq!(sent[1], other);
        tx_meta::complete(&mut sent[0], 34, 16);
        assert_eq!(sent[0], tcp);
    }

    #[test]
    fn with_tx_metadata_a_chain_asks_on_its_first_descriptor_or_is_completed_here() {
        for (mode, flagged) in [
            (TxChecksum::Device, libc::XDP_TX_METADATA),
            (TxChecksum::KernelSoftware, 0),
        ] {
            let (mut queue, mut kernel) = jumbo_queue(16, 64);
            queue.set_tx_metadata(mode);
            let tcp = tx_meta::tests::frame(false, &[7u8; 8_948]);
            assert!(queue.tx_stage(tcp.len(), &mut |buf| buf.copy_from_slice(&tcp)));
            queue.tx_flush().unwrap();
            let (descs, mut sent) = take_tx(&queue, &mut kernel);
            // 9002 bytes in parts of at most 4096 - 24.
            let parts: Vec<u32> = descs.iter().map(|(d, _)| d.len).collect();
            assert_eq!(parts, [4072, 4072, 858], "{mode:?}");
            assert_eq!(
                descs[0].0.options,
                libc::XDP_PKT_CONTD | flagged,
                "{mode:?}"
            );
            assert_eq!(descs[1].0.options, libc::XDP_PKT_CONTD);
            assert_eq!(descs[2].0.options, 0);
            if mode == TxChecksum::Device {
                tx_meta::complete(&mut sent[0], 34, 16);
            }
            assert_eq!(sent[0], tcp, "{mode:?}");
        }
    }

    #[test]
    fn a_full_tx_ring_is_counted_and_frees_up_after_the_kernel_sends() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        for i in 0..8 {
            assert!(queue.tx_stage(60, &mut |buf| buf.fill(i)));
        }
        assert_eq!(queue.tx_room(), 0);
        assert!(!queue.tx_stage(60, &mut |_| panic!("the ring is full")));
        assert_eq!(queue.counters().tx_ring_full, 1);
        // The refused frame did not keep its chunk.
        assert_eq!(queue.umem.free_count(), 24 - 8);
        queue.tx_flush().unwrap();
        assert_eq!(kernel.send(&queue, true).len(), 8);
        assert_eq!(queue.tx_room(), 8);
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(9)));
    }

    #[test]
    fn running_out_of_chunks_reclaims_completions_first() {
        // 16 chunks: 8 on the fill ring, 8 for TX.
        let (mut queue, mut kernel) = queue(64, 16, 0, false);
        for i in 0..8 {
            assert!(queue.tx_stage(60, &mut |buf| buf.fill(i)));
        }
        queue.tx_flush().unwrap();
        // The kernel sends but has not completed yet: no chunk to stage into.
        assert_eq!(kernel.send(&queue, false).len(), 8);
        let sent_twice = kernel.sent[0];
        assert!(!queue.tx_stage(60, &mut |_| panic!("no free chunk")));
        assert_eq!(queue.counters().tx_ring_full, 1);
        // Completions arrive: tx_stage takes them back itself.
        kernel.complete();
        assert_eq!(queue.tx_room(), 8);
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(1)));
        assert_eq!(queue.xdp_counters().tx_completed, 8);
        // A completion for a chunk that is already free, or outside the UMEM, is ignored and
        // counted.
        kernel.post_completion(sent_twice);
        kernel.post_completion(16 * u64::from(CHUNK_SIZE));
        let free = queue.umem.free_count();
        queue.tx_flush().unwrap();
        assert_eq!(queue.xdp_counters().completion_invalid, 2);
        assert_eq!(queue.umem.free_count(), free);
    }

    #[test]
    fn back_pressure_on_the_kick_is_not_an_error_and_the_next_flush_kicks_again() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        let bell = queue.doorbell().clone();
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(1)));
        bell.kick_errno.set(Some(libc::EAGAIN));
        queue.tx_flush().unwrap();
        assert_eq!(queue.xdp_counters().tx_kick_busy, 1);
        // The frame is still on the ring: the next flush kicks again.
        bell.kick_errno.set(None);
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 2);
        assert_eq!(kernel.send(&queue, true).len(), 1);
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 2, "nothing in flight: no kick");
        // Any other errno is an error.
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(2)));
        bell.kick_errno.set(Some(libc::ENXIO));
        let err = queue.tx_flush().unwrap_err();
        assert_eq!(err.kind(), crate::DriverErrorKind::Io);
    }

    #[test]
    fn with_need_wakeup_the_doorbell_rings_only_when_the_kernel_asks() {
        let (mut queue, mut kernel) = queue(8, 32, 0, true);
        let bell = queue.doorbell().clone();
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(1)));
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 0);
        kernel.tx.set_flags(libc::XDP_RING_NEED_WAKEUP);
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.send(&queue, true).len(), 1);

        assert_eq!(collect(&mut queue, 8).len(), 0);
        assert_eq!(bell.wakes.get(), 0);
        kernel.fill.set_flags(libc::XDP_RING_NEED_WAKEUP);
        assert_eq!(collect(&mut queue, 8).len(), 0);
        assert_eq!(bell.wakes.get(), 1);
        assert_eq!(queue.xdp_counters().rx_wakeups, 1);
    }

    /// Stages `n` frames of 60 bytes.
    fn stage(queue: &mut Queue<Bell>, n: usize) {
        for _ in 0..n {
            assert!(queue.tx_stage(60, &mut |buf| buf.fill(7)));
        }
    }

    #[test]
    fn lazy_flushes_share_a_kick_between_passes_with_work() {
        let (mut queue, mut kernel) = queue(64, 128, 0, false);
        let bell = queue.doorbell().clone();
        // The first pass with frames leaves its kick owed.
        stage(&mut queue, 2);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(bell.kicks.get(), 0);
        assert_eq!(queue.counters().tx_frames, 2, "published all the same");
        // The next one with frames rings it for both.
        stage(&mut queue, 1);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.send(&queue, true).len(), 3);
        // So does a pass that only received: answers to what came in may follow, but the
        // frames owed must not wait for them.
        stage(&mut queue, 1);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.receive(&mut queue, &[&frame(1, 60)]), 1);
        assert_eq!(collect(&mut queue, 8).len(), 1);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(bell.kicks.get(), 2);
        assert_eq!(kernel.send(&queue, true).len(), 1);
        // A plain flush always settles it.
        stage(&mut queue, 1);
        queue.tx_flush_lazy().unwrap();
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 3);
        assert_eq!(kernel.send(&queue, true).len(), 1);
        // Nothing owed and nothing in flight: nothing to ring.
        queue.tx_flush_lazy().unwrap();
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 3);
        let xdp = queue.xdp_counters();
        assert_eq!((xdp.tx_kicks_deferred, xdp.tx_kicks_left_to_poll), (3, 0));
    }

    #[test]
    fn an_owed_kick_is_left_to_the_wait_only_when_its_poll_sends_the_frames() {
        let (mut queue, mut kernel) = queue(64, 128, 0, false);
        let bell = queue.doorbell().clone();
        // An idle pass keeps the kick owed; the wait's `poll()` sends up to a budget itself.
        stage(&mut queue, BUDGET as usize);
        queue.tx_flush_lazy().unwrap();
        queue.tx_flush_lazy().unwrap();
        assert_eq!(bell.kicks.get(), 0);
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 0);
        assert_eq!(queue.xdp_counters().tx_kicks_left_to_poll, 1);
        assert_eq!(kernel.send(&queue, true).len(), BUDGET as usize);
        // Owed once: the next wait has nothing to settle.
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 0);
        // More than a budget would outlast the `poll()`: kick.
        stage(&mut queue, BUDGET as usize + 1);
        queue.tx_flush_lazy().unwrap();
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.send(&queue, true).len(), BUDGET as usize + 1);
        // Frames waiting to be received: the caller will not `poll()` at all, so kick.
        stage(&mut queue, 1);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(kernel.receive(&mut queue, &[&frame(2, 60)]), 1);
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 2);
        assert_eq!(kernel.send(&queue, true).len(), 1);
        // Sent before the wait (the kernel took them on its own): nothing owed is left.
        stage(&mut queue, 1);
        queue.tx_flush_lazy().unwrap();
        assert_eq!(kernel.send(&queue, true).len(), 1);
        queue.tx_flush_lazy().unwrap();
        queue.before_wait().unwrap();
        assert_eq!(bell.kicks.get(), 2);
        assert_eq!(queue.xdp_counters().tx_kicks_left_to_poll, 1);
    }

    #[test]
    fn ring_indexes_wrap_around_u32_under_traffic_both_ways() {
        let start = u32::MAX - 20;
        let (mut queue, mut kernel) = queue(8, 32, start, false);
        let mut next_rx = 0u32;
        let mut expect_rx = 0u32;
        let mut next_tx = 0u32;
        let mut expect_tx = 0u32;
        for round in 0..40usize {
            let burst = round % 7 + 1;
            let frames: Vec<Vec<u8>> = (0..burst)
                .map(|_| {
                    next_rx += 1;
                    frame(next_rx, 60 + round)
                })
                .collect();
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            assert_eq!(kernel.receive(&mut queue, &refs), burst);
            for got in collect(&mut queue, 64) {
                expect_rx += 1;
                assert_eq!(got, frame(expect_rx, 60 + round));
            }
            for _ in 0..burst {
                next_tx += 1;
                let f = frame(next_tx, 70 + round);
                assert!(queue.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(&f)));
            }
            queue.tx_flush().unwrap();
            for got in kernel.send(&queue, true) {
                expect_tx += 1;
                assert_eq!(got, frame(expect_tx, 70 + round));
            }
        }
        assert_eq!((expect_rx, expect_tx), (next_rx, next_tx));
        assert!(next_rx > 8 * 8, "many more frames than ring slots");
        // The indexes went past u32::MAX, and no chunk was lost on the way.
        assert!(kernel.rx.published() < start && queue.rings.tx.published() < start);
        queue.tx_flush().unwrap();
        assert_eq!(queue.umem.free_count() + kernel.fill.ready() as usize, 32);
        let c = queue.counters();
        assert_eq!((c.rx_dropped, c.tx_dropped, c.tx_ring_full), (0, 0, 0));
    }

    /// A frame of `len` bytes whose every byte depends on `tag` and its position.
    fn patterned(tag: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag))
            .collect()
    }

    #[test]
    fn a_received_chain_is_gathered_into_one_frame_and_its_chunks_refilled() {
        let (mut queue, mut kernel) = jumbo_queue(16, 64);
        let small = frame(1, 60);
        let jumbo = patterned(7, JUMBO);
        assert_eq!(kernel.receive(&mut queue, &[&small]), 1);
        // 3840 bytes a descriptor, as copy mode fills a 4096-byte chunk after its headroom.
        kernel.receive_chain(&mut queue, &jumbo, 3840);
        assert_eq!(kernel.receive(&mut queue, &[&small]), 1);
        assert_eq!(kernel.fill.ready(), 16 - 5);
        let got = collect(&mut queue, 64);
        assert_eq!(got, vec![small.clone(), jumbo, small]);
        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (3, 0));
        assert_eq!(c.rx_bytes, 60 + JUMBO as u64 + 60);
        assert_eq!(queue.xdp_counters().rx_chains, 1);
        // Every chunk of the chain went back on the fill ring.
        assert_eq!(kernel.fill.ready(), 16);
        assert_eq!(queue.umem.free_count(), 64 - 16);
    }

    #[test]
    fn a_chain_cut_by_the_burst_limit_is_finished_by_the_next_burst() {
        let (mut queue, mut kernel) = jumbo_queue(16, 64);
        let jumbo = patterned(3, 8000);
        kernel.receive_chain(&mut queue, &jumbo, 1000);
        // Eight descriptors; a burst of 5 stops inside the chain and delivers nothing.
        assert!(collect(&mut queue, 5).is_empty());
        // The five gathered chunks are back on the fill ring already.
        assert_eq!(kernel.fill.ready(), 16 - 8 + 5);
        assert_eq!(collect(&mut queue, 5), vec![jumbo]);
        assert_eq!(kernel.fill.ready(), 16);
        assert_eq!(queue.counters().rx_frames, 1);
    }

    #[test]
    fn chains_too_long_or_broken_are_dropped_whole_and_counted() {
        let (mut queue, mut kernel) = jumbo_queue(32, 64);
        let good = patterned(9, 5000);
        // One byte over the largest frame.
        kernel.receive_chain(&mut queue, &patterned(1, JUMBO + 1), 3840);
        kernel.receive_chain(&mut queue, &good, 3840);
        assert_eq!(collect(&mut queue, 64), vec![good.clone()]);
        // A chain with a descriptor that runs past its chunk.
        kernel.post_rx(libc::xdp_desc {
            addr: 256,
            len: 3840,
            options: libc::XDP_PKT_CONTD,
        });
        kernel.post_rx(libc::xdp_desc {
            addr: 2 * u64::from(CHUNK_SIZE) + 4000,
            len: 200,
            options: libc::XDP_PKT_CONTD,
        });
        kernel.post_rx(libc::xdp_desc {
            addr: 4 * u64::from(CHUNK_SIZE),
            len: 100,
            options: 0,
        });
        kernel.receive_chain(&mut queue, &good, 2000);
        assert_eq!(collect(&mut queue, 64), vec![good]);
        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (2, 2));
        let x = queue.xdp_counters();
        assert_eq!((x.rx_chains, x.rx_chains_dropped), (2, 2));
        assert_eq!(x.rx_invalid_descs, 1);
    }

    #[test]
    fn a_single_buffer_queue_drops_chains() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        kernel.receive_chain(&mut queue, &patterned(2, 1200), 1000);
        let small = frame(5, 60);
        assert_eq!(kernel.receive(&mut queue, &[&small]), 1);
        assert_eq!(collect(&mut queue, 64), vec![small]);
        assert_eq!(queue.counters().rx_dropped, 1);
        assert_eq!(queue.xdp_counters().rx_chains_dropped, 1);
        assert!(!queue.tx_stage(4097, &mut |_| panic!("no multi-buffer")));
    }

    #[test]
    fn a_jumbo_frame_is_sent_as_a_chain_and_every_chunk_comes_back() {
        let (mut queue, mut kernel) = jumbo_queue(16, 64);
        let bell = queue.doorbell().clone();
        // 16 slots, 3 descriptors for the longest frame.
        assert_eq!(queue.tx_room(), 5);
        let jumbo = patterned(4, JUMBO);
        let exact = patterned(5, 2 * CHUNK_SIZE as usize);
        let small = frame(6, 100);
        assert!(queue.tx_stage(jumbo.len(), &mut |buf| buf.copy_from_slice(&jumbo)));
        assert!(queue.tx_stage(small.len(), &mut |buf| buf.copy_from_slice(&small)));
        assert!(queue.tx_stage(exact.len(), &mut |buf| buf.copy_from_slice(&exact)));
        assert_eq!(queue.rings.tx.claimed(), 3 + 1 + 2);
        queue.tx_flush().unwrap();
        assert_eq!(bell.kicks.get(), 1);
        assert_eq!(kernel.tx.ready(), 6);
        assert_eq!(kernel.send(&queue, true), vec![jumbo.clone(), small, exact]);
        let c = queue.counters();
        assert_eq!((c.tx_frames, c.tx_bytes), (3, JUMBO as u64 + 100 + 8192));
        assert_eq!(queue.xdp_counters().tx_chains, 2);
        queue.tx_flush().unwrap();
        assert_eq!(queue.xdp_counters().tx_completed, 6);
        assert_eq!(queue.umem.free_count(), 64 - 16);
        assert!(!queue.tx_stage(JUMBO + 1, &mut |_| panic!("too long")));
    }

    #[test]
    fn a_chain_that_does_not_fit_the_ring_claims_nothing() {
        let (mut queue, mut kernel) = jumbo_queue(8, 64);
        let jumbo = patterned(8, JUMBO);
        assert_eq!(queue.tx_room(), 2);
        for _ in 0..2 {
            assert!(queue.tx_stage(JUMBO, &mut |buf| buf.copy_from_slice(&jumbo)));
        }
        assert_eq!(queue.tx_room(), 0);
        // Two slots left: not enough for three descriptors, and `fill` is not called.
        let free = queue.umem.free_count();
        assert!(!queue.tx_stage(JUMBO, &mut |_| panic!("no room for the chain")));
        assert_eq!(queue.counters().tx_ring_full, 1);
        assert_eq!(queue.umem.free_count(), free);
        assert_eq!(queue.rings.tx.claimed(), 6);
        // A small frame still fits.
        assert!(queue.tx_stage(60, &mut |buf| buf.fill(1)));
        queue.tx_flush().unwrap();
        let sent = kernel.send(&queue, true);
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0], jumbo);
        assert_eq!(sent[1], jumbo);
        queue.tx_flush().unwrap();
        assert_eq!(queue.tx_room(), 2);
    }

    #[test]
    fn running_out_of_chunks_for_a_chain_reclaims_completions() {
        // 16 chunks: 8 on the fill ring, 8 for TX: two chains of three, then two spare.
        let (mut queue, mut kernel) = jumbo_queue(64, 16);
        let jumbo = patterned(2, JUMBO);
        for _ in 0..2 {
            assert!(queue.tx_stage(JUMBO, &mut |buf| buf.copy_from_slice(&jumbo)));
        }
        queue.tx_flush().unwrap();
        assert_eq!(kernel.send(&queue, false).len(), 2);
        assert!(!queue.tx_stage(JUMBO, &mut |_| panic!("two chunks free")));
        kernel.complete();
        assert!(queue.tx_stage(JUMBO, &mut |buf| buf.copy_from_slice(&jumbo)));
        assert_eq!(queue.xdp_counters().tx_completed, 6);
    }

    #[test]
    fn rx_batch_lends_a_burst_at_once_in_order_and_refills_after_it_returns() {
        let (mut queue, mut kernel) = queue(128, 256, 0, false);
        let frames: Vec<Vec<u8>> = (0..100).map(|i| frame(i, 60 + i as usize)).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(kernel.receive(&mut queue, &refs), 100);
        assert_eq!(kernel.fill.ready(), 28);
        // While the batch is lent its chunks are not back on the fill ring, nor its
        // descriptors off the RX ring.
        let mut calls = 0;
        let n = queue.rx_batch(64, &mut |lent| {
            calls += 1;
            assert_eq!(kernel.fill.ready(), 28, "chunks refilled while still lent");
            assert_eq!(
                kernel.rx.room(),
                28,
                "descriptors released while still lent"
            );
            assert_eq!(lent.len(), 64, "the first batch is the lend limit");
            for (got, want) in lent.iter().zip(&frames) {
                assert_eq!(got, want);
            }
        });
        assert_eq!((n, calls), (64, 1));
        assert_eq!(kernel.fill.ready(), 28 + 64);
        // The rest, in one batch; `max` above the lend limit lends the rest in more calls.
        assert_eq!(batches(&mut queue, 1000), vec![frames[64..].to_vec()]);
        assert_eq!(kernel.fill.ready(), 128);
        assert_eq!(kernel.receive(&mut queue, &refs), 100);
        let got = batches(&mut queue, 1000);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 36]);
        assert_eq!(got.concat(), frames);
        // `max` counts: 10 of 100, then the rest.
        assert_eq!(kernel.receive(&mut queue, &refs), 100);
        assert_eq!(batches(&mut queue, 10), vec![frames[..10].to_vec()]);
        assert_eq!(batches(&mut queue, 1000).concat(), frames[10..]);
        assert!(batches(&mut queue, 64).is_empty());

        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (300, 0));
        assert_eq!(c.rx_bytes, 3 * (60..160).sum::<u64>());
        assert_eq!(kernel.fill.ready(), 128);
        assert_eq!(queue.umem.free_count(), 128);
        assert_eq!(queue.xdp_counters().fill_ring_empty, 0);
    }

    #[test]
    fn a_chain_ends_its_batch_and_the_rest_comes_in_the_next() {
        let (mut queue, mut kernel) = jumbo_queue(32, 64);
        let small: Vec<Vec<u8>> = (0..6).map(|i| frame(i, 60)).collect();
        let jumbo = patterned(7, JUMBO);
        let other = patterned(8, 6000);
        assert_eq!(kernel.receive(&mut queue, &[&small[0], &small[1]]), 2);
        kernel.receive_chain(&mut queue, &jumbo, 3840);
        assert_eq!(kernel.receive(&mut queue, &[&small[2], &small[3]]), 2);
        // Two chains back to back: one batch each.
        kernel.receive_chain(&mut queue, &other, 3840);
        kernel.receive_chain(&mut queue, &jumbo, 3840);
        assert_eq!(kernel.receive(&mut queue, &[&small[4]]), 1);
        assert_eq!(
            batches(&mut queue, 64),
            vec![
                vec![small[0].clone(), small[1].clone(), jumbo.clone()],
                vec![small[2].clone(), small[3].clone(), other.clone()],
                vec![jumbo.clone()],
                vec![small[4].clone()],
            ]
        );
        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (8, 0));
        assert_eq!(c.rx_bytes, 5 * 60 + 2 * JUMBO as u64 + 6000);
        assert_eq!(queue.xdp_counters().rx_chains, 3);
        assert_eq!(kernel.fill.ready(), 32);

        // When the budget runs out with the chain, what follows it stays on the RX ring,
        // unreleased, until the next call.
        assert_eq!(kernel.receive(&mut queue, &[&small[0]]), 1);
        kernel.receive_chain(&mut queue, &jumbo, 3840);
        assert_eq!(kernel.receive(&mut queue, &[&small[1], &small[2]]), 2);
        assert_eq!(
            batches(&mut queue, 4),
            vec![vec![small[0].clone(), jumbo.clone()]]
        );
        assert_eq!(kernel.rx.room(), 32 - 2);
        assert_eq!(kernel.fill.ready(), 32 - 2);
        assert_eq!(
            batches(&mut queue, 4),
            vec![vec![small[1].clone(), small[2].clone()]]
        );
        assert_eq!(kernel.rx.room(), 32);
        assert_eq!(kernel.fill.ready(), 32);

        // A chain cut by the budget lends nothing, and is finished by the next call.
        kernel.receive_chain(&mut queue, &other, 1000);
        assert!(batches(&mut queue, 5).is_empty());
        assert_eq!(batches(&mut queue, 5), vec![vec![other]]);
        assert_eq!(queue.counters().rx_frames, 8 + 4 + 1);
        assert_eq!(queue.umem.free_count(), 64 - 32);
    }

    #[test]
    fn broken_chains_and_bad_descriptors_are_dropped_inside_a_batch() {
        let (mut queue, mut kernel) = jumbo_queue(64, 128);
        let small: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 60)).collect();
        let good = patterned(9, 5000);
        assert_eq!(kernel.receive(&mut queue, &[&small[0]]), 1);
        // Outside the UMEM: no chunk to refill.
        kernel.post_rx(libc::xdp_desc {
            addr: 128 * u64::from(CHUNK_SIZE),
            len: 60,
            options: 0,
        });
        // Longer than the largest frame.
        kernel.receive_chain(&mut queue, &patterned(1, JUMBO + 1), 3840);
        assert_eq!(kernel.receive(&mut queue, &[&small[1]]), 1);
        // A single descriptor across its chunk's end, then one inside a chain.
        kernel.receive_across_chunk_end(0);
        kernel.receive_across_chunk_end(libc::XDP_PKT_CONTD);
        assert_eq!(kernel.receive(&mut queue, &[&small[2]]), 1);
        assert_eq!(kernel.receive(&mut queue, &[&small[3]]), 1);
        kernel.receive_chain(&mut queue, &good, 2000);
        assert_eq!(kernel.receive(&mut queue, &[&small[4]]), 1);
        // Dropped chains never reach the scratch buffer's reader, so they do not end a batch;
        // the broken chain swallowed `small[2]`, its last descriptor.
        assert_eq!(
            batches(&mut queue, 64),
            vec![
                vec![
                    small[0].clone(),
                    small[1].clone(),
                    small[3].clone(),
                    good.clone()
                ],
                vec![small[4].clone()],
            ]
        );
        let c = queue.counters();
        assert_eq!((c.rx_frames, c.rx_dropped), (5, 4));
        let x = queue.xdp_counters();
        assert_eq!((x.rx_chains, x.rx_chains_dropped), (1, 2));
        assert_eq!(x.rx_invalid_descs, 3);
        // Every descriptor was released and every chunk the kernel took came back.
        assert_eq!(kernel.rx.room(), 64);
        assert_eq!(kernel.fill.ready(), 64);
        assert_eq!(queue.umem.free_count(), 128 - 64);
    }

    #[test]
    fn a_single_buffer_queue_drops_a_chain_without_ending_the_batch() {
        let (mut queue, mut kernel) = queue(8, 32, 0, false);
        let small: Vec<Vec<u8>> = (0..2).map(|i| frame(i, 60)).collect();
        assert_eq!(kernel.receive(&mut queue, &[&small[0]]), 1);
        kernel.receive_chain(&mut queue, &patterned(2, 1200), 1000);
        assert_eq!(kernel.receive(&mut queue, &[&small[1]]), 1);
        assert_eq!(
            batches(&mut queue, 64),
            vec![vec![small[0].clone(), small[1].clone()]]
        );
        assert_eq!(queue.xdp_counters().rx_chains_dropped, 1);
    }

    #[test]
    fn rx_batch_and_rx_burst_see_the_same_frames_and_count_them_alike() {
        let traffic = |kernel: &mut FakeKernel, queue: &mut Queue<Bell>| {
            let small: Vec<Vec<u8>> = (0..4).map(|i| frame(i, 60 + i as usize)).collect();
            assert_eq!(kernel.receive(queue, &[&small[0], &small[1]]), 2);
            kernel.receive_chain(queue, &patterned(1, JUMBO), 3840);
            kernel.post_rx(libc::xdp_desc {
                addr: 256 * u64::from(CHUNK_SIZE),
                len: 60,
                options: 0,
            });
            kernel.receive_chain(queue, &patterned(2, JUMBO + 1), 3840);
            kernel.receive_across_chunk_end(0);
            assert_eq!(kernel.receive(queue, &[&small[2]]), 1);
            kernel.receive_chain(queue, &patterned(3, 7000), 1000);
            assert_eq!(kernel.receive(queue, &[&small[3]]), 1);
        };
        let (mut burst_queue, mut burst_kernel) = jumbo_queue(64, 128);
        let (mut batch_queue, mut batch_kernel) = jumbo_queue(64, 128);
        let mut by_burst = Vec::new();
        let mut by_batch = Vec::new();
        for max in [3, 64, 5, 64] {
            traffic(&mut burst_kernel, &mut burst_queue);
            traffic(&mut batch_kernel, &mut batch_queue);
            // 17 descriptors: at most 17 calls drain them.
            for _ in 0..17 {
                let got = collect(&mut burst_queue, max);
                let lent = batches(&mut batch_queue, max).concat();
                assert_eq!(got, lent, "burst of {max}");
                by_burst.extend(got);
                by_batch.extend(lent);
            }
            assert_eq!(burst_kernel.rx.room(), 64, "rx_burst left descriptors");
            assert_eq!(batch_kernel.rx.room(), 64, "rx_batch left descriptors");
        }
        assert_eq!(by_burst.len(), 4 * 6);
        assert_eq!(by_burst, by_batch);
        assert_eq!(burst_queue.counters(), batch_queue.counters());
        assert_eq!(burst_queue.xdp_counters(), batch_queue.xdp_counters());
        assert_eq!(batch_kernel.fill.ready(), 64);
        assert_eq!(batch_kernel.rx.room(), 64);
    }
}
