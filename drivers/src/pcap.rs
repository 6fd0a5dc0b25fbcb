//! The pcap backend: replay a trace as received frames, write transmitted frames to a file.
//!
//! - [`PcapSource`] loads every frame of a pcap or pcapng file (Ethernet link type) into memory
//!   when it opens, so replay allocates nothing. A truncated or garbled file is refused at open
//!   with a message naming the file, the record and the problem.
//! - [`PcapSink`] writes classic pcap (microsecond timestamps, `LINKTYPE_ETHERNET`, snap length
//!   65535, little-endian whatever the host) that tcpdump and Wireshark open. Timestamps come
//!   from the wall clock or from a [`VirtualClock`], which makes output files byte-for-byte
//!   reproducible. After a write fails (disk full) the sink stops writing, so at worst the
//!   file's last record is cut short and nothing after it is garbage; it flushes on drop.
//! - [`PcapDriver`] is a [`FrameIo`] built from an optional source and an optional sink, so
//!   `sirocco serve --driver pcap` can be fed a trace and record its answers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use crate::clock::VirtualClock;
use crate::staging::StagingRing;
use crate::{Capabilities, DriverCounters, DriverError, FrameIo};

/// Snap length written in every [`PcapSink`] header; longer frames are cut to it.
pub const SINK_SNAPLEN: u32 = 65535;

/// TX frames a [`PcapDriver`] stages between two flushes.
pub const PCAP_TX_SLOTS: usize = 256;

/// The pcapng section header block type, which is also the file's magic number.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// No real capture has records longer than this (tcpdump's maximum snap length); a longer one
/// means the length field is garbage, not that the file is cut short.
const MAX_PLAUSIBLE_RECORD: usize = 262_144;

/// Frames of a trace, held in memory and lent out in order.
#[derive(Clone)]
pub struct PcapSource {
    /// Every frame's bytes, back to back.
    bytes: Vec<u8>,
    /// Where each frame lies in `bytes`.
    frames: Vec<Range<usize>>,
    /// When each frame was captured, as the file records it (time since the Unix epoch).
    times: Vec<Duration>,
    next: usize,
    snapped: usize,
}

impl PcapSource {
    /// Reads the pcap or pcapng file at `path` (told apart by their magic numbers).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DriverError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|e| {
            DriverError::Setup(format!("cannot read trace {}: {e}", path.display()))
        })?;
        Self::from_bytes(&data, &path.display().to_string())
    }

    /// Parses a whole pcap or pcapng file held in memory. `label` names it in error messages.
    pub fn from_bytes(data: &[u8], label: &str) -> Result<Self, DriverError> {
        let bad = |problem: String| DriverError::Setup(format!("cannot replay {label}: {problem}"));
        let magic = data.get(..4).ok_or_else(|| {
            bad(format!(
                "the file is {} bytes long, too short for a pcap or pcapng header",
                data.len()
            ))
        })?;
        let mut loader = Loader::default();
        if magic == PCAPNG_MAGIC {
            load_pcapng(data, &mut loader).map_err(bad)?;
        } else if matches!(
            magic,
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
        ) {
            load_pcap(data, &mut loader).map_err(bad)?;
        } else {
            return Err(bad(format!(
                "not a pcap or pcapng file (it starts with {magic:02x?}); \
                 write one with tcpdump -w FILE"
            )));
        }
        Ok(PcapSource {
            bytes: loader.bytes,
            frames: loader.frames,
            times: loader.times,
            next: 0,
            snapped: loader.snapped,
        })
    }

    /// Frames in the trace.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames not yet lent out.
    pub fn remaining(&self) -> usize {
        self.frames.len() - self.next
    }

    /// Frames the capture cut short (captured length below the original length). They are
    /// replayed as recorded, so the stack will likely drop them.
    pub fn snapped_frames(&self) -> usize {
        self.snapped
    }

    /// Every frame with its capture timestamp, in file order, whatever has been lent out. For
    /// tools that read a trace rather than replay it (`sirocco-replay`).
    pub fn frames(&self) -> impl ExactSizeIterator<Item = (Duration, &[u8])> {
        self.frames
            .iter()
            .zip(&self.times)
            .map(|(range, time)| (*time, self.bytes.get(range.clone()).unwrap_or_default()))
    }

    /// Starts the replay over from the first frame.
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    /// The next frame, advancing the replay.
    fn next_frame(&mut self) -> Option<&[u8]> {
        let range = self.frames.get(self.next)?.clone();
        self.next += 1;
        self.bytes.get(range)
    }
}

