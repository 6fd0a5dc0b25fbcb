//! Sender-side loss recovery: a scoreboard of the data in flight (RFC 6675, built from the
//! SACK blocks of RFC 2018), and the state of the current loss-recovery episode.
//!
//! The scoreboard divides the sequence space from the oldest unacknowledged octet (SND.UNA)
//! to the highest one sent (SND.MAX) into *blocks*: runs of octets that share one state
//! (selectively acknowledged, deemed lost, retransmitted) and one transmit time. Contiguous
//! data sent with the same state grows the block at the top instead of adding one, so the
//! number of blocks follows the number of holes and SACK blocks, not the number of segments.
//! The board has a fixed capacity; when it runs out of blocks, neighbours are merged, keeping
//! only what is safe to assume of both (never "acknowledged" or "lost" unless both were).
//!
//! A range the board does not cover (state set up from outside, for instance) counts as sent
//! once, at an unknown time, and not acknowledged: exactly what TCP without a scoreboard
//! assumes of all its data.
//!
//! The socket feeds every transmission ([`Recovery::on_sent`]), every acceptable ACK
//! ([`Recovery::on_ack`]) and every retransmission timeout ([`Recovery::on_rto`]) in, and asks
//! what to retransmit next ([`Recovery::next_retransmission`]) and how much data the network
//! holds ([`Recovery::pipe`]), which the congestion window is compared against.

use crate::time::{Duration, Instant};
use crate::wire::TcpSeqNumber;

/// Blocks a scoreboard holds: enough for a dozen holes with their SACK blocks and
/// retransmissions, 16 bytes each.
pub(super) const SCOREBOARD_BLOCKS: usize = 32;

/// RFC 6675 DupThresh: the number of duplicate ACKs, or of SACKed segments above a hole, that
/// marks the hole lost.
pub(super) const DUP_THRESH: usize = 3;

/// The octets were selectively acknowledged.
const SACKED: u8 = 1 << 0;
/// The octets were deemed lost; unless `RETRANS` is also set, they await retransmission.
const LOST: u8 = 1 << 1;
/// The octets were retransmitted after being deemed lost, and that copy may be in flight.
const RETRANS: u8 = 1 << 2;
/// The octets were sent more than once (Karn: an ACK for them says nothing of one round trip).
const EVER_RETRANS: u8 = 1 << 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Block {
    /// One past the last octet of the block. A block starts where the one before it ends.
    end: TcpSeqNumber,
    /// When the block was last transmitted (the latest of its octets).
    xmit: Instant,
    flags: u8,
}

impl Block {
    const EMPTY: Block = Block {
        end: TcpSeqNumber(0),
        xmit: Instant::ZERO,
        flags: 0,
    };

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Lost and not (or no longer) retransmitted: waiting to be sent again.
    fn awaits_retransmission(&self) -> bool {
        self.flags & (SACKED | LOST | RETRANS) == LOST
    }
}

/// A piece of the sequence space that an ACK delivered (cumulatively or selectively) for the
/// first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delivered {
    pub end: TcpSeqNumber,
    pub len: usize,
    pub xmit: Instant,
    pub ever_retransmitted: bool,
    /// Retransmitted after being deemed lost, and that copy possibly in flight.
    pub retransmitted: bool,
}

/// The blocks from SND.UNA to SND.MAX. See the module documentation.
#[derive(Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub(super) struct Scoreboard {
    /// Where the first block starts.
    start: TcpSeqNumber,
    len: usize,
    /// Last: blocks are used from the first, so those past the few in use stay out of cache.
    blocks: [Block; SCOREBOARD_BLOCKS],
}

impl core::fmt::Debug for Scoreboard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Scoreboard[")?;
        for (start, block) in self.iter() {
            write!(f, " {}..{}", start, block.end)?;
            for (flag, name) in [(SACKED, "S"), (LOST, "L"), (RETRANS, "R"), (EVER_RETRANS, "E")] {
                if block.has(flag) {
                    write!(f, "{name}")?;
                }
            }
            write!(f, "@{}", block.xmit)?;
        }
        write!(f, " ]")
    }
}

impl Scoreboard {
    pub fn new() -> Self {
        Scoreboard {
            start: TcpSeqNumber(0),
            blocks: [Block::EMPTY; SCOREBOARD_BLOCKS],
            len: 0,
        }
    }

    fn block_start(&self, index: usize) -> TcpSeqNumber {
        match index {
            0 => self.start,
            _ => self.blocks[index - 1].end,
        }
    }

