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

use crate::time::Instant;
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
pub(super) struct Scoreboard {
    /// Where the first block starts.
    start: TcpSeqNumber,
    blocks: [Block; SCOREBOARD_BLOCKS],
    len: usize,
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

/// Why a recovery episode began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum EpisodeKind {
    /// Loss detected from ACKs (fast recovery, RFC 6675 / RFC 6582).
    Fast,
    /// The retransmission timer expired (RFC 5681 §3.1, RFC 6298 (5.4)).
    Timeout,
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
    /// A retransmission was sent in this episode.
    retransmitted: bool,
}

/// What an ACK changed, for the socket's congestion controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct AckOutcome {
    /// A loss was detected outside any episode: a fast-recovery episode began, and the
    /// congestion window must be reduced (once for the whole episode).
    pub entered_recovery: bool,
    /// The ACK ended the episode in progress.
    pub exited_recovery: bool,
}

/// What the socket tells [`Recovery::on_ack`] about an acceptable ACK.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack<'a> {
    pub now: Instant,
    /// SND.UNA before this ACK.
    pub una: TcpSeqNumber,
    /// The cumulative acknowledgment number.
    pub ack: TcpSeqNumber,
    /// SND.MAX: one past the highest octet (or FIN) sent.
    pub snd_max: TcpSeqNumber,
    /// SACK blocks as received, or all `None` if SACK is not in use.
    pub sack: &'a [Option<(u32, u32)>; 3],
    /// RFC 5681's definition of a duplicate ACK held.
    pub duplicate: bool,
    /// Consecutive duplicate ACKs, this one included.
    pub dupacks: usize,
    /// SACK was negotiated on the connection.
    pub sack_permitted: bool,
    /// The sender's maximum segment size.
    pub mss: usize,
}

/// Loss-recovery state of one connection. See the module documentation.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Recovery {
    board: Scoreboard,
    episode: Option<Episode>,
    /// RFC 6582 `recover`: the RecoveryPoint of the last episode. A new fast recovery starts
    /// only once the cumulative ACK is past it, so the duplicate ACKs that retransmissions
    /// cause do not start a second one.
    recover: Option<TcpSeqNumber>,
}

impl Recovery {
    pub fn new() -> Self {
        Recovery {
            board: Scoreboard::new(),
            episode: None,
            recover: None,
        }
    }

    /// An episode is in progress and nothing was retransmitted in it yet: the first
    /// retransmission goes out whatever the congestion window (RFC 5681 §3.2 step 4, RFC 6675
    /// §5 step 4.3).
    pub fn first_retransmission_due(&self) -> bool {
        self.episode.is_some_and(|episode| !episode.retransmitted)
    }

    /// A fast-recovery episode is in progress: the congestion window does not grow.
    pub fn in_fast_recovery(&self) -> bool {
        matches!(self.episode, Some(Episode { kind: EpisodeKind::Fast, .. }))
    }

    /// Any episode, fast recovery or after a timeout, is in progress.
    pub fn in_recovery(&self) -> bool {
        self.episode.is_some()
    }

    /// Records the transmission of `[start, end)` at `now`: new data if `start` is SND.MAX, a
    /// retransmission otherwise.
    pub fn on_sent(&mut self, una: TcpSeqNumber, start: TcpSeqNumber, end: TcpSeqNumber, now: Instant) {
        if end <= start {
            return;
        }
        self.board.cover(una, start.max(una));
        let board_end = self.board.end();
        if start < board_end {
            let mut repaired = false;
            self.board.mark(start, end.min(board_end), |_, block| {
                block.xmit = now;
                block.flags |= EVER_RETRANS;
                if block.has(LOST) {
                    block.flags |= RETRANS;
                    repaired = true;
                }
            });
            if repaired && let Some(episode) = &mut self.episode {
                episode.retransmitted = true;
            }
        }
        self.board.append(end, now);
    }