impl std::fmt::Debug for PcapSource {
    // The frames themselves would drown any log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSource")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes.len())
            .field("next", &self.next)
            .field("snapped", &self.snapped)
            .finish()
    }
}

/// Collects frames while a trace is parsed.
#[derive(Default)]
struct Loader {
    bytes: Vec<u8>,
    frames: Vec<Range<usize>>,
    times: Vec<Duration>,
    snapped: usize,
}

impl Loader {
    fn push(&mut self, time: Duration, data: &[u8], original_len: u32) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.frames.push(start..self.bytes.len());
        self.times.push(time);
        if (data.len() as u64) < u64::from(original_len) {
            self.snapped += 1;
        }
    }
}

fn ethernet_only(datalink: DataLink) -> Result<(), String> {
    match datalink {
        DataLink::ETHERNET => Ok(()),
        DataLink::LINUX_SLL | DataLink::LINUX_SLL2 => Err(format!(
            "its link type is {datalink:?} (Linux cooked capture, as `tcpdump -i any` writes); \
             sirocco replays only Ethernet traces: capture on one Ethernet interface, \
             e.g. tcpdump -i eth0 -w FILE"
        )),
        other => Err(format!(
            "its link type is {other:?}; sirocco replays only Ethernet (LINKTYPE_ETHERNET) traces"
        )),
    }
}

/// Describes a parse failure at `offset` of the file, in record `index` (1-based).
fn record_error(what: &str, index: usize, offset: usize, err: PcapError) -> String {
    match err {
        PcapError::IncompleteBuffer => format!(
            "the file is truncated: {what} {index} at byte {offset} is cut short \
             (was the capture stopped mid-write?)"
        ),
        other => format!("{what} {index} at byte {offset} is garbled: {other}"),
    }
}

fn load_pcap(data: &[u8], loader: &mut Loader) -> Result<(), String> {
    let (mut rest, parser) = PcapParser::new(data).map_err(|e| match e {
        PcapError::IncompleteBuffer => {
            "the file is truncated: it ends inside the 24-byte pcap header".to_string()
        }
        other => format!("the pcap header is garbled: {other}"),
    })?;
    ethernet_only(parser.header().datalink)?;
    let mut index = 0;
    while !rest.is_empty() {
        index += 1;
        let offset = data.len() - rest.len();
        // Raw records: pcap-file's checked `PcapPacket` refuses `orig_len > snaplen`, which
        // every capture taken with `tcpdump -s N` has.
        let (after, raw) = parser.next_raw_packet(rest).map_err(|e| {
            // A record header is 16 bytes: ts_sec, ts_frac, incl_len, orig_len.
            let claimed = rest.get(8..12).map(|b| match parser.header().endianness {
                Endianness::Big => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                Endianness::Little => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            });
            match claimed {
                Some(len) if len as usize > MAX_PLAUSIBLE_RECORD => format!(
                    "packet {index} at byte {offset} is garbled: it claims {len} bytes of data"
                ),
                _ => record_error("packet", index, offset, e),
            }
        })?;
        let frac = match parser.header().ts_resolution {
            TsResolution::MicroSecond => Duration::from_micros(u64::from(raw.ts_frac)),
            TsResolution::NanoSecond => Duration::from_nanos(u64::from(raw.ts_frac)),
        };
        let time = Duration::from_secs(u64::from(raw.ts_sec)).saturating_add(frac);
        loader.push(time, &raw.data, raw.orig_len);
        rest = after;
    }
    Ok(())
}