    fn end(&self) -> TcpSeqNumber {
        match self.len {
            0 => self.start,
            n => self.blocks[n - 1].end,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (TcpSeqNumber, &Block)> + '_ {
        self.blocks[..self.len]
            .iter()
            .enumerate()
            .map(|(i, block)| (self.block_start(i), block))
    }

    fn insert(&mut self, index: usize, block: Block) {
        debug_assert!(self.len < SCOREBOARD_BLOCKS);
        self.blocks.copy_within(index..self.len, index + 1);
        self.blocks[index] = block;
        self.len += 1;
    }

    fn remove(&mut self, index: usize) {
        self.blocks.copy_within(index + 1..self.len, index);
        self.len -= 1;
    }

    /// Makes the board cover exactly `[una, snd_max)`: forgets what lies below `una`, and adds
    /// a block, sent once at an unknown time, for any part it does not know of.
    fn cover(&mut self, una: TcpSeqNumber, snd_max: TcpSeqNumber) {
        self.trim(una, |_| {});
        if self.len == 0 {
            self.start = una;
        }
        if self.start > una {
            self.reserve(1);
            self.insert(
                0,
                Block {
                    end: self.start,
                    ..Block::EMPTY
                },
            );
            self.start = una;
        }
        self.append(snd_max, Instant::ZERO);
    }

    /// Forgets everything below `ack`, calling `delivered` for each piece that had not been
    /// selectively acknowledged before.
    fn trim(&mut self, ack: TcpSeqNumber, mut delivered: impl FnMut(Delivered)) {
        if self.len == 0 {
            self.start = self.start.max(ack);
            return;
        }
        let mut gone = 0;
        while gone < self.len {
            let start = self.block_start(gone);
            let block = self.blocks[gone];
            let end = block.end.min(ack);
            if end <= start {
                break;
            }
            if !block.has(SACKED) {
                delivered(Delivered {
                    end,
                    len: end - start,
                    xmit: block.xmit,
                    ever_retransmitted: block.has(EVER_RETRANS),
                    retransmitted: block.has(RETRANS),
                });
            }
            if block.end > ack {
                break;
            }
            gone += 1;
        }
        self.blocks.copy_within(gone..self.len, 0);
        self.len -= gone;
        self.start = self.start.max(ack);
    }

    /// Adds `[end(), end)`, sent at `xmit`, growing the top block when it is plain fresh data.
    fn append(&mut self, end: TcpSeqNumber, xmit: Instant) {
        if end <= self.end() {
            return;
        }
        self.reserve(1);
        match self.len.checked_sub(1).map(|i| &mut self.blocks[i]) {
            Some(top) if top.flags == 0 => {
                top.end = end;
                top.xmit = top.xmit.max(xmit);
            }
            _ => self.insert(
                self.len,
                Block {
                    end,
                    xmit,
                    flags: 0,
                },
            ),
        }
    }

    /// Ensures a block boundary at `seq`, using a free block if one must be split. Returns the
    /// index of the block that starts at `seq` (`len` if `seq` is at or past the end).
    fn split(&mut self, seq: TcpSeqNumber) -> usize {
        let Some(index) = (0..self.len).find(|&i| self.blocks[i].end > seq) else {
            return self.len;
        };
        if self.block_start(index) >= seq || self.len == SCOREBOARD_BLOCKS {
            // (A full board cannot split: the whole block then takes the caller's change. The
            // callers reserve room first, so this does not happen.)
            return index;
        }
        let lower = Block {
            end: seq,
            ..self.blocks[index]
        };
        self.insert(index, lower);
        index + 1
    }

    /// Calls `change` with the start of every block in `[from, to)` and the block itself,
    /// splitting blocks at both ends first, then merges neighbours left alike.
    fn mark(
        &mut self,
        from: TcpSeqNumber,
        to: TcpSeqNumber,
        mut change: impl FnMut(TcpSeqNumber, &mut Block),
    ) {
        let from = from.max(self.start);
        let to = to.min(self.end());
        if from >= to {
            return;
        }
        self.reserve(2);
        let first = self.split(from);
        let last = self.split(to);
        for i in first..last {
            let start = self.block_start(i);
            change(start, &mut self.blocks[i]);
        }
        self.compact();
    }

    /// Merges neighbours in the same state. Returns `true` if any were.
    fn compact(&mut self) -> bool {
        let before = self.len;
        let mut i = 1;
        while i < self.len {
            let (lower, upper) = (self.blocks[i - 1], self.blocks[i]);
            // Plain fresh data merges only when sent at the same time: keeping the split tells
            // the loss detector which part was sent later. Blocks in any other state merge.
            if lower.flags == upper.flags && (lower.flags != 0 || lower.xmit == upper.xmit) {
                self.blocks[i - 1] = Block {
                    end: upper.end,
                    xmit: lower.xmit.max(upper.xmit),
                    flags: lower.flags,
                };
                self.remove(i);
            } else {
                i += 1;
            }
        }
        self.len < before
    }

    /// Frees blocks until `n` are free.
    fn reserve(&mut self, n: usize) {
        while self.len + n > SCOREBOARD_BLOCKS && self.len >= 2 {
            if !self.compact() {
                self.merge_smallest_pair();
            }
        }
    }

    /// Merges the two neighbours that span the fewest octets, keeping only what holds for
    /// both: acknowledged or lost only if both were; sent at the later time.
    fn merge_smallest_pair(&mut self) {
        let Some(i) = (1..self.len).min_by_key(|&i| self.blocks[i].end - self.block_start(i - 1))
        else {
            return;
        };
        let (lower, upper) = (self.blocks[i - 1], self.blocks[i]);
        let both = lower.flags & upper.flags & (SACKED | LOST);
        let retrans = if both & LOST != 0 {
            (lower.flags | upper.flags) & RETRANS
        } else {
            0
        };
        self.blocks[i - 1] = Block {
            end: upper.end,
            xmit: lower.xmit.max(upper.xmit),
            flags: both | retrans | ((lower.flags | upper.flags) & EVER_RETRANS),
        };
        self.remove(i);
    }
}

/// RFC 8985 §7.2 WCDelAckT, added to the probe timeout when one segment is in flight (its ACK
/// may be delayed on purpose). RFC 8985 takes the worst case, 200 ms, so that a probe seldom
/// goes while the peer holds its ACK. Here a probe resends the last segment, which the peer
/// answers at once (see `Socket::probe_to_send`): a probe too early costs one segment, while a
/// single lost segment waits for this timer. 40 ms is Linux's shortest delayed-ACK timer
/// (`TCP_DELACK_MIN`): a Linux peer's delayed ACK mostly still comes first.
const TLP_DELAYED_ACK: Duration = Duration::from_millis(40);
/// The probe timeout before any RTT sample (RFC 8985 §7.2).
const TLP_INITIAL_PTO: Duration = Duration::from_secs(1);
/// Added to twice the smoothed RTT, so that a probe on a path of a few microseconds does not
/// race the ACK it waits for (Linux adds two clock ticks, `TCP_TIMEOUT_MIN`).
const TLP_MARGIN: Duration = Duration::from_millis(2);
/// RFC 8985 §6.2 step 4: recoveries a grown reordering window lasts without a new D-SACK.
const REO_WND_PERSIST: u8 = 16;

/// Why a recovery episode began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum EpisodeKind {
    /// Loss detected from ACKs (fast recovery, RFC 6675 / RFC 6582 / RFC 8985).
    Fast,
    /// The retransmission timer expired (RFC 5681 §3.1, RFC 6298 (5.4)).
    Timeout,
    /// The path MTU dropped: what was in flight is resent in smaller segments, with no
    /// window reduction (RFC 8201, RFC 1191; Linux's `tcp_simple_retransmit`).
    PathMtu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Episode {
    kind: EpisodeKind,
    /// RFC 6675 RecoveryPoint: SND.MAX when the episode began. It ends when this is ACKed.
    point: TcpSeqNumber,
    /// Duplicate ACKs since the last advance of the cumulative ACK: each stands for a segment
    /// that left the network (RFC 6582 window inflation, for peers without SACK).
    dupacks: usize,
    /// Octets retransmitted because they were deemed lost in this episode.
    retransmitted: usize,
    /// Of those, octets that turned out to have arrived the first time: a D-SACK reported the
    /// copy (RFC 2883, RFC 3708).
    spurious: usize,
    /// The next retransmission goes whatever the congestion window: the episode's first
    /// (RFC 5681 §3.2 step 4), or the one a partial ACK calls for (RFC 6582 §3.2 step 5).
    exempt: bool,
}

/// What an ACK or a timer changed, for the socket's congestion controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Outcome {
    /// A loss was detected outside any episode: a fast-recovery episode began, and the
    /// congestion window must be reduced (once for the whole episode).
    pub entered_recovery: bool,
    /// The ACK ended the episode in progress.
    pub exited_recovery: bool,
    /// The episode that ended only retransmitted data that had arrived (every retransmission
    /// came back in a D-SACK): the reduction it made should be undone (RFC 3708's detection,
    /// as Linux's undo).
    pub undo: bool,
    /// A tail loss probe repaired a loss: reduce the window once, with no episode
    /// (RFC 8985 §7.4.2).
    pub probe_repaired_loss: bool,
    /// Octets the ACK delivered for the first time, cumulatively or selectively.
    pub delivered: usize,
}

/// What the socket knows of the path, for loss detection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Path {
    pub now: Instant,
    /// SND.UNA, before the ACK being processed if any.
    pub una: TcpSeqNumber,
    /// SND.MAX: one past the highest octet (or FIN) sent.
    pub snd_max: TcpSeqNumber,
    /// The sender's maximum segment size.
    pub mss: usize,
    /// SACK was negotiated on the connection.
    pub sack_permitted: bool,
    /// The smallest RTT sample of the connection (RFC 8985 RACK.min_RTT).
    pub min_rtt: Option<Duration>,
    /// The smoothed RTT (RFC 6298 SRTT).
    pub srtt: Option<Duration>,
}

