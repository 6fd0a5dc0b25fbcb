//! Precomputed Internet checksums of the content arena (the Sandstorm idea): the RFC 1071 sum of
//! any arena range in O(1), so a TCP segment whose payload is sent straight from the arena needs
//! no pass over its bytes to be checksummed.
//!
//! Layout, built once over the final arena ([`ArenaSums::new`], which allocates):
//! - `prefix[k]`: the sum of the big-endian 16-bit words of blocks `0..k` (64-byte blocks, so
//!   every block starts at an even offset), reduced modulo `0xFFFF`: 2 bytes per block;
//! - `nonzero`: one bit per block, set when the block holds a nonzero byte, and `rank[w]`, the
//!   number of set bits in the bitmap's words `0..w`: 1 bit per block plus 4 bytes per 64
//!   blocks.
//!
//! That is 35 KiB per MiB of arena (32 KiB of prefixes, 2 KiB of bitmap, 1 KiB of ranks),
//! about 3.4 %: 35 MiB for a 1 GiB tree.
//!
//! [`ArenaSums::range_sum`] never allocates. It reads the bytes of the partial blocks at the two
//! ends (fewer than 64 at each, or fewer than 128 in all when no whole block lies inside),
//! two prefixes, and, only when the sum comes out as zero, at most two bitmap words and two
//! ranks.
//!
//! Why it is right:
//! - The ones-complement sum of 16-bit words is their integer sum modulo `0xFFFF` (the
//!   end-around carry adds each `0x10000` back as 1, and `0x10000 ≡ 1`), so sums of pieces
//!   add, and the sum of blocks `a..b` is `prefix[b] - prefix[a]` modulo `0xFFFF`: subtracting
//!   is adding the complement, exact modulo `0xFFFF`.
//! - Modulo `0xFFFF` does not tell `0x0000` from `0xFFFF`. smoltcp's `checksum::data`
//!   (integer sum, then two end-around folds) gives `0x0000` exactly when every word is zero,
//!   and otherwise the representative in `1..=0xFFFF` (a fold of a nonzero sum is never zero).
//!   So a residue of 0 becomes `0x0000` if the range is all zero bytes (the end bytes say so
//!   directly, the whole blocks by the bitmap and its ranks) and `0xFFFF` otherwise.
//! - The pieces are summed with the byte at an even arena offset as a word's high byte. A
//!   range starting at an odd offset is to be summed as if that offset were even, which swaps
//!   the role of every byte; by RFC 1071 §2(B) that sum is the byte-swapped one (swapping is
//!   multiplying by 256 modulo `0xFFFF`, and 256 × 256 ≡ 1; it maps 0 and `0xFFFF` to
//!   themselves). An odd last byte is a high byte padded with a zero low byte in both views.
//! - The tests compare every start and length over a few KiB, and long ranges, with
//!   `checksum::data`. (For ranges past about 128 KiB of `0xFF` bytes `checksum::data`'s
//!   32-bit accumulator would wrap; this sum stays right, and segments are far shorter.)

/// Bytes per block; even, so every block starts at an even arena offset.
const BLOCK: usize = 64;

/// The ones-complement modulus.
const M: u32 = 0xFFFF;

/// The partial sums of one arena. See the module documentation.
#[derive(Debug, Default)]
pub struct ArenaSums {
    /// Bytes covered: the arena's length at build time.
    len: usize,
    /// `prefix[k]`: the word sum of blocks `0..k`, modulo `0xFFFF`. `len / BLOCK + 1` entries.
    prefix: Box<[u16]>,
    /// Bit `k % 64` of word `k / 64`: block `k` has a nonzero byte.
    nonzero: Box<[u64]>,
    /// `rank[w]`: set bits in `nonzero[..w]`. `nonzero.len() + 1` entries.
    rank: Box<[u32]>,
}

impl ArenaSums {
    /// The sums of `arena` (at most 4 GiB, as the cache's arena is).
    pub fn new(arena: &[u8]) -> ArenaSums {
        let blocks = arena.len() / BLOCK;
        let mut prefix = Vec::with_capacity(blocks + 1);
        let mut nonzero = vec![0u64; blocks.div_ceil(64)];
        let mut running = 0u32;
        prefix.push(0u16);
        for (k, block) in arena.chunks_exact(BLOCK).enumerate() {
            let sum = word_sum(block);
            if sum != 0 {
                nonzero[k / 64] |= 1 << (k % 64);
            }
            running = (running + sum) % M;
            prefix.push(running as u16);
        }
        let mut rank = Vec::with_capacity(nonzero.len() + 1);
        let mut count = 0u32;
        rank.push(0);
        for word in &nonzero {
            count += word.count_ones();
            rank.push(count);
        }
        ArenaSums {
            len: arena.len(),
            prefix: prefix.into(),
            nonzero: nonzero.into(),
            rank: rank.into(),
        }
    }

