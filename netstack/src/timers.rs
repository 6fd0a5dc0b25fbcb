//! Deadlines of cells: a hierarchical timer wheel with one intrusive node per cell.
//!
//! Each cell has at most one armed deadline, so the wheel keeps one fixed node per cell index
//! (allocated up front for `max_connections`) and links it into a doubly linked list per slot.
//! Arming, re-arming and cancelling are O(1) and never allocate; nothing ever scans all cells.
//!
//! Time is kept in whole milliseconds and deadlines are rounded *up* to the next millisecond,
//! so a cell fires at most 1 ms late and never early. Six levels of 64 slots each cover
//! `64^6` ms (over two years); level `l` slots are `64^l` ms wide. An entry lives at the level
//! of the highest bit in which its deadline differs from `elapsed` (the time up to which the
//! wheel has been expired), as in the Linux and tokio wheels: when `elapsed` reaches the start
//! of a higher-level slot, its entries cascade to lower levels. Every entry cascades at most
//! five times in its life, so the cost per deadline is O(1) amortised; finding the next
//! deadline is a `trailing_zeros` on one occupancy word per level.
//!
//! Invariants:
//! - a node is in at most one slot list, and `occupied` has the bit of every non-empty slot;
//! - no occupied slot starts at or before `elapsed` except level-0 slots whose entries are due;
//! - an entry at level `l` has a deadline in the same `64^(l+1)` ms window as `elapsed` but a
//!   different `64^l` ms block, so the lowest occupied level holds the earliest deadline.

use smoltcp::time::Instant;

/// Bits of slot index per level.
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
/// Deadlines further than this from `elapsed` are clamped to it (about 2.2 years).
const MAX_SPAN_MS: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;
const NIL: u32 = u32::MAX;
/// `Node::slot` of a node in no list.
const UNLINKED: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    /// Deadline in ms (already rounded up).
    at: u64,
    /// `level * SLOTS + slot`, or `UNLINKED`.
    slot: u16,
}

const EMPTY_NODE: Node = Node {
    prev: NIL,
    next: NIL,
    at: 0,
    slot: UNLINKED,
};

/// A hierarchical timer wheel of cell deadlines. See the module documentation.
pub(crate) struct TimerWheel {
    nodes: Vec<Node>,
    heads: [u32; SLOTS * LEVELS],
    occupied: [u64; LEVELS],
    /// Every deadline before this (ms) has been popped.
    elapsed: u64,
    len: usize,
}

/// Whole milliseconds of `at`, rounded up (a deadline never fires early). Negative: 0.
fn ceil_ms(at: Instant) -> u64 {
    u64::try_from(at.total_micros()).map_or(0, |us| us.div_ceil(1000))
}