/// What the socket tells [`Recovery::on_ack`] about an acceptable ACK.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack<'a> {
    pub path: Path,
    /// The cumulative acknowledgment number.
    pub ack: TcpSeqNumber,
    /// SACK blocks as received, or all `None` if SACK is not in use.
    pub sack: &'a [Option<(u32, u32)>; 3],
    /// RFC 5681's definition of a duplicate ACK held.
    pub duplicate: bool,
    /// Consecutive duplicate ACKs, this one included.
    pub dupacks: usize,
}

/// RFC 8985 RACK state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Rack {
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent data delivered so far.
    latest: Option<(Instant, TcpSeqNumber)>,
    /// RACK.rtt: the round trip of that data.
    rtt: Duration,
    /// RACK.fack: the highest sequence number delivered so far.
    fack: Option<TcpSeqNumber>,
    reordering_seen: bool,
    reo_wnd_mult: u8,
    reo_wnd_persist: u8,
    /// RACK.dsack_round: the reordering window grows at most once per round trip.
    dsack_round: Option<TcpSeqNumber>,
    /// When data still in flight will be deemed lost if not delivered by then.
    timer: Option<Instant>,
}

impl Rack {
    const NEW: Rack = Rack {
        latest: None,
        rtt: Duration::ZERO,
        fack: None,
        reordering_seen: false,
        reo_wnd_mult: 1,
        reo_wnd_persist: 0,
        dsack_round: None,
        timer: None,
    };
}

/// RFC 8985 §7 tail loss probe state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct Probe {
    /// When the probe is due.
    timer: Option<Instant>,
    /// TLP.end_seq: SND.MAX after the probe, while its outcome is unknown.
    end: Option<TcpSeqNumber>,
    /// A D-SACK arrived since: both the original and the probe arrived, nothing was lost.
    dsacked: bool,
}

impl Probe {
    const NEW: Probe = Probe {
        timer: None,
        end: None,
        dsacked: false,
    };
}

/// Loss-recovery state of one connection. See the module documentation.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub(super) struct Recovery {
    episode: Option<Episode>,
    /// RFC 6582 `recover`: the RecoveryPoint of the last episode. A new fast recovery
    /// triggered by duplicate ACKs starts only once the cumulative ACK is past it, so the
    /// duplicate ACKs that retransmissions cause do not start a second one.
    recover: Option<TcpSeqNumber>,
    rack: Rack,
    probe: Probe,
    /// The last fast recovery, after it ended, while D-SACKs may still show all it resent had
    /// arrived: (octets retransmitted, octets shown spurious). Cleared by the next episode.
    undo_pending: Option<(usize, usize)>,
    /// Configuration, kept across connections: RACK loss detection (with SACK).
    pub rack_enabled: bool,
    /// Configuration, kept across connections: tail loss probes (with SACK).
    pub tlp_enabled: bool,
    /// Last: only its first blocks are in use while the path is clean.
    board: Scoreboard,
}

impl Recovery {
    pub fn new() -> Self {
        Recovery {
            board: Scoreboard::new(),
            episode: None,
            recover: None,
            rack: Rack::NEW,
            probe: Probe::NEW,
            undo_pending: None,
            rack_enabled: true,
            tlp_enabled: true,
        }
    }

    /// Forgets the connection, keeps the configuration.
    pub fn reset(&mut self) {
        *self = Recovery {
            rack_enabled: self.rack_enabled,
            tlp_enabled: self.tlp_enabled,
            ..Recovery::new()
        };
    }

    /// The next retransmission goes out whatever the congestion window: the first of an
    /// episode (RFC 5681 §3.2 step 4, RFC 6675 §5 step 4.3), or, without SACK, the one a
    /// partial ACK calls for (RFC 6582 §3.2 step 5). Without SACK the sender cannot tell that
    /// data after a hole has arrived, so its pipe may stay above the window with no ACK to
    /// come: the retransmission that would draw one must not wait for the window.
    pub fn retransmission_exempt(&self) -> bool {
        self.episode.is_some_and(|episode| episode.exempt)
    }

    /// A fast-recovery episode is in progress: the congestion window does not grow.
    pub fn in_fast_recovery(&self) -> bool {
        matches!(
            self.episode,
            Some(Episode {
                kind: EpisodeKind::Fast,
                ..
            })
        )
    }

    /// Any episode, fast recovery or after a timeout, is in progress.
    pub fn in_recovery(&self) -> bool {
        self.episode.is_some()
    }