fn load_pcapng(data: &[u8], loader: &mut Loader) -> Result<(), String> {
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| match e {
        PcapError::IncompleteBuffer => {
            "the file is truncated: it ends inside the pcapng section header".to_string()
        }
        other => format!("the pcapng section header is garbled: {other}"),
    })?;
    let mut index = 0;
    while !rest.is_empty() {
        index += 1;
        let offset = data.len() - rest.len();
        let (after, block) = parser
            .next_block(rest)
            .map_err(|e| record_error("block", index, offset, e))?;
        // pcap-file reads the raw 64-bit timestamp as nanoseconds; its unit is really the
        // interface's if_tsresol, applied below.
        let (interface_id, raw_time, frame, original_len) = match &block {
            Block::EnhancedPacket(p) => (p.interface_id, p.timestamp, &p.data[..], p.original_len),
            Block::Packet(p) => (
                u32::from(p.interface_id),
                Duration::from_nanos(p.timestamp),
                &p.data[..],
                p.original_len,
            ),
            // A simple packet block's data runs to the end of the block, padding included.
            Block::SimplePacket(p) => {
                let len = p.data.len().min(p.original_len as usize);
                (0, Duration::ZERO, &p.data[..len], p.original_len)
            }
            _ => {
                rest = after;
                continue;
            }
        };
        let interface = parser
            .interfaces()
            .get(interface_id as usize)
            .ok_or_else(|| {
                format!(
                    "block {index} at byte {offset} is a packet on interface {interface_id}, \
                 which no interface description block declares"
                )
            })?;
        ethernet_only(interface.linktype)?;
        let time = pcapng_time(raw_time, interface);
        loader.push(time, frame, original_len);
        rest = after;
    }
    Ok(())
}

/// A pcapng timestamp in units of the interface's `if_tsresol` (microseconds when absent):
/// bit 7 clear means 10^-n seconds, set means 2^-n.
fn pcapng_time(
    raw: Duration,
    interface: &pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock,
) -> Duration {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    let units = u64::try_from(raw.as_nanos()).unwrap_or(u64::MAX);
    let resolution = interface.options.iter().find_map(|option| match option {
        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
        _ => None,
    });
    let per_second: u64 = match resolution.unwrap_or(6) {
        r if r & 0x80 == 0 => 10u64.checked_pow(u32::from(r)).unwrap_or(u64::MAX),
        r => 1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(u64::MAX),
    };
    let per_second = per_second.max(1);
    let nanos = u128::from(units % per_second) * 1_000_000_000 / u128::from(per_second);
    Duration::new(units / per_second, u32::try_from(nanos).unwrap_or(0))
}

/// Where a [`PcapSink`] takes its timestamps from.
#[derive(Debug, Clone)]
pub enum Timestamps {
    /// The system clock (`SystemTime`), for captures of real traffic.
    Wall,
    /// A simulation's clock, for deterministic golden files.
    Virtual(VirtualClock),
}

impl Timestamps {
    fn now(&self) -> Duration {
        match self {
            Timestamps::Wall => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            Timestamps::Virtual(clock) => Duration::from_micros(clock.now_micros()),
        }
    }
}

/// Writes frames to a classic pcap file.
#[derive(Debug)]
pub struct PcapSink {
    /// `None` once a write has failed: the file then ends at an unknown point of a record,
    /// and writing more would make the rest unreadable.
    writer: Option<BufWriter<File>>,
    clock: Timestamps,
    frames_written: u64,
}

