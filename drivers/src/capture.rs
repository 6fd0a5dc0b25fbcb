//! A wrapper that records a driver's traffic to a pcap file, whatever the backend.
//!
//! [`Capture`] implements [`FrameIo`] by delegating to the driver it wraps. On the way it copies
//! each received frame as it is lent out, and each transmitted frame as it is staged (once its
//! bytes are final), into a [`PcapSink`]. So the file holds both directions in the order the
//! stack saw them.
//!
//! Capture never gets in the way of traffic: a failed write (disk full) is counted in
//! [`Capture::capture_errors`] and the frame still goes through. After the first failure the
//! sink stops (see [`PcapSink`]), and every later frame counts as an error too.
//!
//! Writes go into the sink's buffer and reach the file when it fills, when the driver goes
//! idle ([`FrameIo::wait_rx`]), on [`Capture::flush`] and on drop.

use std::time::Duration;

use crate::pcap::PcapSink;
use crate::{Capabilities, DriverCounters, DriverError, FrameIo};

/// Which directions a [`Capture`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureDirection {
    Rx,
    Tx,
    Both,
}

impl CaptureDirection {
    fn rx(self) -> bool {
        matches!(self, CaptureDirection::Rx | CaptureDirection::Both)
    }

    fn tx(self) -> bool {
        matches!(self, CaptureDirection::Tx | CaptureDirection::Both)
    }
}

/// Any driver, with its traffic copied to a pcap file.
#[derive(Debug)]
pub struct Capture<D: FrameIo> {
    inner: D,
    sink: PcapSink,
    direction: CaptureDirection,
    capture_errors: u64,
}

impl<D: FrameIo> Capture<D> {
    pub fn new(inner: D, sink: PcapSink, direction: CaptureDirection) -> Self {
        Capture {
            inner,
            sink,
            direction,
            capture_errors: 0,
        }
    }

    /// Frames that could not be recorded (they were still received or sent).
    pub fn capture_errors(&self) -> u64 {
        self.capture_errors
    }

    /// Pushes recorded frames to the file. A failure is counted and returned.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        let result = self.sink.flush();
        if result.is_err() {
            self.capture_errors += 1;
        }
        result
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    pub fn sink(&self) -> &PcapSink {
        &self.sink
    }

    /// The wrapped driver. The sink is flushed and closed.
    pub fn into_inner(self) -> D {
        self.into_parts().0
    }

    /// The wrapped driver and the sink, still open.
    pub fn into_parts(self) -> (D, PcapSink) {
        (self.inner, self.sink)
    }
}

