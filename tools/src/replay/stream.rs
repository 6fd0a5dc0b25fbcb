//! [`Reassembly`]: one direction of a TCP connection put back into its byte stream.
//!
//! Segments are placed by sequence number relative to the first data byte (ISN + 1), so
//! retransmissions, overlaps and reordering in a trace collapse into the stream the receiver
//! saw. Bytes already placed win over later copies (as a receiver that already acknowledged
//! them keeps them). Data before the stream start or more than [`MAX_AHEAD`] beyond its end is
//! ignored, so a hostile segment cannot make the replay allocate without bound.

use std::collections::BTreeMap;

/// How far past the contiguous end a segment may start and still be kept for later.
pub const MAX_AHEAD: u64 = 16 << 20;

#[derive(Debug, Clone, Default)]
pub struct Reassembly {
    /// Sequence number of the first data byte (ISN + 1); `None` until the SYN is seen.
    base: Option<u32>,
    data: Vec<u8>,
    /// Segments beyond a hole, by offset.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
}

impl Reassembly {
    /// Starts the stream after the SYN with sequence number `isn`.
    pub fn start(&mut self, isn: u32) {
        if self.base.is_none() {
            self.base = Some(isn.wrapping_add(1));
        }
    }

    pub fn is_started(&self) -> bool {
        self.base.is_some()
    }

    /// Places a segment's payload (and FIN) by its sequence number.
    pub fn add(&mut self, seq: u32, payload: &[u8], fin: bool) {
        let Some(base) = self.base else { return };
        let relative = seq.wrapping_sub(base);
        // More than 2^31 "ahead" is really behind the start: wrapped old data.
        let (offset, payload) = if relative > i32::MAX as u32 {
            let behind = (u32::MAX - relative) as usize + 1;
            (0, payload.get(behind..).unwrap_or_default())
        } else {
            (u64::from(relative), payload)
        };
        if fin && self.fin_at.is_none() {
            self.fin_at = Some(offset + payload.len() as u64);
        }
        if payload.is_empty() || offset > self.len() + MAX_AHEAD {
            return;
        }
        self.ahead
            .entry(offset)
            .and_modify(|held| {
                if payload.len() > held.len() {
                    *held = payload.to_vec();
                }
            })
            .or_insert_with(|| payload.to_vec());
        self.merge();
    }

    fn merge(&mut self) {
        while let Some(entry) = self.ahead.first_entry() {
            let offset = *entry.key();
            let end = self.data.len() as u64;
            if offset > end {
                break;
            }
            let held = entry.remove();
            let skip = usize::try_from(end - offset).unwrap_or(usize::MAX);
            if let Some(new) = held.get(skip..) {
                self.data.extend_from_slice(new);
            }
        }
    }

    /// The contiguous bytes from the start.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The FIN's offset, once seen (even if data before it is missing).
    pub fn fin_at(&self) -> Option<u64> {
        self.fin_at
    }

    /// Every byte up to the FIN is here.
    pub fn is_finished(&self) -> bool {
        self.fin_at.is_some_and(|at| at <= self.len())
    }

    /// Sequence space received in order: the SYN, the contiguous data and, when everything
    /// before it arrived, the FIN. This is what an ACK from the receiver would acknowledge.
    pub fn acked_len(&self) -> u64 {
        1 + self.len() + u64::from(self.is_finished())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_overlaps_and_reordering_give_one_stream() {
        let mut stream = Reassembly::default();
        stream.add(1, b"ignored before the SYN", false);
        stream.start(u32::MAX - 2);
        let base = u32::MAX - 1;
        stream.add(base.wrapping_add(6), b"world", true);
        stream.add(base, b"hel", false);
        assert_eq!(stream.bytes(), b"hel");
        stream.add(base, b"hello ", false);
        stream.add(base.wrapping_add(2), b"XXXX", false);
        assert_eq!(stream.bytes(), b"hello world");
        assert!(stream.is_finished());
        assert_eq!(stream.acked_len(), 13);
        stream.add(base.wrapping_sub(3), b"abcdef", false);
        assert_eq!(stream.bytes(), b"hello world");
    }

    #[test]
    fn far_ahead_data_is_not_kept() {
        let mut stream = Reassembly::default();
        stream.start(0);
        stream.add(1 + (MAX_AHEAD as u32) + 10, b"x", false);
        assert!(stream.ahead.is_empty());
        assert!(!stream.is_finished());
    }
}