    /// Heap bytes held.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.prefix.len() * 2 + self.nonzero.len() * 8 + self.rank.len() * 4
    }

    /// The ones-complement sum (end-around carry, not complemented) of `bytes[start..start +
    /// len]`, taken as if `start` were even: what smoltcp's `checksum::data` returns for those
    /// bytes, `0x0000` exactly when they are all zero. `bytes` must be the arena these sums were
    /// built over; a range reaching past it (or past that arena's length) is cut there.
    pub fn range_sum(&self, bytes: &[u8], start: usize, len: usize) -> u16 {
        debug_assert_eq!(bytes.len(), self.len, "sums of another arena");
        let end = start.saturating_add(len).min(bytes.len()).min(self.len);
        let start = start.min(end);
        let first_block = start.div_ceil(BLOCK);
        let last_block = end / BLOCK;
        // Exact sums of the end bytes (fewer than 128 of them: no overflow), and the whole
        // blocks `first_block..last_block` as a residue.
        let (edges, blocks) = if first_block < last_block {
            let head = edge_sum(&bytes[start..first_block * BLOCK], start);
            let tail = edge_sum(&bytes[last_block * BLOCK..end], 0);
            let blocks =
                (u32::from(self.prefix[last_block]) + M - u32::from(self.prefix[first_block])) % M;
            (head + tail, blocks)
        } else {
            (edge_sum(&bytes[start..end], start), 0)
        };
        let residue = ((edges + blocks) % M) as u16;
        let sum = match residue {
            0 if edges == 0 && !self.any_nonzero(first_block, last_block) => 0,
            0 => 0xFFFF,
            r => r,
        };
        if start % 2 == 1 {
            sum.swap_bytes()
        } else {
            sum
        }
    }

    /// Whether any of blocks `a..b` has a nonzero byte (false when the range is empty).
    fn any_nonzero(&self, a: usize, b: usize) -> bool {
        if a >= b {
            return false;
        }
        let (wa, wb) = (a / 64, b / 64);
        let from_a = !0u64 << (a % 64);
        let below_b = (1u64 << (b % 64)) - 1;
        if wa == wb {
            return self.nonzero[wa] & from_a & below_b != 0;
        }
        self.nonzero[wa] & from_a != 0
            || self.rank[wb] != self.rank[wa + 1]
            || (below_b != 0 && self.nonzero[wb] & below_b != 0)
    }
}

/// The exact word sum of `bytes` (at most a few hundred of them), which start at arena offset
/// `offset`: a byte at an even offset is a high byte.
fn edge_sum(bytes: &[u8], offset: usize) -> u32 {
    match bytes.split_first() {
        Some((&low, rest)) if offset % 2 == 1 => u32::from(low) + word_sum(rest),
        _ => word_sum(bytes),
    }
}