    /// The earliest timer: the RACK reordering timer or the tail loss probe.
    pub fn poll_at(&self) -> Option<Instant> {
        let rack = self.rack.timer.filter(|_| self.rack_enabled);
        let probe = self.probe.timer.filter(|_| self.tlp_enabled);
        match (rack, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records the transmission of `[start, end)` at `now`: new data if `start` is SND.MAX, a
    /// retransmission otherwise.
    pub fn on_sent(
        &mut self,
        una: TcpSeqNumber,
        start: TcpSeqNumber,
        end: TcpSeqNumber,
        now: Instant,
        srtt: Option<Duration>,
    ) {
        if end <= start {
            return;
        }
        self.board.cover(una, start.max(una));
        let board_end = self.board.end();
        if start < board_end {
            let mut repaired = 0;
            self.board.mark(start, end.min(board_end), |from, block| {
                block.xmit = now;
                block.flags |= EVER_RETRANS;
                if block.has(LOST) && !block.has(RETRANS) {
                    block.flags |= RETRANS;
                    repaired += block.end - from;
                }
            });
            if let Some(episode) = &mut self.episode {
                episode.retransmitted += repaired;
                if repaired > 0 {
                    episode.exempt = false;
                }
            }
        }
        self.board.append(end, now);
        // A retransmission with nothing sent after it needs its own timer (see
        // `detect_lost_retransmissions`); new data hands the job back to RACK.
        if self.rack_enabled
            && let Some(deadline) = self.retransmission_probe_deadline(srtt)
        {
            self.rack.timer = Some(self.rack.timer.map_or(deadline, |t| t.min(deadline)));
        }
    }

    /// Processes an acceptable ACK: updates the board from the cumulative ACK and the SACK
    /// blocks, detects losses (RACK with SACK, RFC 6675 IsLost if RACK is off, RFC 6582
    /// NewReno without SACK), and begins or ends episodes.
    pub fn on_ack(&mut self, ack: &Ack<'_>) -> Outcome {
        let path = &ack.path;
        let mut outcome = Outcome::default();
        let advanced = ack.ack > path.una;
        let mut delivered_any = false;

        self.board.cover(path.una, path.snd_max);
        let mut deliveries = [None; 8];
        let mut count = 0;
        let mut delivered_total = 0;
        let mut note = |d: Delivered| {
            delivered_total += d.len;
            // Kept for RACK below; more than 8 pieces in one ACK only happens when it fills
            // many holes at once, and then the last ones (the most recently sent) matter.
            if count == deliveries.len() {
                deliveries.copy_within(1.., 0);
                count -= 1;
            }
            deliveries[count] = Some(d);
            count += 1;
        };
        self.board.trim(ack.ack, &mut note);
        let mut dsack = None;
        for (i, &(left, right)) in ack.sack.iter().flatten().enumerate() {
            let (left, right) = (TcpSeqNumber(left as i32), TcpSeqNumber(right as i32));
            if left >= right {
                continue;
            }
            // RFC 2883 §4: the first block reports a duplicate (D-SACK) if it lies below the
            // cumulative ACK or inside the second block.
            let second = ack.sack[1].map(|(l, r)| (TcpSeqNumber(l as i32), TcpSeqNumber(r as i32)));
            if i == 0
                && (right <= ack.ack
                    || second.is_some_and(|(l, r)| l <= left && right <= r))
            {
                dsack = Some(right - left);
                continue;
            }
            // Ignore blocks outside what is in flight.
            if left < ack.ack || right > path.snd_max {
                continue;
            }
            self.board.mark(left, right, |start, block| {
                if !block.has(SACKED) {
                    note(Delivered {
                        end: block.end,
                        len: block.end - start,
                        xmit: block.xmit,
                        ever_retransmitted: block.has(EVER_RETRANS),
                        retransmitted: block.has(RETRANS),
                    });
                    block.flags = (block.flags & EVER_RETRANS) | SACKED;
                }
            });
        }
        for d in deliveries[..count].iter().flatten() {
            delivered_any = true;
            self.rack_update(d, path);
        }
        outcome.delivered = delivered_total;
        if let Some(len) = dsack {
            outcome.undo |= self.on_dsack(len, path);
        }

        self.check_probe(ack, advanced, delivered_any, &mut outcome);

        if let Some(episode) = &mut self.episode {
            if ack.ack >= episode.point {
                // RFC 6675 §5 (RFC 6582 step 3): the recovery point is acknowledged.
                let episode = *episode;
                self.recover = Some(episode.point);
                self.episode = None;
                outcome.exited_recovery = true;
                if episode.kind == EpisodeKind::Fast && episode.retransmitted > 0 {
                    if episode.spurious >= episode.retransmitted {
                        // Everything retransmitted had arrived: it was reordering, not loss.
                        outcome.undo = true;
                        self.rack.reordering_seen = true;
                    } else {
                        // The D-SACKs for the last retransmissions may still be on their way.
                        self.undo_pending = Some((episode.retransmitted, episode.spurious));
                    }
                }
            } else if advanced {
                episode.dupacks = 0;
                // RFC 6582 step 4 (partial ACK, no SACK): the next hole starts at the new
                // cumulative ACK; retransmit it now rather than after a timeout.
                if !path.sack_permitted && episode.kind == EpisodeKind::Fast {
                    episode.exempt = true;
                    self.mark_lost(ack.ack, ack.ack + path.mss);
                }
            } else if ack.duplicate && !path.sack_permitted {
                episode.dupacks += 1;
            }
        }

        if self.uses_rack(path) {
            self.rack_detect_loss(path);
        } else if self.board.iter().any(|(_, block)| block.has(SACKED)) {
            self.mark_lost_by_sacks(path.mss);
        }

        let dupack_loss = !self.uses_rack(path)
            && ack.dupacks >= DUP_THRESH
            && self.recover.is_none_or(|point| ack.ack > point);
        if self.episode.is_none() && dupack_loss && !self.loss_pending() {
            // RFC 5681 §3.2 / RFC 6675 §5: the first unacknowledged segment is lost.
            self.mark_lost(ack.ack, ack.ack + path.mss);
        }
        self.maybe_enter_recovery(path, &mut outcome);
        outcome
    }

    /// The RACK reordering timer: data that was given a little more time to arrive is now
    /// deemed lost (RFC 8985 §6.3).
    pub fn on_reorder_timer(&mut self, path: &Path) -> Outcome {
        let mut outcome = Outcome::default();
        if self.rack.timer.is_none_or(|at| at > path.now) {
            return outcome;
        }
        self.rack.timer = None;
        self.board.cover(path.una, path.snd_max);
        if self.uses_rack(path) {
            self.rack_detect_loss(path);
            self.maybe_enter_recovery(path, &mut outcome);
        }
        outcome
    }

    fn uses_rack(&self, path: &Path) -> bool {
        self.rack_enabled && path.sack_permitted
    }

    fn loss_pending(&self) -> bool {
        self.board
            .iter()
            .any(|(_, block)| block.awaits_retransmission())
    }

    fn maybe_enter_recovery(&mut self, path: &Path, outcome: &mut Outcome) {
        if self.episode.is_none() && self.loss_pending() {
            self.episode = Some(Episode {
                kind: EpisodeKind::Fast,
                point: path.snd_max,
                dupacks: 0,
                retransmitted: 0,
                spurious: 0,
                exempt: true,
            });
            outcome.entered_recovery = true;
            // The episode's own reduction covers a probe in flight.
            self.probe = Probe::NEW;
            // A new reduction: the last one is no longer the one to undo.
            self.undo_pending = None;
        }
    }

    /// RFC 8985 §6.2 steps 2 and 3, for data delivered for the first time.
    fn rack_update(&mut self, d: &Delivered, path: &Path) {
        let rtt = path.now - d.xmit.min(path.now);
        if d.ever_retransmitted && path.min_rtt.is_some_and(|min| rtt < min) {
            // Sooner than any round trip: this probably acknowledges the original, so it says
            // nothing of the path now (RFC 8985 step 2). It does not prove the retransmission
            // spurious, though: a lone retransmission can come back sooner than the minimum
            // RTT measured on full flights. Only a D-SACK proves that (see `on_dsack`).
            return;
        }
        if self
            .rack
            .latest
            .is_none_or(|(xmit, end)| sent_after((d.xmit, d.end), (xmit, end)))
        {
            self.rack.latest = Some((d.xmit, d.end));
            self.rack.rtt = rtt;
        }
        match self.rack.fack {
            Some(fack) if d.end < fack => {
                if !d.ever_retransmitted {
                    self.rack.reordering_seen = true;
                }
            }
            _ => self.rack.fack = Some(d.end),
        }
    }

    /// A D-SACK of `len` octets: the peer received something twice (RFC 2883).
    /// Returns `true` if it shows that the last fast recovery, already over, only resent
    /// data that had arrived: its reduction is to be undone now.
    fn on_dsack(&mut self, len: usize, path: &Path) -> bool {
        let mut undo = false;
        if let Some(episode) = &mut self.episode {
            episode.spurious = (episode.spurious + len).min(episode.retransmitted);
        } else if let Some((retransmitted, spurious)) = &mut self.undo_pending {
            *spurious += len;
            if *spurious >= *retransmitted {
                undo = true;
                self.undo_pending = None;
                self.rack.reordering_seen = true;
            }
        }
        if self.probe.end.is_some() {
            self.probe.dsacked = true;
        }
        // RFC 8985 §6.2 step 4: grow the reordering window, at most once per round trip.
        if self.rack.dsack_round.is_none_or(|round| path.una >= round) {
            self.rack.reo_wnd_mult = self.rack.reo_wnd_mult.saturating_add(1);
            self.rack.dsack_round = Some(path.snd_max);
            self.rack.reo_wnd_persist = REO_WND_PERSIST;
        }
        undo
    }

    /// RFC 8985 §6.2 step 4: how much later than the most recently delivered data older data
    /// may still arrive before it is deemed lost.
    fn reo_wnd(&self, path: &Path) -> Duration {
        if !self.rack.reordering_seen {
            let sacked: usize = self
                .board
                .iter()
                .filter(|(_, block)| block.has(SACKED))
                .map(|(start, block)| block.end - start)
                .sum();
            if self.episode.is_some() || sacked >= DUP_THRESH * path.mss {
                return Duration::ZERO;
            }
        }
        let Some(min_rtt) = path.min_rtt else {
            return Duration::ZERO;
        };
        let window = min_rtt * u32::from(self.rack.reo_wnd_mult) / 4;
        match path.srtt {
            Some(srtt) => window.min(srtt),
            None => window,
        }
    }

    /// RFC 8985 §6.2 step 5: data sent before the most recently delivered data, and not
    /// delivered within RACK.rtt + reo_wnd of its transmission, is lost. Arms the reordering
    /// timer for the data that still has time.
    fn rack_detect_loss(&mut self, path: &Path) {
        self.rack.timer = None;
        self.detect_lost_retransmissions(path);
        let Some(latest) = self.rack.latest else {
            return;
        };
        let reo_wnd = self.reo_wnd(path);
        let rtt = self.rack.rtt;
        let mut timer: Option<Instant> = None;
        let mut lost = [None; SCOREBOARD_BLOCKS];
        let mut count = 0;
        for (start, block) in self.board.iter() {
            // In flight: neither SACKed nor waiting to be sent again.
            if block.has(SACKED)
                || block.awaits_retransmission()
                || !sent_after(latest, (block.xmit, block.end))
            {
                continue;
            }
            let deadline = block.xmit + rtt + reo_wnd;
            if deadline <= path.now {
                lost[count] = Some((start, block.end));
                count += 1;
            } else {
                timer = Some(timer.map_or(deadline, |t| t.min(deadline)));
            }
        }
        for (from, to) in lost[..count].iter().flatten() {
            // A lost retransmission is lost again: send it once more.
            self.board.mark(*from, *to, |_, block| {
                if !block.has(SACKED) {
                    block.flags = (block.flags & EVER_RETRANS) | LOST;
                }
            });
        }
        self.rack.timer = match (self.rack.timer, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Beyond RFC 8985: during recovery, when the only data in flight and not SACKed is
    /// retransmissions, RACK cannot tell whether they were lost, since nothing was sent after
    /// them (a sender limited by its buffer, whose oldest hole keeps the rest of the data from
    /// being acknowledged). RFC 8985 leaves that to the RTO, which costs at least its minimum
    /// and collapses the window to one segment. Instead, retransmissions not acknowledged a
    /// probe timeout (2 * SRTT + 2 ms, as TLP's) after the last of them are deemed lost and
    /// sent again. An ACK or a SACK for one of them, or a D-SACK, arrives within a round
    /// trip, so a spurious resend costs one segment.
    fn detect_lost_retransmissions(&mut self, path: &Path) {
        let Some(deadline) = self.retransmission_probe_deadline(path.srtt) else {
            return;
        };
        if deadline > path.now {
            self.rack.timer = Some(self.rack.timer.map_or(deadline, |t| t.min(deadline)));
            return;
        }
        for block in &mut self.board.blocks[..self.board.len] {
            if block.has(RETRANS) && !block.has(SACKED) {
                block.flags &= !RETRANS;
            }
        }
        // They go again now; a probe on top would be a second copy.
        self.probe.timer = None;
    }

    /// When the retransmissions in flight are deemed lost if nothing else arrives, if they
    /// are all that is in flight (see `detect_lost_retransmissions`).
    fn retransmission_probe_deadline(&self, srtt: Option<Duration>) -> Option<Instant> {
        self.episode?;
        let mut latest: Option<Instant> = None;
        for (_, block) in self.board.iter() {
            if block.has(SACKED) {
                continue;
            }
            if !block.has(RETRANS) {
                // Original data in flight, or data waiting to be resent: RACK's business.
                return None;
            }
            latest = Some(latest.map_or(block.xmit, |t| t.max(block.xmit)));
        }
        let timeout = match srtt {
            Some(srtt) => srtt * 2 + TLP_MARGIN,
            None => TLP_INITIAL_PTO,
        };
        latest.map(|at| at + timeout)
    }

    /// RFC 8985 §7.4: what the ACK says of a tail loss probe in flight.
    fn check_probe(&mut self, ack: &Ack<'_>, advanced: bool, delivered: bool, outcome: &mut Outcome) {
        let Some(end) = self.probe.end else {
            return;
        };
        if ack.ack < end {
            return;
        }
        if self.probe.dsacked {
            // A D-SACK showed both copies arrived: no loss to answer.
            self.probe.end = None;
        } else if ack.ack > end {
            // The probe repaired a loss (Linux tcp_process_tlp_ack: "ACK advances: there was a
            // loss, so reduce cwnd").
            self.probe.end = None;
            outcome.probe_repaired_loss = true;
        } else if !advanced && !delivered {
            // A pure duplicate ACK at the probe's end: the original and the probe both
            // arrived.
            self.probe.end = None;
        }
    }

    /// Arms the tail loss probe after data was sent or an ACK delivered data (RFC 8985 §7.2),
    /// if one may be sent: SACK in use, data in flight and no probe whose outcome is pending.
    /// `rto_at` is when the retransmission timer expires: the probe comes no later.
    ///
    /// Beyond RFC 8985, which sends probes only outside loss recovery: here a recovery episode
    /// may probe too. When the ACKs stop during recovery (the one that would have acknowledged
    /// everything was lost, or the last segments and their SACKs were), RACK has nothing to go
    /// on and RFC 8985 waits for the RTO, which costs at least its minimum and collapses the
    /// window to one segment. A probe costs one segment, and its ACK tells RACK what is
    /// missing. The episode's own window reduction covers it: a probe in recovery never
    /// reduces the window again.
    pub fn arm_probe(&mut self, path: &Path, flight: usize, rto_at: Option<Instant>) {
        if !self.tlp_enabled || !path.sack_permitted || flight == 0 || self.probe.end.is_some() {
            self.probe.timer = None;
            return;
        }
        let mut pto = match path.srtt {
            Some(srtt) => srtt * 2 + TLP_MARGIN,
            None => TLP_INITIAL_PTO,
        };
        if flight <= path.mss {
            pto += TLP_DELAYED_ACK;
        }
        let mut at = path.now + pto;
        if let Some(rto_at) = rto_at {
            at = at.min(rto_at);
        }
        self.probe.timer = Some(at);
    }

    /// The tail loss probe is due.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.tlp_enabled && self.probe.timer.is_some_and(|at| at <= now)
    }

    /// A probe was sent, resending the last segment (TLP.is_retrans is always true here, see
    /// `Socket::probe_to_send`): SND.MAX is `snd_max`. In recovery its outcome needs no
    /// watching (see `arm_probe`).
    pub fn on_probe_sent(&mut self, snd_max: TcpSeqNumber) {
        self.probe = Probe {
            timer: None,
            end: self.episode.is_none().then_some(snd_max),
            dsacked: false,
        };
    }

    /// The probe came due but nothing could be sent (no window): forget it; the
    /// retransmission timer covers the flight.
    pub fn cancel_probe(&mut self) {
        self.probe.timer = None;
    }

    /// Marks `[from, to)` lost, except what is SACKed.
    pub fn mark_lost(&mut self, from: TcpSeqNumber, to: TcpSeqNumber) {
        self.board.mark(from, to, |_, block| {
            if !block.has(SACKED) && !block.has(LOST) {
                block.flags |= LOST;
            }
        });
    }

    /// RFC 6675 §4 IsLost(): an octet is lost once DupThresh discontiguous SACKed runs, or more
    /// than (DupThresh - 1) * SMSS SACKed octets, lie above it.
    fn mark_lost_by_sacks(&mut self, mss: usize) {
        let mut sacked_above = 0;
        let mut runs_above = 0;
        let mut lost_below = None;
        for i in (0..self.board.len).rev() {
            let block = self.board.blocks[i];
            if block.has(SACKED) {
                sacked_above += block.end - self.board.block_start(i);
                runs_above += 1;
            } else if sacked_above > (DUP_THRESH - 1) * mss || runs_above >= DUP_THRESH {
                lost_below = Some(block.end);
                break;
            }
        }
        if let Some(end) = lost_below {
            let start = self.board.start;
            self.mark_lost(start, end);
        }
    }

    /// A retransmission timeout (RFC 6675 §5.1, RFC 5681 §3.1): everything in flight that is
    /// not SACKed is deemed lost and will be sent again, lowest first, in slow start.
    pub fn on_rto(&mut self, una: TcpSeqNumber, snd_max: TcpSeqNumber) {
        self.board.cover(una, snd_max);
        // RFC 2018 §8: the receiver may renege on SACKed data. A SACKed block at the
        // cumulative ACK can only mean it did, so forget what the SACK blocks said.
        if self.board.len > 0 && self.board.blocks[0].has(SACKED) {
            for block in &mut self.board.blocks[..self.board.len] {
                block.flags &= !SACKED;
            }
        }
        for block in &mut self.board.blocks[..self.board.len] {
            if !block.has(SACKED) {
                block.flags = (block.flags & EVER_RETRANS) | LOST;
            }
        }
        self.board.compact();
        self.episode = Some(Episode {
            kind: EpisodeKind::Timeout,
            point: snd_max,
            dupacks: 0,
            retransmitted: 0,
            spurious: 0,
            exempt: true,
        });
        self.rack.timer = None;
        self.probe = Probe::NEW;
        self.undo_pending = None;
        // RFC 8985 §6.2 step 4: a grown reordering window decays over recoveries.
        if self.rack.reo_wnd_persist > 0 {
            self.rack.reo_wnd_persist -= 1;
            if self.rack.reo_wnd_persist == 0 {
                self.rack.reo_wnd_mult = 1;
            }
        }
    }

    /// The path MTU dropped below the segments in flight (RFC 8201, RFC 1191): everything in
    /// flight and not SACKed is deemed lost, to be sent again at once in segments of the new
    /// size. Unlike a loss, this is no sign of congestion, so the congestion controller is not
    /// told (as Linux's `tcp_simple_retransmit`): an episode keeps a later ACK from starting a
    /// fast recovery, with its window reduction, for these losses. An episode in progress
    /// goes on until all now in flight is acknowledged; a tail loss probe in flight is
    /// forgotten, so that its outcome does not count as a loss either.
    pub fn on_path_mtu(&mut self, una: TcpSeqNumber, snd_max: TcpSeqNumber) {
        self.board.cover(una, snd_max);
        for block in &mut self.board.blocks[..self.board.len] {
            if !block.has(SACKED) {
                block.flags = (block.flags & EVER_RETRANS) | LOST;
            }
        }
        self.board.compact();
        let episode = self.episode.get_or_insert(Episode {
            kind: EpisodeKind::PathMtu,
            point: snd_max,
            dupacks: 0,
            retransmitted: 0,
            spurious: 0,
            exempt: true,
        });
        episode.point = episode.point.max(snd_max);
        episode.exempt = true;
        self.probe = Probe::NEW;
        self.rack.timer = None;
    }

    /// The lowest run that is lost and not yet retransmitted: its start, and its length up to
    /// `max_len`.
    pub fn next_retransmission(&self, max_len: usize) -> Option<(TcpSeqNumber, usize)> {
        self.board
            .iter()
            .find(|(_, block)| block.awaits_retransmission())
            .map(|(start, block)| (start, (block.end - start).min(max_len)))
    }

    /// RFC 6675 §4 SetPipe(): the octets in flight, i.e. sent and neither SACKed nor deemed
    /// lost (a lost octet counts again once retransmitted). `flight` is SND.MAX - SND.UNA.
    /// Without SACK, each duplicate ACK of the episode stands for one segment that left the
    /// network (RFC 6582's window inflation, expressed as a smaller pipe).
    pub fn pipe(&self, flight: usize, mss: usize) -> usize {
        flight.saturating_sub(self.pipe_excluded(mss))
    }

    /// What `pipe` takes off the flight size: the SACKed octets, those deemed lost and not
    /// retransmitted, and the inflation of a NewReno episode's duplicate ACKs. New data sent
    /// leaves it as it is (it adds to the flight only), so a segment train reads it once.
    pub fn pipe_excluded(&self, mss: usize) -> usize {
        let out: usize = self
            .board
            .iter()
            .filter(|(_, block)| block.has(SACKED) || block.awaits_retransmission())
            .map(|(start, block)| block.end - start)
            .sum();
        let inflation = match self.episode {
            Some(Episode { dupacks, .. }) => dupacks.saturating_mul(mss),
            None => 0,
        };
        out.saturating_add(inflation)
    }
}

/// RFC 8985 RACK_sent_after(): `a` was sent after `b` (by time, then by sequence number).
fn sent_after(a: (Instant, TcpSeqNumber), b: (Instant, TcpSeqNumber)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

#[cfg(test)]
mod test {
    use super::*;

    const MSS: usize = 10;

    #[test]
    fn the_scoreboard_blocks_end_the_recovery_state() {
        use core::mem::{offset_of, size_of};
        let blocks = offset_of!(Recovery, board) + offset_of!(Scoreboard, blocks);
        for field in [
            offset_of!(Recovery, episode),
            offset_of!(Recovery, recover),
            offset_of!(Recovery, rack),
            offset_of!(Recovery, probe),
            offset_of!(Recovery, undo_pending),
            offset_of!(Recovery, board) + offset_of!(Scoreboard, start),
            offset_of!(Recovery, board) + offset_of!(Scoreboard, len),
        ] {
            assert!(field < blocks);
        }
        assert_eq!(
            blocks + size_of::<[Block; SCOREBOARD_BLOCKS]>(),
            size_of::<Recovery>()
        );
    }

    fn seq(n: usize) -> TcpSeqNumber {
        TcpSeqNumber(1000) + n
    }

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    /// `n` segments of `MSS` octets, segment `i` sent at `i` ms; RFC 6675's loss detection
    /// (RACK off).
    fn sent(n: usize) -> Recovery {
        let mut r = Recovery::new();
        r.rack_enabled = false;
        for i in 0..n {
            r.on_sent(seq(0), seq(i * MSS), seq((i + 1) * MSS), at(i as i64), None);
        }
        r
    }

    fn path(now: i64, una: usize, snd_max: usize) -> Path {
        Path {
            now: at(now),
            una: seq(una),
            snd_max: seq(snd_max),
            mss: MSS,
            sack_permitted: true,
            min_rtt: Some(Duration::from_millis(40)),
            srtt: Some(Duration::from_millis(50)),
        }
    }

    /// An ACK at 100 ms.
    fn ack(r: &mut Recovery, una: usize, ack: usize, snd_max: usize, sack: &[(usize, usize)]) -> Outcome {
        ack_at(r, 100, una, ack, snd_max, sack)
    }

    fn ack_at(
        r: &mut Recovery,
        now: i64,
        una: usize,
        ack: usize,
        snd_max: usize,
        sack: &[(usize, usize)],
    ) -> Outcome {
        let mut blocks = [None; 3];
        for (slot, &(l, h)) in blocks.iter_mut().zip(sack) {
            *slot = Some((seq(l).0 as u32, seq(h).0 as u32));
        }
        r.on_ack(&Ack {
            path: path(now, una, snd_max),
            ack: seq(ack),
            sack: &blocks,
            duplicate: ack == una,
            dupacks: 0,
        })
    }

    /// The board as (start, end, flags) relative to `seq(0)`.
    fn shape(r: &Recovery) -> Vec<(usize, usize, u8)> {
        r.board
            .iter()
            .map(|(start, block)| (start - seq(0), block.end - seq(0), block.flags))
            .collect()
    }

    #[test]
    fn fresh_data_sent_at_once_is_one_block() {
        let mut r = Recovery::new();
        r.on_sent(seq(0), seq(0), seq(10), at(5), None);
        r.on_sent(seq(0), seq(10), seq(20), at(5), None);
        assert_eq!(shape(&r), [(0, 20, 0)]);
        // Sent later: the top block grows and takes the later time.
        r.on_sent(seq(0), seq(20), seq(30), at(6), None);
        assert_eq!(shape(&r), [(0, 30, 0)]);
        assert_eq!(r.board.blocks[0].xmit, at(6));
        assert_eq!(r.pipe(30, MSS), 30);
    }

    #[test]
    fn sack_blocks_split_the_board_and_leave_the_pipe() {
        let mut r = sent(6);
        let outcome = ack(&mut r, 0, 0, 60, &[(20, 40)]);
        assert_eq!(
            outcome,
            Outcome {
                delivered: 20,
                ..Outcome::default()
            }
        );
        assert_eq!(shape(&r), [(0, 20, 0), (20, 40, SACKED), (40, 60, 0)]);
        assert_eq!(r.pipe(60, MSS), 40);
        // The same block again delivers nothing new; an overlapping one only its new part.
        let outcome = ack(&mut r, 0, 0, 60, &[(30, 50), (20, 40)]);
        assert_eq!(outcome.delivered, 10);
        // 30 octets SACKed above [0, 20) now: more than 2 * SMSS, so it is lost.
        assert_eq!(shape(&r), [(0, 20, LOST), (20, 50, SACKED), (50, 60, 0)]);
        // The cumulative ACK passes everything below 30: [0, 20) is delivered now.
        let outcome = ack(&mut r, 0, 30, 60, &[(30, 50)]);
        assert_eq!(outcome.delivered, 20);
        assert_eq!(shape(&r), [(30, 50, SACKED), (50, 60, 0)]);
    }

    #[test]
    fn sack_blocks_outside_the_flight_are_ignored() {
        let mut r = sent(4);
        // Below the cumulative ACK (a D-SACK), beyond SND.MAX, and inverted.
        let outcome = ack(&mut r, 0, 10, 40, &[(0, 10), (30, 50), (30, 20)]);
        assert_eq!(outcome.delivered, 10);
        assert_eq!(shape(&r), [(10, 40, 0)]);
    }

    #[test]
    fn holes_with_enough_sacked_above_are_lost() {
        // RFC 6675 IsLost: more than 2 * SMSS SACKed above.
        let mut r = sent(6);
        let outcome = ack(&mut r, 0, 0, 60, &[(10, 30)]);
        assert!(!outcome.entered_recovery);
        let outcome = ack(&mut r, 0, 0, 60, &[(40, 50), (10, 30)]);
        assert!(outcome.entered_recovery);
        assert_eq!(
            shape(&r),
            [(0, 10, LOST), (10, 30, SACKED), (30, 40, 0), (40, 50, SACKED), (50, 60, 0)]
        );
        assert_eq!(r.next_retransmission(MSS), Some((seq(0), 10)));
        // Pipe: 60 sent, 30 SACKed, 10 lost.
        assert_eq!(r.pipe(60, MSS), 20);
        r.on_sent(seq(0), seq(0), seq(10), at(101), None);
        assert_eq!(r.board.blocks[0].flags, LOST | RETRANS | EVER_RETRANS);
        assert_eq!(r.next_retransmission(MSS), None);
        assert_eq!(r.pipe(60, MSS), 30);
    }

    #[test]
    fn a_timeout_marks_all_but_the_sacked_lost() {
        let mut r = sent(4);
        ack(&mut r, 0, 0, 40, &[(10, 20)]);
        r.on_rto(seq(0), seq(40));
        assert_eq!(shape(&r), [(0, 10, LOST), (10, 20, SACKED), (20, 40, LOST)]);
        assert!(r.in_recovery() && !r.in_fast_recovery());
        assert_eq!(r.next_retransmission(MSS), Some((seq(0), 10)));
        r.on_sent(seq(0), seq(0), seq(10), at(200), None);
        assert_eq!(r.next_retransmission(MSS), Some((seq(20), 10)));
    }

    #[test]
    fn a_sacked_block_at_the_cumulative_ack_means_the_receiver_reneged() {
        let mut r = sent(4);
        ack(&mut r, 0, 0, 40, &[(10, 20)]);
        // The cumulative ACK reaches 10 and stops there, below the SACKed 10..20: a receiver
        // that still held 10..20 would have acknowledged it. By the RTO, it is sent again.
        r.board.trim(seq(10), |_| {});
        r.on_rto(seq(10), seq(40));
        assert_eq!(shape(&r), [(10, 40, LOST)]);
    }

    #[test]
    fn a_full_board_merges_but_never_claims_what_was_not_acknowledged() {
        let n = 4 * SCOREBOARD_BLOCKS;
        let mut r = sent(n);
        // SACK every other segment, three blocks per ACK, newest first.
        let sacked: Vec<usize> = (1..n).step_by(2).collect();
        for chunk in sacked.chunks(3) {
            let blocks: Vec<(usize, usize)> =
                chunk.iter().map(|&i| (i * MSS, (i + 1) * MSS)).collect();
            ack(&mut r, 0, 0, n * MSS, &blocks);
            assert!(r.board.len <= SCOREBOARD_BLOCKS);
        }
        for (start, block) in r.board.iter() {
            if block.has(SACKED) {
                let (from, to) = (start - seq(0), block.end - seq(0));
                for i in from / MSS..to.div_ceil(MSS) {
                    assert!(i % 2 == 1, "segment {i} was never SACKed: {:?}", r.board);
                }
            }
        }
        // The board still covers the whole flight, in order.
        assert_eq!(r.board.start, seq(0));
        assert_eq!(r.board.end(), seq(n * MSS));
    }

    /// `n` segments of `MSS` octets sent at 0 ms, RACK on.
    fn sent_with_rack(n: usize) -> Recovery {
        let mut r = Recovery::new();
        for i in 0..n {
            r.on_sent(seq(0), seq(i * MSS), seq((i + 1) * MSS), at(0), None);
        }
        r
    }

    #[test]
    fn rack_gives_older_data_a_reordering_window_then_deems_it_lost() {
        let mut r = sent_with_rack(6);
        // At 100 ms the fourth segment is SACKed: the three before it were sent no later.
        // RACK.rtt is 100 ms; the reordering window a quarter of the 40 ms minimum RTT.
        let outcome = ack_at(&mut r, 100, 0, 0, 60, &[(30, 40)]);
        assert!(!outcome.entered_recovery);
        assert_eq!(r.poll_at(), Some(at(110)));
        let outcome = r.on_reorder_timer(&path(109, 0, 60));
        assert!(!outcome.entered_recovery);
        let outcome = r.on_reorder_timer(&path(110, 0, 60));
        assert!(outcome.entered_recovery);
        assert_eq!(shape(&r), [(0, 30, LOST), (30, 40, SACKED), (40, 60, 0)]);
        assert_eq!(r.next_retransmission(100), Some((seq(0), 30)));
    }

    #[test]
    fn rack_tolerates_reordering_within_the_window() {
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(30, 40)]);
        // The first three arrive late but within the window: not lost, and reordering seen.
        ack_at(&mut r, 105, 0, 40, 60, &[]);
        assert!(!r.loss_pending() && !r.in_recovery());
        assert!(r.rack.reordering_seen);
        assert_eq!(r.poll_at(), None);
    }

    #[test]
    fn rack_deems_three_sacked_segments_enough_before_reordering_is_seen() {
        let mut r = sent_with_rack(6);
        // Three segments SACKed (DupThresh) and no reordering seen: no window.
        let outcome = ack_at(&mut r, 100, 0, 0, 60, &[(10, 40)]);
        assert!(outcome.entered_recovery);
        assert_eq!(r.next_retransmission(100), Some((seq(0), 10)));
    }

    #[test]
    fn rack_detects_a_lost_retransmission() {
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(10, 40)]);
        r.on_sent(seq(0), seq(0), seq(10), at(100), None);
        assert_eq!(r.next_retransmission(100), None);
        // New data after the retransmission, delivered; the retransmission is not.
        r.on_sent(seq(0), seq(60), seq(70), at(101), None);
        ack_at(&mut r, 200, 0, 0, 70, &[(60, 70), (10, 40)]);
        assert!(r.in_fast_recovery(), "still the same episode");
        assert_eq!(r.next_retransmission(100), Some((seq(0), 10)));
    }