fn level_for(elapsed: u64, at: u64) -> usize {
    let masked = (elapsed ^ at) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(at: u64, level: usize) -> usize {
    ((at >> (SLOT_BITS as usize * level)) as usize) & (SLOTS - 1)
}

impl TimerWheel {
    /// A wheel for cells `0..cells`, all unarmed, with its clock at `now`.
    pub fn new(cells: usize, now: Instant) -> Self {
        TimerWheel {
            nodes: vec![EMPTY_NODE; cells],
            heads: [NIL; SLOTS * LEVELS],
            occupied: [0; LEVELS],
            elapsed: ceil_ms(now),
            len: 0,
        }
    }

    /// Sets (or moves) the deadline of `cell`. Out-of-range cells are ignored.
    pub fn arm(&mut self, cell: u32, at: Instant) {
        self.cancel(cell);
        let Some(node) = self.nodes.get_mut(cell as usize) else {
            return;
        };
        node.at = ceil_ms(at).clamp(self.elapsed, self.elapsed + MAX_SPAN_MS);
        self.link(cell);
    }

    /// Removes the deadline of `cell`, if armed.
    pub fn cancel(&mut self, cell: u32) {
        let Some(node) = self.nodes.get(cell as usize).copied() else {
            return;
        };
        if node.slot == UNLINKED {
            return;
        }
        let slot = usize::from(node.slot);
        match self.nodes.get_mut(node.prev as usize) {
            Some(prev) => prev.next = node.next,
            None => {
                if let Some(head) = self.heads.get_mut(slot) {
                    *head = node.next;
                }
            }
        }
        if let Some(next) = self.nodes.get_mut(node.next as usize) {
            next.prev = node.prev;
        }
        if self.heads.get(slot) == Some(&NIL)
            && let Some(word) = self.occupied.get_mut(slot / SLOTS)
        {
            *word &= !(1 << (slot % SLOTS));
        }
        if let Some(n) = self.nodes.get_mut(cell as usize) {
            n.prev = NIL;
            n.next = NIL;
            n.slot = UNLINKED;
        }
        self.len -= 1;
    }

    /// Links an unlinked node into the slot its deadline belongs to, relative to `elapsed`.
    fn link(&mut self, cell: u32) {
        let Some(node) = self.nodes.get(cell as usize) else {
            return;
        };
        let at = node.at.max(self.elapsed);
        let level = level_for(self.elapsed, at);
        let slot = level * SLOTS + slot_for(at, level);
        let Some(head) = self.heads.get_mut(slot) else {
            return;
        };
        let old_head = std::mem::replace(head, cell);
        if let Some(old) = self.nodes.get_mut(old_head as usize) {
            old.prev = cell;
        }
        if let Some(node) = self.nodes.get_mut(cell as usize) {
            node.prev = NIL;
            node.next = old_head;
            node.slot = slot as u16;
        }
        if let Some(word) = self.occupied.get_mut(level) {
            *word |= 1 << (slot % SLOTS);
        }
        self.len += 1;
    }

    /// The earliest occupied slot: `(level, slot, start ms)`.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for (level, &word) in self.occupied.iter().enumerate() {
            if word == 0 {
                continue;
            }
            let shift = SLOT_BITS as usize * level;
            let now_slot = slot_for(self.elapsed, level);
            let offset = word.rotate_right(now_slot as u32).trailing_zeros() as usize;
            let slot = (now_slot + offset) % SLOTS;
            let level_range = 1u64 << (shift + SLOT_BITS as usize);
            let level_start = self.elapsed & !(level_range - 1);
            let mut start = level_start + ((slot as u64) << shift);
            if slot < now_slot {
                // Unreachable while the invariants hold; a wrapped slot is a future window.
                start += level_range;
            }
            return Some((level, slot, start));
        }
        None
    }

    /// Removes and returns one cell whose deadline is at or before `now`, cascading
    /// higher-level slots as their time comes. `None` when nothing is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        let now_ms = u64::try_from(now.total_micros()).map_or(0, |us| us / 1000);
        loop {
            let Some((level, slot, start)) = self.next_expiration() else {
                self.elapsed = self.elapsed.max(now_ms);
                return None;
            };
            if start > now_ms {
                self.elapsed = self.elapsed.max(now_ms);
                return None;
            }
            self.elapsed = self.elapsed.max(start);
            let index = level * SLOTS + slot;
            let head = self.heads.get(index).copied().unwrap_or(NIL);
            if level == 0 {
                self.cancel(head);
                return Some(head);
            }
            // Cascade: every entry of this slot moves to a lower level.
            let mut cell = head;
            if let Some(h) = self.heads.get_mut(index) {
                *h = NIL;
            }
            if let Some(word) = self.occupied.get_mut(level) {
                *word &= !(1 << slot);
            }
            while let Some(node) = self.nodes.get_mut(cell as usize) {
                let next = node.next;
                node.prev = NIL;
                node.next = NIL;
                node.slot = UNLINKED;
                self.len -= 1;
                self.link(cell);
                cell = next;
            }
        }
    }

    /// When the next deadline may be due: exact for the nearest 64 ms, otherwise the start of
    /// the slot holding it (an early, harmless wake-up that cascades it).
    pub fn next(&self) -> Option<Instant> {
        self.next_expiration().map(|(_, _, start)| {
            Instant::from_millis(i64::try_from(start.max(self.elapsed)).unwrap_or(i64::MAX))
        })
    }

    /// Armed cells.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    fn drain(wheel: &mut TimerWheel, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| wheel.pop_due(now)).collect()
    }

    #[test]
    fn pops_only_when_due_and_in_deadline_order_across_calls() {
        let mut w = TimerWheel::new(8, ms(0));
        w.arm(3, ms(30));
        w.arm(1, ms(10));
        w.arm(2, ms(20));
        assert_eq!(w.next(), Some(ms(10)));
        assert_eq!(w.pop_due(ms(5)), None);
        assert_eq!(drain(&mut w, ms(20)), vec![1, 2]);
        assert_eq!(w.len(), 1);
        w.cancel(3);
        assert_eq!(w.len(), 0);
        assert_eq!(w.next(), None);
        assert_eq!(drain(&mut w, ms(1_000)), Vec::<u32>::new());
    }

    #[test]
    fn sub_millisecond_deadlines_round_up_never_early() {
        let mut w = TimerWheel::new(1, ms(0));
        w.arm(0, Instant::from_micros(10_001));
        assert_eq!(w.next(), Some(ms(11)));
        assert_eq!(w.pop_due(Instant::from_micros(10_999)), None);
        assert_eq!(w.pop_due(ms(11)), Some(0));
    }

    #[test]
    fn far_deadlines_cascade_and_fire_on_time() {
        let mut w = TimerWheel::new(4, ms(7));
        w.arm(0, ms(60_000)); // an idle timeout
        w.arm(1, ms(3 * 3600 * 1000)); // three hours
        w.arm(2, ms(50));
        assert_eq!(w.next(), Some(ms(50)), "exact within the current 64 ms");
        assert_eq!(drain(&mut w, ms(59_999)), vec![2]);
        // The next wake-up may be early (a slot start) but never late.
        let next = w.next().unwrap();
        assert!(next <= ms(60_000), "{next}");
        assert_eq!(drain(&mut w, ms(60_000)), vec![0]);
        assert_eq!(drain(&mut w, ms(3 * 3600 * 1000 - 1)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, ms(3 * 3600 * 1000)), vec![1]);
    }

    #[test]
    fn re_arming_moves_the_single_entry() {
        let mut w = TimerWheel::new(2, ms(0));
        w.arm(0, ms(500));
        w.arm(0, ms(5));
        w.arm(0, ms(9_000));
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, ms(8_999)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, ms(9_000)), vec![0]);
        // A deadline in the past is due at once.
        w.arm(1, ms(1));
        assert_eq!(drain(&mut w, ms(9_000)), vec![1]);
    }

    /// Random arms, re-arms, cancels and clock steps against a plain reference model: every
    /// deadline fires exactly once, never before it is due and at most 1 ms after.
    #[test]
    fn matches_a_reference_model() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const CELLS: usize = 300;
        let mut w = TimerWheel::new(CELLS, ms(0));
        let mut model: Vec<Option<u64>> = vec![None; CELLS];
        let mut now_us: u64 = 0;
        for _ in 0..20_000 {
            let cell = (next() % CELLS as u64) as u32;
            match next() % 10 {
                0 => {
                    w.cancel(cell);
                    model[cell as usize] = None;
                }
                1..=6 => {
                    let span = [2_000, 70_000, 5_000_000, 400_000_000][(next() % 4) as usize];
                    let at = now_us + next() % span;
                    w.arm(cell, Instant::from_micros(at as i64));
                    model[cell as usize] = Some(at.div_ceil(1000) * 1000);
                }
                _ => {
                    let step = [100, 3_000, 900_000, 80_000_000][(next() % 4) as usize];
                    now_us += next() % step;
                    let now = Instant::from_micros(now_us as i64);
                    let mut fired = drain(&mut w, now);
                    fired.sort_unstable();
                    let mut due: Vec<u32> = (0..CELLS as u32)
                        .filter(|&c| model[c as usize].is_some_and(|at| at <= now_us))
                        .collect();
                    due.sort_unstable();
                    assert_eq!(fired, due, "at {now_us} us");
                    for c in due {
                        model[c as usize] = None;
                    }
                    let earliest = model.iter().flatten().min().copied();
                    match (w.next(), earliest) {
                        (None, None) => {}
                        (Some(next), Some(at)) => {
                            assert!(next.total_micros() as u64 <= at, "wake-up after a deadline");
                            assert!(next.total_micros() as u64 >= now_us / 1000 * 1000);
                        }
                        other => panic!("next {other:?}"),
                    }
                }
            }
            assert_eq!(w.len(), model.iter().flatten().count());
        }
    }
}
