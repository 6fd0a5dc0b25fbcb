//! The front end's reply queue.
//!
//! Replies built while a frame is being received (ARP, ICMP echo, RST, and whatever a cell
//! answers during ingress) cannot go to the `TxSink` directly: `handle_frame` has no sink. They
//! are written into this ring of preallocated, reusable buffers and flushed first by
//! `poll_egress`. Invariants: the ring never allocates after construction; a frame is either
//! fully staged or refused (the caller counts `tx_staging_full`); frames leave in FIFO order.

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use crate::TxSink;

/// Length of an Ethernet II header without VLAN tag.
pub(crate) const ETH_HEADER_LEN: usize = 14;

/// Addresses of the Ethernet header written in front of an outgoing packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EthHeader {
    pub dst: EthernetAddress,
    pub src: EthernetAddress,
    pub ethertype: EthernetProtocol,
}

impl EthHeader {
    /// Writes the header into the first 14 bytes of `frame` and returns the rest, or `None`
    /// (writing nothing) when `frame` is shorter than a header.
    pub fn write<'b>(&self, frame: &'b mut [u8]) -> Option<&'b mut [u8]> {
        if frame.len() < ETH_HEADER_LEN {
            return None;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(self.dst);
        eth.set_src_addr(self.src);
        eth.set_ethertype(self.ethertype);
        frame.get_mut(ETH_HEADER_LEN..)
    }
}

/// A FIFO of reusable frame buffers.
pub(crate) struct ReplyQueue {
    slots: Vec<Vec<u8>>,
    lens: Vec<usize>,
    head: usize,
    queued: usize,
}

impl ReplyQueue {
    /// `slots` buffers of `slot_size` bytes each, allocated now.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.max(1);
        ReplyQueue {
            slots: (0..slots).map(|_| vec![0; slot_size]).collect(),
            lens: vec![0; slots],
            head: 0,
            queued: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    pub fn len(&self) -> usize {
        self.queued
    }

    /// Takes the oldest frame out, as a copy (for building templates and for tests: it
    /// allocates).
    pub fn take_front(&mut self) -> Option<Vec<u8>> {
        if self.queued == 0 {
            return None;
        }
        let frame = self
            .slots
            .get(self.head)?
            .get(..*self.lens.get(self.head)?)?
            .to_vec();
        self.head = (self.head + 1) % self.slots.len();
        self.queued -= 1;
        Some(frame)
    }

    /// Takes back the frame staged last (a reply that must not go after all).
    pub fn unstage_last(&mut self) {
        self.queued = self.queued.saturating_sub(1);
    }

    /// Reserves the next slot for a frame of `len` bytes and lends it. `None` when the ring is
    /// full or the frame does not fit a slot; nothing is queued then.
    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.queued == self.slots.len() {
            return None;
        }
        let index = (self.head + self.queued) % self.slots.len();
        let slot = self.slots.get_mut(index)?.get_mut(..len)?;
        *self.lens.get_mut(index)? = len;
        self.queued += 1;
        Some(slot)
    }

    /// Sends queued frames in order while the sink has room. Returns how many left the ring.
    pub fn drain_into(&mut self, tx: &mut dyn TxSink) -> u64 {
        let mut sent = 0;
        while self.queued > 0 && tx.has_room() {
            let (Some(slot), Some(&len)) = (self.slots.get(self.head), self.lens.get(self.head))
            else {
                break;
            };
            let frame = slot.get(..len).unwrap_or_default();
            if !tx.send(len, &mut |buf| {
                if let Some(dst) = buf.get_mut(..frame.len()) {
                    dst.copy_from_slice(frame);
                }
            }) {
                break;
            }
            self.head = (self.head + 1) % self.slots.len();
            self.queued -= 1;
            sent += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecSink {
        frames: Vec<Vec<u8>>,
        room: usize,
    }

    impl TxSink for VecSink {
        fn has_room(&self) -> bool {
            self.room > 0
        }
        fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            if self.room == 0 {
                return false;
            }
            self.room -= 1;
            let mut buf = vec![0; len];
            fill(&mut buf);
            self.frames.push(buf);
            true
        }
    }

    #[test]
    fn fifo_and_refuses_when_full() {
        let mut ring = ReplyQueue::new(2, 64);
        ring.reserve(3).unwrap().copy_from_slice(b"abc");
        ring.reserve(2).unwrap().copy_from_slice(b"de");
        assert!(ring.reserve(1).is_none(), "third frame must be refused");
        let mut sink = VecSink {
            frames: vec![],
            room: 1,
        };
        assert_eq!(ring.drain_into(&mut sink), 1);
        assert_eq!(ring.len(), 1);
        sink.room = 5;
        ring.reserve(1).unwrap().copy_from_slice(b"f");
        assert_eq!(ring.drain_into(&mut sink), 2);
        assert!(ring.is_empty());
        assert_eq!(
            sink.frames,
            vec![b"abc".to_vec(), b"de".to_vec(), b"f".to_vec()]
        );
    }

    #[test]
    fn oversize_frame_is_refused() {
        let mut ring = ReplyQueue::new(1, 16);
        assert!(ring.reserve(17).is_none());
        assert!(ring.is_empty());
    }

    #[test]
    fn eth_header_write() {
        let hdr = EthHeader {
            dst: EthernetAddress([1, 2, 3, 4, 5, 6]),
            src: EthernetAddress([6, 5, 4, 3, 2, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = [0u8; 16];
        let rest = hdr.write(&mut buf).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(
            &buf[..14],
            &[1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0x08, 0x00]
        );
        assert!(hdr.write(&mut [0u8; 13]).is_none());
    }
}