impl PcapSink {
    /// Creates (or truncates) `path` and writes the pcap header.
    pub fn create(path: impl AsRef<Path>, clock: Timestamps) -> Result<Self, DriverError> {
        let path = path.as_ref();
        let cannot =
            |e: &dyn std::fmt::Display| format!("cannot create pcap file {}: {e}", path.display());
        let file = File::create(path).map_err(|e| DriverError::Setup(cannot(&e)))?;
        let mut writer = BufWriter::with_capacity(1 << 16, file);
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SINK_SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            // Fixed, so golden files are the same bytes on every host.
            endianness: Endianness::Little,
        };
        header
            .write_to(&mut writer)
            .map_err(|e| DriverError::Setup(cannot(&e)))?;
        Ok(PcapSink {
            writer: Some(writer),
            clock,
            frames_written: 0,
        })
    }

    /// Appends one frame, stamped with the sink's clock. Frames longer than the snap length
    /// are cut to it, keeping their original length in the record.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), DriverError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(stopped());
        };
        let captured = frame.get(..SINK_SNAPLEN as usize).unwrap_or(frame);
        let record = RecordHeader {
            timestamp: self.clock.now(),
            captured_len: captured.len(),
            original_len: frame.len(),
        };
        // `PcapWriter` cannot flush without giving up its writer, so records are written here;
        // the layout is the classic one (four little-endian u32s, then the data).
        let written = writer
            .write_all(&record.to_le_bytes())
            .and_then(|()| writer.write_all(captured));
        match written {
            Ok(()) => {
                self.frames_written += 1;
                Ok(())
            }
            Err(e) => Err(self.fail("pcap write", e)),
        }
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(stopped());
        };
        match writer.flush() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail("pcap flush", e)),
        }
    }

    /// Frames accepted so far (buffered or on disk).
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// `false` once a write has failed and the sink has stopped.
    pub fn is_healthy(&self) -> bool {
        self.writer.is_some()
    }

    /// Stops the sink after a failed write, throwing away what is still buffered (it may end in
    /// half a record).
    fn fail(&mut self, op: &'static str, source: std::io::Error) -> DriverError {
        if let Some(writer) = self.writer.take() {
            // `into_parts` hands the buffer back instead of writing it out.
            let _ = writer.into_parts();
        }
        DriverError::io(op, source)
    }
}

/// The 16-byte header in front of each classic pcap record.
struct RecordHeader {
    timestamp: Duration,
    captured_len: usize,
    original_len: usize,
}

impl RecordHeader {
    fn to_le_bytes(&self) -> [u8; 16] {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let fields = [
            clamp(self.timestamp.as_secs()),
            self.timestamp.subsec_micros(),
            clamp(self.captured_len as u64),
            clamp(self.original_len as u64),
        ];
        let mut out = [0u8; 16];
        for (chunk, field) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }
}

fn stopped() -> DriverError {
    DriverError::io(
        "pcap write",
        std::io::Error::other("the capture stopped after an earlier write failed"),
    )
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        // Nobody to tell at this point: a failed flush here just loses the tail of the capture.
        if self.is_healthy() {
            let _ = self.flush();
        }
    }
}

/// A [`FrameIo`] that replays a [`PcapSource`] as received frames and writes transmitted
/// frames to a [`PcapSink`] (or drops them, counted in `tx_dropped`, without one).
///
/// Received frames longer than the capabilities' `max_frame_len` are skipped and counted in
/// `rx_dropped`, as a NIC with that MTU would. `tx_flush` writes the staged frames into the
/// sink's buffer (one kick); the buffer reaches the file when it fills, on `wait_rx`, and on
/// drop.
#[derive(Debug)]
pub struct PcapDriver {
    source: Option<PcapSource>,
    sink: Option<PcapSink>,
    caps: Capabilities,
    staging: StagingRing,
    counters: DriverCounters,
}

impl PcapDriver {
    /// A driver with plain Ethernet capabilities (MTU 1500).
    pub fn new(source: Option<PcapSource>, sink: Option<PcapSink>) -> Self {
        Self::with_capabilities(source, sink, Capabilities::ethernet(1500))
    }

    pub fn with_capabilities(
        source: Option<PcapSource>,
        sink: Option<PcapSink>,
        caps: Capabilities,
    ) -> Self {
        PcapDriver {
            source,
            sink,
            caps,
            staging: StagingRing::new(PCAP_TX_SLOTS, caps.max_frame_len),
            counters: DriverCounters::default(),
        }
    }

    pub fn source(&self) -> Option<&PcapSource> {
        self.source.as_ref()
    }

    pub fn sink(&self) -> Option<&PcapSink> {
        self.sink.as_ref()
    }

    /// Takes the sink out (to flush and inspect it); later TX is dropped.
    pub fn take_sink(&mut self) -> Option<PcapSink> {
        self.sink.take()
    }
}