/// The exact sum of the big-endian words of `bytes`, an odd last byte padded with a zero low
/// byte. Exact for up to 128 KiB.
fn word_sum(bytes: &[u8]) -> u32 {
    let (pairs, rest) = bytes.as_chunks::<2>();
    let mut sum: u32 = pairs
        .iter()
        .map(|&p| u32::from(u16::from_be_bytes(p)))
        .sum();
    if let Some(&high) = rest.first() {
        sum += u32::from(high) << 8;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::checksum;

    /// xorshift64*: reproducible bytes without a dependency.
    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Checks every start and length over `bytes` against `checksum::data`.
    fn check_all_ranges(bytes: &[u8]) {
        let sums = ArenaSums::new(bytes);
        for start in 0..=bytes.len() {
            for len in 0..=bytes.len() - start {
                let want = checksum::data(&bytes[start..start + len]);
                let got = sums.range_sum(bytes, start, len);
                assert_eq!(
                    got,
                    want,
                    "start {start} len {len} of {} bytes: {got:#06x} != {want:#06x}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn every_range_of_random_data_matches_smoltcp() {
        check_all_ranges(&random_bytes(7, 3 * 1024 + 37));
    }

    #[test]
    fn every_range_of_zeros_and_of_ones_matches_smoltcp() {
        check_all_ranges(&[0u8; 1500]);
        check_all_ranges(&[0xFFu8; 1500]);
    }

    /// Mostly zero bytes with rare `0xFF` runs: sums that are 0 modulo `0xFFFF` but not zero
    /// next to truly zero ranges, so the zero test must look at the right blocks.
    fn sparse(len: usize, seed: u64) -> Vec<u8> {
        let noise = random_bytes(seed, len);
        let mut bytes = vec![0u8; len];
        for (i, b) in bytes.iter_mut().enumerate() {
            if noise[i] == 0 {
                *b = 0xFF;
            }
        }
        bytes
    }

    #[test]
    fn every_range_of_sparse_data_matches_smoltcp() {
        check_all_ranges(&sparse(2 * 1024 + 11, 3));
    }

    #[test]
    fn long_ranges_across_many_blocks_match_smoltcp() {
        // 300 KiB: ranges over thousands of blocks and several bitmap words.
        let mut arenas = vec![random_bytes(11, 300 << 10), vec![0xFF; 300 << 10]];
        // Zero with one nonzero word far inside, and zero with `0xFFFF` words in a long run of
        // zero blocks (bitmap words with and without set bits between the ends).
        let mut lone = vec![0u8; 300 << 10];
        lone[150_001] = 1;
        arenas.push(lone);
        let mut ones = vec![0u8; 300 << 10];
        ones[40_000..40_002].fill(0xFF);
        ones[200_000..200_006].fill(0xFF);
        arenas.push(ones);
        arenas.push(sparse(300 << 10, 5));
        for (n, bytes) in arenas.iter().enumerate() {
            let sums = ArenaSums::new(bytes);
            // smoltcp over up to 64 KiB at once, combined for longer ranges (each piece an
            // even number of bytes, so the alignment holds).
            let reference = |start: usize, len: usize| {
                let pieces: Vec<u16> = bytes[start..start + len]
                    .chunks(64 << 10)
                    .map(checksum::data)
                    .collect();
                checksum::combine(&pieces)
            };
            let mut seed = random_bytes(n as u64 + 100, 8 * 400);
            let mut next = || {
                let (word, rest) = seed.split_at(8);
                let value = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                seed = rest.to_vec();
                value as usize
            };
            for _ in 0..200 {
                let start = next() % bytes.len();
                let len = next() % (bytes.len() - start + 1);
                assert_eq!(
                    sums.range_sum(bytes, start, len),
                    reference(start, len),
                    "arena {n}: start {start} len {len}"
                );
            }
            for (start, len) in [
                (0, bytes.len()),
                (1, bytes.len() - 1),
                (63, bytes.len() - 64),
                (64 * 64 - 1, 64 * 64 * 3 + 2),
                (150_000, 3),
                (150_002, 64 << 10),
            ] {
                assert_eq!(
                    sums.range_sum(bytes, start, len),
                    reference(start, len),
                    "arena {n}: start {start} len {len}"
                );
            }
        }
    }

    #[test]
    fn ranges_past_the_end_are_cut_and_empty_ones_sum_to_zero() {
        let bytes = random_bytes(9, 1000);
        let sums = ArenaSums::new(&bytes);
        assert_eq!(
            sums.range_sum(&bytes, 900, 500),
            checksum::data(&bytes[900..])
        );
        assert_eq!(
            sums.range_sum(&bytes, 10, usize::MAX),
            checksum::data(&bytes[10..])
        );
        assert_eq!(sums.range_sum(&bytes, 2000, 10), 0);
        assert_eq!(sums.range_sum(&bytes, 5, 0), 0);
        let empty = ArenaSums::new(&[]);
        assert_eq!(empty.range_sum(&[], 0, 100), 0);
    }

    #[test]
    fn overhead_is_35_kib_per_mib() {
        let sums = ArenaSums::new(&vec![1u8; 1 << 20]);
        // 16,385 prefixes, 256 bitmap words, 257 ranks.
        assert_eq!(sums.heap_bytes(), 16_385 * 2 + 256 * 8 + 257 * 4);
        assert!(sums.heap_bytes() < 36 * 1024);
    }
}