    #[test]
    fn an_early_ack_alone_does_not_prove_a_retransmission_spurious() {
        let mut r = sent_with_rack(6);
        let outcome = ack_at(&mut r, 100, 0, 0, 60, &[(10, 40)]);
        assert!(outcome.entered_recovery);
        r.on_sent(seq(0), seq(0), seq(10), at(100), None);
        // Acknowledged 5 ms after its retransmission, sooner than the 40 ms minimum RTT: the
        // original may have arrived late, or the retransmission took a quicker path. Without
        // a D-SACK the reduction stands.
        let outcome = ack_at(&mut r, 105, 0, 60, 60, &[]);
        assert!(outcome.exited_recovery && !outcome.undo);
    }

    #[test]
    fn a_dsack_makes_retransmissions_spurious_and_widens_the_window() {
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(10, 40)]);
        r.on_sent(seq(0), seq(0), seq(10), at(100), None);
        // The retransmission's ACK a round trip later, with a D-SACK for it: both copies
        // arrived.
        let outcome = ack_at(&mut r, 150, 0, 60, 60, &[(0, 10)]);
        assert!(outcome.exited_recovery && outcome.undo);
        assert_eq!(r.rack.reo_wnd_mult, 2);
        // Lost for real: no undo.
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(10, 40)]);
        r.on_sent(seq(0), seq(0), seq(10), at(100), None);
        let outcome = ack_at(&mut r, 150, 0, 60, 60, &[]);
        assert!(outcome.exited_recovery && !outcome.undo);
    }

    #[test]
    fn the_tail_loss_probe_is_armed_at_two_round_trips() {
        let mut r = sent_with_rack(6);
        r.arm_probe(&path(0, 0, 60), 60, Some(at(1000)));
        // 2 * SRTT (50 ms) + 2 ms.
        assert_eq!(r.poll_at(), Some(at(102)));
        // One segment in flight: its ACK may be delayed, 40 ms more (see TLP_DELAYED_ACK).
        r.arm_probe(&path(0, 0, 60), MSS, Some(at(1000)));
        assert_eq!(r.poll_at(), Some(at(142)));
        // Never after the retransmission timeout.
        r.arm_probe(&path(0, 0, 60), 60, Some(at(80)));
        assert_eq!(r.poll_at(), Some(at(80)));
        assert!(!r.probe_due(at(79)) && r.probe_due(at(80)));
        // Not without SACK.
        let mut no_sack = path(0, 0, 60);
        no_sack.sack_permitted = false;
        r.arm_probe(&no_sack, 60, None);
        assert_eq!(r.poll_at(), None);
    }

    #[test]
    fn a_probe_that_repaired_a_loss_reduces_the_window_once() {
        let mut r = sent_with_rack(6);
        r.on_probe_sent(seq(60));
        // Everything up to the probe is acknowledged, then data sent after it: the probe's
        // copy was the one that arrived.
        r.on_sent(seq(0), seq(60), seq(70), at(200), None);
        let outcome = ack_at(&mut r, 210, 0, 60, 70, &[]);
        assert!(!outcome.probe_repaired_loss);
        let outcome = ack_at(&mut r, 250, 60, 70, 70, &[]);
        assert!(outcome.probe_repaired_loss);
        // A D-SACK first says both copies arrived: no reduction.
        let mut r = sent_with_rack(6);
        r.on_probe_sent(seq(60));
        r.on_sent(seq(0), seq(60), seq(70), at(200), None);
        ack_at(&mut r, 210, 0, 60, 70, &[(50, 60)]);
        let outcome = ack_at(&mut r, 250, 60, 70, 70, &[]);
        assert!(!outcome.probe_repaired_loss);
    }

    #[test]
    fn a_lost_retransmission_with_nothing_after_it_goes_again_after_a_probe_timeout() {
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(10, 60)]);
        assert!(r.in_fast_recovery());
        // Only the retransmission is in flight; nothing can follow it. Two SRTTs (50 ms) and
        // 2 ms later it is deemed lost.
        r.on_sent(seq(0), seq(0), seq(10), at(100), Some(Duration::from_millis(50)));
        assert_eq!(r.next_retransmission(100), None);
        assert_eq!(r.poll_at(), Some(at(202)));
        r.on_reorder_timer(&path(201, 0, 60));
        assert_eq!(r.next_retransmission(100), None);
        r.on_reorder_timer(&path(202, 0, 60));
        assert_eq!(r.next_retransmission(100), Some((seq(0), 10)));
        // New data sent after a retransmission hands the job back to RACK.
        let mut r = sent_with_rack(6);
        ack_at(&mut r, 100, 0, 0, 60, &[(10, 60)]);
        r.on_sent(seq(0), seq(0), seq(10), at(100), Some(Duration::from_millis(50)));
        r.on_sent(seq(0), seq(60), seq(70), at(101), Some(Duration::from_millis(50)));
        assert_eq!(r.retransmission_probe_deadline(Some(Duration::from_millis(50))), None);
    }
}