impl FrameIo for PcapDriver {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let Some(source) = self.source.as_mut() else {
            return Ok(0);
        };
        let mut delivered = 0;
        let mut taken = 0;
        while taken < max {
            let Some(frame) = source.next_frame() else {
                break;
            };
            taken += 1;
            if frame.len() > self.caps.max_frame_len {
                self.counters.rx_dropped += 1;
                continue;
            }
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += frame.len() as u64;
            delivered += 1;
            on_frame(frame);
        }
        Ok(delivered)
    }

    fn tx_room(&self) -> usize {
        self.staging.room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.staging
            .stage_counted(&mut self.counters, self.caps.max_frame_len, len, fill)
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        if self.staging.is_empty() {
            return Ok(());
        }
        self.counters.kicks += 1;
        let mut result = Ok(());
        while let Some(frame) = self.staging.front() {
            match self.sink.as_mut() {
                Some(sink) if result.is_ok() => match sink.write_frame(frame) {
                    Ok(()) => {
                        self.counters.tx_frames += 1;
                        self.counters.tx_bytes += frame.len() as u64;
                    }
                    Err(e) => {
                        self.counters.tx_dropped += 1;
                        result = Err(e);
                    }
                },
                _ => self.counters.tx_dropped += 1,
            }
            self.staging.pop_front();
        }
        result
    }

    fn counters(&self) -> DriverCounters {
        self.counters
    }

    /// Nothing can arrive once the trace is over, so this sleeps out `timeout` then, after
    /// pushing the sink's buffer to the file; while frames remain it returns at once.
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        if let Some(sink) = self.sink.as_mut()
            && sink.is_healthy()
        {
            sink.flush()?;
        }
        if self.rx_exhausted() {
            std::thread::sleep(timeout);
        }
        Ok(())
    }

    /// `true` once the trace is fully replayed, and always without a source.
    fn rx_exhausted(&self) -> bool {
        self.source.as_ref().is_none_or(|s| s.remaining() == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::path::PathBuf;

    use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::blocks::name_resolution::NameResolutionBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sirocco-pcap-{}-{name}", std::process::id()))
    }

    /// Frames of assorted sizes, each with distinct bytes.
    fn sample_frames() -> Vec<Vec<u8>> {
        [60usize, 1514, 1, 342, 0, 61]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 7 + i) as u8).collect())
            .collect()
    }

    fn replay(source: PcapSource) -> Vec<Vec<u8>> {
        let caps = Capabilities::ethernet(65535);
        let mut driver = PcapDriver::with_capabilities(Some(source), None, caps);
        let mut frames = Vec::new();
        while driver
            .rx_burst(4, &mut |f| frames.push(f.to_vec()))
            .unwrap()
            > 0
        {}
        frames
    }

    fn setup_error(result: Result<PcapSource, DriverError>) -> String {
        match result {
            Err(DriverError::Setup(message)) => message,
            other => panic!("expected a setup error, got {other:?}"),
        }
    }

    fn write_with_sink(path: &Path, frames: &[Vec<u8>], clock: &VirtualClock) {
        let mut sink = PcapSink::create(path, Timestamps::Virtual(clock.clone())).unwrap();
        for frame in frames {
            sink.write_frame(frame).unwrap();
            clock.advance_micros(1_250_001);
        }
        assert_eq!(sink.frames_written(), frames.len() as u64);
    }

    #[test]
    fn sink_output_reads_back_byte_exact_with_exact_virtual_timestamps() {
        let path = temp_path("roundtrip.pcap");
        let frames = sample_frames();
        let clock = VirtualClock::new();
        clock.set_micros(1_700_000_000_123_456);
        write_with_sink(&path, &frames, &clock);

        assert_eq!(replay(PcapSource::open(&path).unwrap()), frames);

        // An independent reader sees the header we promise and the virtual times, to the µs.
        let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
        let header = reader.header();
        assert_eq!(header.datalink, DataLink::ETHERNET);
        assert_eq!(header.snaplen, 65535);
        assert_eq!(header.ts_resolution, TsResolution::MicroSecond);
        let mut at = 1_700_000_000_123_456u64;
        while let Some(packet) = reader.next_packet() {
            assert_eq!(packet.unwrap().timestamp, Duration::from_micros(at));
            at += 1_250_001;
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn virtual_clock_output_is_a_fixed_byte_sequence() {
        let path = temp_path("golden.pcap");
        let clock = VirtualClock::new();
        clock.set_micros(2_000_003);
        write_with_sink(&path, &[vec![0xde, 0xad, 0xbe]], &clock);
        let bytes = std::fs::read(&path).unwrap();
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, // magic (little-endian, µs), version 2.4
            0, 0, 0, 0, 0, 0, 0, 0,             // thiszone, sigfigs
            0xff, 0xff, 0, 0, 1, 0, 0, 0,       // snaplen 65535, LINKTYPE_ETHERNET
            2, 0, 0, 0, 3, 0, 0, 0,             // 2 s, 3 µs
            3, 0, 0, 0, 3, 0, 0, 0,             // captured 3, original 3
            0xde, 0xad, 0xbe,
        ];
        assert_eq!(bytes, golden);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn frames_longer_than_the_snaplen_are_cut_and_flagged() {
        let path = temp_path("snap.pcap");
        let big = vec![0x55u8; 70_000];
        write_with_sink(&path, std::slice::from_ref(&big), &VirtualClock::new());
        let source = PcapSource::open(&path).unwrap();
        assert_eq!(source.snapped_frames(), 1);
        assert_eq!(replay(source), vec![vec![0x55u8; 65535]]);
        let _ = std::fs::remove_file(&path);
    }

    fn pcapng_bytes(frames: &[Vec<u8>], linktype: DataLink) -> Vec<u8> {
        let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
        writer
            .write_pcapng_block(InterfaceDescriptionBlock::new(linktype, 65535))
            .unwrap();
        writer
            .write_pcapng_block(NameResolutionBlock {
                records: vec![],
                options: vec![],
            })
            .unwrap();
        for (i, frame) in frames.iter().enumerate() {
            if i == 2 {
                // One simple packet block, whose data is padded to 4 bytes on disk.
                writer
                    .write_pcapng_block(SimplePacketBlock {
                        original_len: frame.len() as u32,
                        data: Cow::Borrowed(frame),
                    })
                    .unwrap();
                continue;
            }
            writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: Duration::from_micros(i as u64),
                    original_len: frame.len() as u32,
                    data: Cow::Borrowed(frame),
                    options: vec![],
                })
                .unwrap();
        }
        writer.into_inner()
    }

    #[test]
    fn pcapng_input_replays_byte_exact() {
        let frames = sample_frames();
        let path = temp_path("input.pcapng");
        std::fs::write(&path, pcapng_bytes(&frames, DataLink::ETHERNET)).unwrap();
        let source = PcapSource::open(&path).unwrap();
        assert_eq!(source.len(), frames.len());
        assert_eq!(source.snapped_frames(), 0);
        assert_eq!(replay(source), frames);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn big_endian_nanosecond_pcap_is_read_too() {
        let header = PcapHeader {
            endianness: Endianness::Big,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
        let frames = sample_frames();
        for frame in &frames {
            let packet = PcapPacket::new(Duration::from_nanos(5), frame.len() as u32, frame);
            writer.write_packet(&packet).unwrap();
        }
        let source = PcapSource::from_bytes(&writer.into_writer(), "be.pcap").unwrap();
        assert_eq!(replay(source), frames);
    }

    #[test]
    fn snapped_captures_with_orig_len_above_snaplen_are_accepted() {
        // As `tcpdump -s 64` writes: snaplen 64, a 1514-byte frame stored as its first 64.
        let mut bytes = Vec::new();
        PcapHeader {
            snaplen: 64,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        }
        .write_to(&mut bytes)
        .unwrap();
        let record = RecordHeader {
            timestamp: Duration::ZERO,
            captured_len: 64,
            original_len: 1514,
        };
        bytes.extend_from_slice(&record.to_le_bytes());
        bytes.extend_from_slice(&[7u8; 64]);
        let source = PcapSource::from_bytes(&bytes, "snapped.pcap").unwrap();
        assert_eq!(source.snapped_frames(), 1);
        assert_eq!(replay(source), vec![vec![7u8; 64]]);
    }

    #[test]
    fn truncated_files_name_the_file_and_the_record() {
        let path = temp_path("cut.pcap");
        write_with_sink(&path, &sample_frames(), &VirtualClock::new());
        let whole = std::fs::read(&path).unwrap();
        // Cut inside the fourth record's data: 24 + (16+60) + (16+1514) + (16+1) + 20 bytes.
        std::fs::write(&path, &whole[..24 + 76 + 1530 + 17 + 20]).unwrap();
        let message = setup_error(PcapSource::open(&path));
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("truncated"), "{message}");
        assert!(message.contains("packet 4 at byte 1647"), "{message}");

        std::fs::write(&path, &whole[..10]).unwrap();
        let message = setup_error(PcapSource::open(&path));
        assert!(
            message.contains("ends inside the 24-byte pcap header"),
            "{message}"
        );

        let ng = pcapng_bytes(&sample_frames(), DataLink::ETHERNET);
        let message = setup_error(PcapSource::from_bytes(&ng[..ng.len() - 3], "cut.pcapng"));
        assert!(
            message.starts_with("cannot replay cut.pcapng: "),
            "{message}"
        );
        assert!(message.contains("truncated"), "{message}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn garbled_files_say_what_is_wrong() {
        let message = setup_error(PcapSource::from_bytes(b"GET / HTTP/1.1\r\n", "req.txt"));
        assert!(
            message.contains("req.txt: not a pcap or pcapng file"),
            "{message}"
        );
        let message = setup_error(PcapSource::from_bytes(b"", "empty.pcap"));
        assert!(message.contains("0 bytes long"), "{message}");

        let mut bytes = Vec::new();
        PcapHeader {
            endianness: Endianness::Little,
            ..PcapHeader::default()
        }
        .write_to(&mut bytes)
        .unwrap();
        let record = RecordHeader {
            timestamp: Duration::ZERO,
            captured_len: 0xffff_fff0,
            original_len: 60,
        };
        bytes.extend_from_slice(&record.to_le_bytes());
        let message = setup_error(PcapSource::from_bytes(&bytes, "junk.pcap"));
        assert!(
            message.contains("packet 1 at byte 24 is garbled"),
            "{message}"
        );

        let message = setup_error(PcapSource::open(temp_path("does-not-exist.pcap")));
        assert!(message.starts_with("cannot read trace "), "{message}");
    }

    #[test]
    fn non_ethernet_traces_are_refused() {
        let mut bytes = Vec::new();
        PcapHeader {
            datalink: DataLink::LINUX_SLL,
            ..PcapHeader::default()
        }
        .write_to(&mut bytes)
        .unwrap();
        let message = setup_error(PcapSource::from_bytes(&bytes, "any.pcap"));
        assert!(message.contains("Linux cooked capture"), "{message}");
        assert!(message.contains("only Ethernet"), "{message}");

        let ng = pcapng_bytes(&sample_frames(), DataLink::RAW);
        let message = setup_error(PcapSource::from_bytes(&ng, "raw.pcapng"));
        assert!(message.contains("link type is RAW"), "{message}");
    }

    #[test]
    fn driver_replays_in_bursts_and_records_its_answers() {
        let frames = sample_frames();
        let mut bytes = Vec::new();
        PcapHeader {
            endianness: Endianness::Little,
            ..PcapHeader::default()
        }
        .write_to(&mut bytes)
        .unwrap();
        for frame in &frames {
            let record = RecordHeader {
                timestamp: Duration::ZERO,
                captured_len: frame.len(),
                original_len: frame.len(),
            };
            bytes.extend_from_slice(&record.to_le_bytes());
            bytes.extend_from_slice(frame);
        }
        let source = PcapSource::from_bytes(&bytes, "in.pcap").unwrap();
        let out = temp_path("answers.pcap");
        let sink = PcapSink::create(&out, Timestamps::Virtual(VirtualClock::new())).unwrap();
        let mut driver = PcapDriver::new(Some(source), Some(sink));

        let mut seen = Vec::new();
        assert_eq!(
            driver.rx_burst(2, &mut |f| seen.push(f.to_vec())).unwrap(),
            2
        );
        assert!(!driver.rx_exhausted());
        // Frame 2 (1514 bytes) fits MTU 1500 exactly; none is oversize here.
        let n = driver
            .rx_burst(100, &mut |f| seen.push(f.to_vec()))
            .unwrap();
        assert_eq!(n, frames.len() - 2);
        assert_eq!(seen, frames);
        assert!(driver.rx_exhausted());
        assert_eq!(
            driver.rx_burst(100, &mut |_| panic!("exhausted")).unwrap(),
            0
        );

        assert_eq!(driver.tx_room(), PCAP_TX_SLOTS);
        assert!(driver.tx_stage(3, &mut |b| b.copy_from_slice(b"abc")));
        assert!(!driver.tx_stage(1515, &mut |_| panic!("oversize must not be filled")));
        assert!(driver.tx_stage(2, &mut |b| b.copy_from_slice(b"de")));
        driver.tx_flush().unwrap();
        let counters = driver.counters();
        assert_eq!(counters.rx_frames, frames.len() as u64);
        assert_eq!((counters.tx_frames, counters.tx_bytes), (2, 5));
        assert_eq!((counters.tx_dropped, counters.kicks), (1, 1));
        drop(driver);
        assert_eq!(
            replay(PcapSource::open(&out).unwrap()),
            vec![b"abc".to_vec(), b"de".to_vec()]
        );
        let _ = std::fs::remove_file(&out);
    }

    #[test]
    fn driver_without_sink_or_source() {
        let mut driver = PcapDriver::new(None, None);
        assert!(driver.rx_exhausted());
        assert_eq!(driver.rx_burst(8, &mut |_| {}).unwrap(), 0);
        for _ in 0..PCAP_TX_SLOTS {
            assert!(driver.tx_stage(60, &mut |_| {}));
        }
        assert!(!driver.tx_stage(60, &mut |_| panic!("ring is full")));
        assert_eq!(driver.counters().tx_ring_full, 1);
        driver.tx_flush().unwrap();
        assert_eq!(driver.counters().tx_dropped, PCAP_TX_SLOTS as u64);
        assert_eq!(driver.counters().tx_frames, 0);
        assert_eq!(driver.tx_room(), PCAP_TX_SLOTS);
    }

    #[test]
    fn oversize_trace_frames_are_dropped_and_counted() {
        let frames = vec![vec![1u8; 60], vec![2u8; 9000], vec![3u8; 60]];
        let clock = VirtualClock::new();
        let path = temp_path("jumbo.pcap");
        write_with_sink(&path, &frames, &clock);
        let mut driver = PcapDriver::new(Some(PcapSource::open(&path).unwrap()), None);
        let mut seen = Vec::new();
        driver.rx_burst(8, &mut |f| seen.push(f[0])).unwrap();
        assert_eq!(seen, vec![1, 3]);
        assert_eq!(driver.counters().rx_dropped, 1);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn mutated_files_give_errors_not_panics() {
        let mut pcap = Vec::new();
        PcapHeader {
            endianness: Endianness::Little,
            ..PcapHeader::default()
        }
        .write_to(&mut pcap)
        .unwrap();
        for frame in sample_frames().iter().take(3) {
            let record = RecordHeader {
                timestamp: Duration::ZERO,
                captured_len: frame.len(),
                original_len: frame.len(),
            };
            pcap.extend_from_slice(&record.to_le_bytes());
            pcap.extend_from_slice(frame);
        }
        let pcapng = pcapng_bytes(&sample_frames(), DataLink::ETHERNET);
        // xorshift64: a fixed seed, so a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for original in [&pcap, &pcapng] {
            for _ in 0..3000 {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] = next() as u8;
                }
                let cut = (next() % (bytes.len() as u64 + 1)) as usize;
                let _ = PcapSource::from_bytes(&bytes[..cut.max(bytes.len() / 2)], "fuzz");
            }
        }
    }
}