impl<D: FrameIo> FrameIo for Capture<D> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        if !self.direction.rx() {
            return self.inner.rx_burst(max, on_frame);
        }
        let (sink, errors) = (&mut self.sink, &mut self.capture_errors);
        self.inner.rx_burst(max, &mut |frame| {
            if sink.write_frame(frame).is_err() {
                *errors += 1;
            }
            on_frame(frame);
        })
    }

    fn rx_pending(&self) -> bool {
        self.inner.rx_pending()
    }

    fn tx_room(&self) -> usize {
        self.inner.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if !self.direction.tx() {
            return self.inner.tx_stage(len, fill);
        }
        let (sink, errors) = (&mut self.sink, &mut self.capture_errors);
        self.inner.tx_stage(len, &mut |buf| {
            fill(buf);
            if sink.write_frame(buf).is_err() {
                *errors += 1;
            }
        })
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.inner.tx_flush()
    }

    fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
        self.inner.tx_flush_lazy()
    }

    fn counters(&self) -> DriverCounters {
        self.inner.counters()
    }

    /// Going idle is the moment to push the capture to the file: nothing is waiting on us.
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        if self.sink.is_healthy() {
            // A capture failure never stops traffic: it is counted, not returned.
            let _ = self.flush();
        }
        self.inner.wait_rx(timeout)
    }

    fn rx_exhausted(&self) -> bool {
        self.inner.rx_exhausted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::pcap::{PcapSource, Timestamps};

    /// Every flushed frame comes back on the next `rx_burst`.
    struct Loopback {
        staged: Vec<Vec<u8>>,
        looped: Vec<Vec<u8>>,
        counters: DriverCounters,
    }

    impl Loopback {
        fn new() -> Self {
            Loopback {
                staged: Vec::new(),
                looped: Vec::new(),
                counters: DriverCounters::default(),
            }
        }
    }

    impl FrameIo for Loopback {
        fn capabilities(&self) -> Capabilities {
            Capabilities::ethernet(1500)
        }

        fn rx_burst(
            &mut self,
            max: usize,
            on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, DriverError> {
            let n = max.min(self.looped.len());
            for frame in self.looped.drain(..n) {
                self.counters.rx_frames += 1;
                on_frame(&frame);
            }
            Ok(n)
        }

        fn tx_room(&self) -> usize {
            4 - self.staged.len()
        }

        fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            if self.tx_room() == 0 {
                self.counters.tx_ring_full += 1;
                return false;
            }
            let mut frame = vec![0; len];
            fill(&mut frame);
            self.staged.push(frame);
            true
        }

        fn tx_flush(&mut self) -> Result<(), DriverError> {
            self.counters.tx_frames += self.staged.len() as u64;
            self.looped.append(&mut self.staged);
            Ok(())
        }

        fn counters(&self) -> DriverCounters {
            self.counters
        }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sirocco-capture-{}-{name}", std::process::id()))
    }

    fn frames_in(path: &std::path::Path) -> Vec<Vec<u8>> {
        let source = PcapSource::open(path).expect("capture file reads back");
        let mut driver = crate::pcap::PcapDriver::new(Some(source), None);
        let mut frames = Vec::new();
        driver
            .rx_burst(usize::MAX, &mut |f| frames.push(f.to_vec()))
            .unwrap();
        frames
    }

    fn stage(io: &mut dyn FrameIo, bytes: &[u8]) -> bool {
        io.tx_stage(bytes.len(), &mut |buf| buf.copy_from_slice(bytes))
    }

    #[test]
    fn records_both_directions_in_order() {
        let path = temp_path("both.pcap");
        let clock = VirtualClock::new();
        let sink = PcapSink::create(&path, Timestamps::Virtual(clock.clone())).unwrap();
        let mut capture = Capture::new(Loopback::new(), sink, CaptureDirection::Both);

        assert!(stage(&mut capture, b"tx-one"));
        assert!(stage(&mut capture, b"tx-two"));
        capture.tx_flush().unwrap();
        clock.advance_micros(10);
        let mut received = Vec::new();
        let n = capture
            .rx_burst(8, &mut |f| received.push(f.to_vec()))
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(received, vec![b"tx-one".to_vec(), b"tx-two".to_vec()]);
        assert!(stage(&mut capture, b"tx-three"));

        assert_eq!(capture.capture_errors(), 0);
        assert_eq!(capture.counters().tx_frames, 2);
        let inner = capture.into_inner();
        assert_eq!(inner.staged.len(), 1);

        let recorded = frames_in(&path);
        let expected: Vec<Vec<u8>> = [&b"tx-one"[..], b"tx-two", b"tx-one", b"tx-two", b"tx-three"]
            .iter()
            .map(|f| f.to_vec())
            .collect();
        assert_eq!(recorded, expected);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn records_only_the_chosen_direction() {
        for (direction, expected) in [
            (CaptureDirection::Rx, vec![b"ping".to_vec()]),
            (
                CaptureDirection::Tx,
                vec![b"ping".to_vec(), b"pong".to_vec()],
            ),
        ] {
            let path = temp_path(&format!("{direction:?}.pcap"));
            let sink = PcapSink::create(&path, Timestamps::Wall).unwrap();
            let mut capture = Capture::new(Loopback::new(), sink, direction);
            assert!(stage(&mut capture, b"ping"));
            capture.tx_flush().unwrap();
            capture.rx_burst(8, &mut |_| {}).unwrap();
            assert!(stage(&mut capture, b"pong"));
            drop(capture);
            assert_eq!(frames_in(&path), expected, "{direction:?}");
            let _ = std::fs::remove_file(&path);
        }
    }

    #[test]
    fn a_full_disk_is_counted_and_traffic_still_flows() {
        // Linux always has /dev/full: every write to it fails with ENOSPC.
        let sink = PcapSink::create("/dev/full", Timestamps::Wall).expect("open /dev/full");
        let mut capture = Capture::new(Loopback::new(), sink, CaptureDirection::Both);
        let frame = [0xabu8; 1500];
        let mut received = 0;
        // 200 frames each way is well past the sink's 64 KiB buffer.
        for _ in 0..100 {
            assert!(stage(&mut capture, &frame));
            assert!(stage(&mut capture, &frame));
            capture.tx_flush().unwrap();
            received += capture.rx_burst(8, &mut |f| assert_eq!(f, frame)).unwrap();
        }
        assert_eq!(received, 200);
        assert_eq!(capture.counters().tx_frames, 200);
        assert!(capture.capture_errors() > 0);
        assert!(!capture.sink().is_healthy());
        capture.wait_rx(Duration::ZERO).unwrap();
        assert!(capture.flush().is_err());
        // Dropping a failed capture must not panic either.
    }
}