    /// Processes an acceptable ACK: updates the board from the cumulative ACK and the SACK
    /// blocks, detects losses (RFC 6675 for SACK, RFC 6582 NewReno without), and begins or
    /// ends episodes.
    pub fn on_ack(&mut self, ack: &Ack<'_>, mut delivered: impl FnMut(Delivered)) -> AckOutcome {
        let mut outcome = AckOutcome::default();
        let advanced = ack.ack > ack.una;

        self.board.cover(ack.una, ack.snd_max);
        self.board.trim(ack.ack, &mut delivered);
        for &(left, right) in ack.sack.iter().flatten() {
            let (left, right) = (TcpSeqNumber(left as i32), TcpSeqNumber(right as i32));
            // RFC 2883: a block at or below the cumulative ACK reports a duplicate (D-SACK),
            // not new data; ignore blocks outside what is in flight.
            if left >= right || left < ack.ack || right > ack.snd_max {
                continue;
            }
            self.board.mark(left, right, |start, block| {
                if !block.has(SACKED) {
                    delivered(Delivered {
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

        if let Some(episode) = &mut self.episode {
            if ack.ack >= episode.point {
                // RFC 6675 §5 (RFC 6582 step 3): the recovery point is acknowledged.
                self.recover = Some(episode.point);
                self.episode = None;
                outcome.exited_recovery = true;
            } else if advanced {
                episode.dupacks = 0;
                // RFC 6582 step 4 (partial ACK, no SACK): the next hole starts at the new
                // cumulative ACK; retransmit it now rather than after a timeout.
                if !ack.sack_permitted && episode.kind == EpisodeKind::Fast {
                    self.mark_lost(ack.ack, ack.ack + ack.mss);
                }
            } else if ack.duplicate && !ack.sack_permitted {
                episode.dupacks += 1;
            }
        }

        if self.board.iter().any(|(_, block)| block.has(SACKED)) {
            self.mark_lost_by_sacks(ack.mss);
        }

        let may_begin = self.episode.is_none() && self.recover.is_none_or(|point| ack.ack > point);
        if may_begin {
            let loss = self.board.iter().any(|(_, block)| block.awaits_retransmission());
            if loss || ack.dupacks >= DUP_THRESH {
                // RFC 6675 §5 / RFC 5681 §3.2: the first unacknowledged segment is lost.
                if !loss {
                    self.mark_lost(ack.ack, ack.ack + ack.mss);
                }
                self.episode = Some(Episode {
                    kind: EpisodeKind::Fast,
                    point: ack.snd_max,
                    dupacks: 0,
                    retransmitted: false,
                });
                outcome.entered_recovery = true;
            }
        }
        outcome
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
            retransmitted: false,
        });
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
        flight.saturating_sub(out).saturating_sub(inflation)
    }

    /// Forgets everything (the connection is over).
    pub fn reset(&mut self) {
        *self = Recovery::new();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const MSS: usize = 10;

    fn seq(n: usize) -> TcpSeqNumber {
        TcpSeqNumber(1000) + n
    }

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    /// `n` segments of `MSS` octets, segment `i` sent at `i` ms.
    fn sent(n: usize) -> Recovery {
        let mut r = Recovery::new();
        for i in 0..n {
            r.on_sent(seq(0), seq(i * MSS), seq((i + 1) * MSS), at(i as i64));
        }
        r
    }

    fn ack(r: &mut Recovery, una: usize, ack: usize, snd_max: usize, sack: &[(usize, usize)]) -> (AckOutcome, Vec<Delivered>) {
        let mut blocks = [None; 3];
        for (slot, &(l, h)) in blocks.iter_mut().zip(sack) {
            *slot = Some((seq(l).0 as u32, seq(h).0 as u32));
        }
        let mut delivered = Vec::new();
        let outcome = r.on_ack(
            &Ack {
                now: at(100),
                una: seq(una),
                ack: seq(ack),
                snd_max: seq(snd_max),
                sack: &blocks,
                duplicate: ack == una,
                dupacks: 0,
                sack_permitted: true,
                mss: MSS,
            },
            |d| delivered.push(d),
        );
        (outcome, delivered)
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
        r.on_sent(seq(0), seq(0), seq(10), at(5));
        r.on_sent(seq(0), seq(10), seq(20), at(5));
        assert_eq!(shape(&r), [(0, 20, 0)]);
        // Sent later: the top block grows and takes the later time.
        r.on_sent(seq(0), seq(20), seq(30), at(6));
        assert_eq!(shape(&r), [(0, 30, 0)]);
        assert_eq!(r.board.blocks[0].xmit, at(6));
        assert_eq!(r.pipe(30, MSS), 30);
    }

    #[test]
    fn sack_blocks_split_the_board_and_leave_the_pipe() {
        let mut r = sent(6);
        let (outcome, delivered) = ack(&mut r, 0, 0, 60, &[(20, 40)]);
        assert_eq!(outcome, AckOutcome::default());
        assert_eq!(shape(&r), [(0, 20, 0), (20, 40, SACKED), (40, 60, 0)]);
        assert_eq!(delivered.len(), 1);
        assert_eq!((delivered[0].end, delivered[0].len), (seq(40), 20));
        assert_eq!(r.pipe(60, MSS), 40);
        // The same block again delivers nothing new; an overlapping one only its new part.
        let (_, delivered) = ack(&mut r, 0, 0, 60, &[(30, 50), (20, 40)]);
        assert_eq!(delivered.iter().map(|d| d.len).sum::<usize>(), 10);
        // 30 octets SACKed above [0, 20) now: more than 2 * SMSS, so it is lost.
        assert_eq!(shape(&r), [(0, 20, LOST), (20, 50, SACKED), (50, 60, 0)]);
        // The cumulative ACK passes everything below 30: [0, 20) is delivered now.
        let (_, delivered) = ack(&mut r, 0, 30, 60, &[(30, 50)]);
        assert_eq!(delivered.iter().map(|d| d.len).sum::<usize>(), 20);
        assert_eq!(shape(&r), [(30, 50, SACKED), (50, 60, 0)]);
    }

    #[test]
    fn sack_blocks_outside_the_flight_are_ignored() {
        let mut r = sent(4);
        // Below the cumulative ACK (a D-SACK), beyond SND.MAX, and inverted.
        ack(&mut r, 0, 10, 40, &[(0, 10), (30, 50), (30, 20)]);
        assert_eq!(shape(&r), [(10, 40, 0)]);
    }

    #[test]
    fn holes_with_enough_sacked_above_are_lost() {
        // RFC 6675 IsLost: more than 2 * SMSS SACKed above.
        let mut r = sent(6);
        let (outcome, _) = ack(&mut r, 0, 0, 60, &[(10, 30)]);
        assert!(!outcome.entered_recovery);
        let (outcome, _) = ack(&mut r, 0, 0, 60, &[(40, 50), (10, 30)]);
        assert!(outcome.entered_recovery);
        assert_eq!(
            shape(&r),
            [(0, 10, LOST), (10, 30, SACKED), (30, 40, 0), (40, 50, SACKED), (50, 60, 0)]
        );
        assert_eq!(r.next_retransmission(MSS), Some((seq(0), 10)));
        // Pipe: 60 sent, 30 SACKed, 10 lost.
        assert_eq!(r.pipe(60, MSS), 20);
        r.on_sent(seq(0), seq(0), seq(10), at(101));
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
        r.on_sent(seq(0), seq(0), seq(10), at(200));
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
}
