//! The smoltcp [`Device`] a client connection's `Interface` (`Medium::Ip`) is polled through.
//!
//! A [`ClientDevice`] lives for one poll of one connection. It lends at most one received IP
//! packet (already demultiplexed to this connection by the fleet), and its transmit tokens write
//! the Ethernet header in front of each IP packet and stage the frame straight into the fleet's
//! [`FrameIo`], with no intermediate copy. When the driver's TX ring is full, `transmit` says
//! so, and smoltcp keeps the segment for a later poll.

use sirocco_drivers::{ETHERNET_HEADER_LEN, FrameIo};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// Frames a [`ClientDevice`] staged or had to drop, added to the fleet's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxTally {
    pub staged: u64,
    pub dropped: u64,
}

/// One connection's view of the shared driver, for one poll.
pub struct ClientDevice<'a, D: FrameIo> {
    pub io: &'a mut D,
    /// Destination MAC, source MAC and ethertype, written in front of every packet.
    pub l2: &'a [u8; ETHERNET_HEADER_LEN],
    pub mtu: usize,
    pub rx: Option<&'a [u8]>,
    pub tally: &'a mut TxTally,
}

impl<D: FrameIo> ClientDevice<'_, D> {
    /// Capabilities of a client interface with IP MTU `mtu`: medium IP, software checksums.
    pub fn capabilities_for(mtu: usize) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = mtu;
        caps.max_burst_size = None;
        caps
    }
}

impl<D: FrameIo> Device for ClientDevice<'_, D> {
    type RxToken<'b>
        = PacketRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = FrameTx<'b, D>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.take()?;
        Some((
            PacketRx(packet),
            FrameTx {
                io: &mut *self.io,
                l2: self.l2,
                tally: &mut *self.tally,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if self.io.tx_room() == 0 {
            return None;
        }
        Some(FrameTx {
            io: &mut *self.io,
            l2: self.l2,
            tally: &mut *self.tally,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        Self::capabilities_for(self.mtu)
    }
}

/// The one received IP packet.
pub struct PacketRx<'a>(&'a [u8]);

impl RxToken for PacketRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

/// A transmit slot in the driver, behind an Ethernet header.
pub struct FrameTx<'a, D: FrameIo> {
    io: &'a mut D,
    l2: &'a [u8; ETHERNET_HEADER_LEN],
    tally: &'a mut TxTally,
}

impl<D: FrameIo> TxToken for FrameTx<'_, D> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut f = Some(f);
        let mut result = None;
        let l2 = self.l2;
        let staged = self.io.tx_stage(ETHERNET_HEADER_LEN + len, &mut |frame| {
            let Some((header, packet)) = frame.split_at_mut_checked(ETHERNET_HEADER_LEN) else {
                return;
            };
            header.copy_from_slice(l2);
            if let Some(f) = f.take() {
                result = Some(f(packet));
            }
        });
        if let Some(result) = result {
            self.tally.staged += u64::from(staged);
            return result;
        }
        // The ring was full (only possible for a reply made during ingress) or the frame was
        // too long: smoltcp still needs its closure run, so let it write into scratch and count
        // the frame as lost, as a full NIC queue would.
        self.tally.dropped += 1;
        let mut scratch = vec![0u8; len];
        match f.take() {
            Some(f) => f(&mut scratch),
            // `fill` ran but was cut short; unreachable with a frame of the requested length.
            None => unreachable_consumed(),
        }
    }
}

#[cold]
fn unreachable_consumed() -> ! {
    panic!("smoltcp TxToken closure consumed without a result")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver that stores staged frames and has room for `room` of them.
    struct Sink {
        frames: Vec<Vec<u8>>,
        room: usize,
    }

    impl FrameIo for Sink {
        fn capabilities(&self) -> sirocco_drivers::Capabilities {
            sirocco_drivers::Capabilities::ethernet(1500)
        }
        fn rx_burst(
            &mut self,
            _max: usize,
            _on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, sirocco_drivers::DriverError> {
            Ok(0)
        }
        fn tx_room(&self) -> usize {
            self.room
        }
        fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            if self.room == 0 {
                return false;
            }
            self.room -= 1;
            let mut frame = vec![0u8; len];
            fill(&mut frame);
            self.frames.push(frame);
            true
        }
        fn tx_flush(&mut self) -> Result<(), sirocco_drivers::DriverError> {
            Ok(())
        }
        fn counters(&self) -> sirocco_drivers::DriverCounters {
            sirocco_drivers::DriverCounters::default()
        }
    }

    #[test]
    fn frames_get_the_ethernet_header_and_full_rings_refuse() {
        let mut sink = Sink {
            frames: Vec::new(),
            room: 1,
        };
        let l2 = [1u8; ETHERNET_HEADER_LEN];
        let mut tally = TxTally::default();
        let mut device = ClientDevice {
            io: &mut sink,
            l2: &l2,
            mtu: 1500,
            rx: Some(&[9, 9]),
            tally: &mut tally,
        };
        let token = device.transmit(Instant::ZERO).expect("room for one");
        let n = token.consume(3, |buf| {
            buf.copy_from_slice(&[7, 7, 7]);
            3
        });
        assert_eq!(n, 3);
        assert!(device.transmit(Instant::ZERO).is_none());
        // A reply during ingress with no room is counted, not lost silently.
        let (rx, tx) = device.receive(Instant::ZERO).expect("one packet");
        assert_eq!(rx.consume(|p| p.to_vec()), [9, 9]);
        tx.consume(2, |_| ());
        assert!(device.receive(Instant::ZERO).is_none());
        assert_eq!(tally.staged, 1);
        assert_eq!(tally.dropped, 1);
        assert_eq!(sink.frames, [[[1u8; 14].as_slice(), &[7, 7, 7]].concat()]);
    }
}
