//! `sirocco-bench driver`: packet-rate limits of each frame backend, with no TCP/IP on top.
//!
//! Tests, each for 64-byte and 1514-byte frames:
//! - `rx-drop`: frames are received in bursts and dropped;
//! - `tx-only`: frames are staged and flushed as fast as the backend takes them;
//! - `echo`: every received frame is sent back.
//!
//! Drivers:
//! - `memory`: the in-process link on a virtual clock (zero latency, unlimited rate). Only the
//!   side under test is timed; the other side fills or drains the link outside the timing.
//! - `tap`: a tap device created in a fresh network namespace (its own process, started in
//!   the namespace of a [`Lab`]). The kernel side is driven by a small Python `AF_PACKET` sender in the
//!   same namespace for `rx-drop` and `echo`; for `tx-only` the kernel just drops what we write.
//! - `afxdp`: AF_XDP on the server end of a `VethLab` (two fresh namespaces joined by a veth
//!   pair, copy mode), with the Python sender on the client end.
//!
//! `packets_per_sec` is frames handled by sirocco's side ÷ the seconds it was busy (the
//! Python sender is often the limit of `rx-drop` and `echo` on tap and veth; `sender_pps`
//! says how fast it went). Frames carry EtherType 0x88B5 (local experimental) to the
//! broadcast address, and only inside namespaces this bench creates; every run is bounded by
//! `--seconds`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sirocco::lab::veth::VethLab;
use sirocco::lab::{Lab, netns_command};
use sirocco_drivers::FrameIo;
use sirocco_drivers::afxdp::{AfXdp, AfXdpConfig, CopyMode};
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::{LinkConfig, MemoryLink};
use sirocco_drivers::tap::TapDevice;

use super::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    Memory,
    Tap,
    Afxdp,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Memory => "memory",
            Driver::Tap => "tap",
            Driver::Afxdp => "afxdp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Test {
    #[value(name = "rx-drop")]
    RxDrop,
    #[value(name = "tx-only")]
    TxOnly,
    Echo,
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::RxDrop => "rx-drop",
            Test::TxOnly => "tx-only",
            Test::Echo => "echo",
        }
    }
}

/// Options of `sirocco-bench driver`.
#[derive(Debug, Clone, Args)]
pub struct DriverArgs {
    /// Drivers to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub drivers: Vec<Driver>,
    /// Tests to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tests: Vec<Test>,
    /// Frame sizes in bytes, Ethernet header included (default: 64,1514).
    #[arg(long, value_delimiter = ',')]
    pub frame_bytes: Vec<usize>,
    /// Seconds per kernel-backed run (memory runs are bounded by frame count).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG of packets/s per driver to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Run one kernel-backed test in this process, already inside its namespace (internal).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

const MEMORY_FRAMES: u64 = 2_000_000;
const BURST: usize = 64;
const ETHERTYPE_LOCAL: [u8; 2] = [0x88, 0xb5];

/// The Python sender: `iface size seconds` → prints how many frames it sent.
const SENDER: &str = r#"
import socket, sys, time
iface, size, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + bytes(size - 14)
n = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.send(frame)
            n += 1
        except OSError:
            pass
print(n)
"#;

fn fill_frame(buf: &mut [u8]) {
    if let Some(header) = buf.get_mut(..14) {
        header[..6].fill(0xff);
        header[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 8]);
        header[12..].copy_from_slice(&ETHERTYPE_LOCAL);
    }
}

pub fn run_all(args: &DriverArgs) -> anyhow::Result<Vec<Row>> {
    if let Some(spec) = &args.child {
        return run_child(args, spec).map(|row| {
            outln!("{}", row.json);
            vec![row]
        });
    }
    let drivers = if args.drivers.is_empty() {
        vec![Driver::Memory, Driver::Tap, Driver::Afxdp]
    } else {
        args.drivers.clone()
    };
    let tests = if args.tests.is_empty() {
        vec![Test::RxDrop, Test::TxOnly, Test::Echo]
    } else {
        args.tests.clone()
    };
    let sizes = if args.frame_bytes.is_empty() {
        vec![64, 1514]
    } else {
        args.frame_bytes.clone()
    };
    if let Some(bad) = sizes.iter().find(|&&s| !(60..=1514).contains(&s)) {
        bail!("frame size {bad} is outside 60..=1514");
    }
    if !args.json {
        outln!(
            "{:<8} {:<8} {:>11} {:>15} {:>12}",
            "driver",
            "test",
            "frame bytes",
            "packets/s",
            "sender pps"
        );
    }
    let mut rows = Vec::new();
    for &driver in &drivers {
        for &test in &tests {
            for &size in &sizes {
                let row = match driver {
                    Driver::Memory => memory(test, size),
                    Driver::Tap | Driver::Afxdp => kernel(args, driver, test, size),
                }
                .with_context(|| format!("{} {} {size}", driver.name(), test.name()))?;
                if args.json {
                    outln!("{}", row.json);
                } else {
                    outln!(
                        "{:<8} {:<8} {:>11} {:>15.0} {:>12}",
                        driver.name(),
                        test.name(),
                        size,
                        row.get_f64("packets_per_sec").unwrap_or(0.0),
                        row.get_f64("sender_pps")
                            .map_or(String::from("-"), |p| format!("{p:.0}")),
                    );
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn row(driver: Driver, test: Test, size: usize, packets: u64, secs: f64) -> Row {
    Row {
        json: serde_json::json!({
            "driver": driver.name(),
            "test": test.name(),
            "frame_bytes": size,
            "packets": packets,
            "seconds": super::round2(secs),
            "packets_per_sec": (packets as f64 / secs.max(1e-9)).round(),
        }),
    }
}

/// The memory link: only the side under test is inside the timing.
fn memory(test: Test, size: usize) -> anyhow::Result<Row> {
    let link = LinkConfig {
        mtu: 1500,
        latency_us: 0,
        rate_bits_per_sec: None,
        queue_limit: 1 << 16,
        ..LinkConfig::default()
    };
    let (mut a, mut b) = MemoryLink::pair(link, VirtualClock::new());
    let mut timed = Duration::ZERO;
    let mut done = 0u64;
    let mut scratch = Scratch::new();
    let send = |port: &mut sirocco_drivers::memory::MemoryPort, n: usize| -> anyhow::Result<()> {
        for _ in 0..n {
            if !port.tx_stage(size, &mut |buf| fill_frame(buf)) {
                break;
            }
        }
        port.tx_flush()?;
        Ok(())
    };
    while done < MEMORY_FRAMES {
        match test {
            Test::TxOnly => {
                let started = Instant::now();
                send(&mut a, 256)?;
                timed += started.elapsed();
                done += 256;
                b.rx_burst(usize::MAX, &mut |_| {})?;
            }
            Test::RxDrop => {
                send(&mut a, 256)?;
                let started = Instant::now();
                let mut got = 0;
                while got < 256 {
                    got += b.rx_burst(BURST, &mut |frame| {
                        std::hint::black_box(frame.first());
                    })?;
                }
                timed += started.elapsed();
                done += got as u64;
            }
            Test::Echo => {
                send(&mut a, 256)?;
                let started = Instant::now();
                let mut got = 0;
                while got < 256 {
                    got += echo_burst(&mut b, &mut scratch)?;
                }
                timed += started.elapsed();
                done += got as u64;
                a.rx_burst(usize::MAX, &mut |_| {})?;
            }
        }
    }
    Ok(row(Driver::Memory, test, size, done, timed.as_secs_f64()))
}

/// Receives one burst and sends every frame back, byte for byte (through `scratch`, since a
/// backend lends received frames only during `rx_burst`). Returns how many.
fn echo_burst<D: FrameIo + ?Sized>(io: &mut D, scratch: &mut Scratch) -> anyhow::Result<usize> {
    scratch.lens.clear();
    let Scratch { bytes, lens } = scratch;
    io.rx_burst(BURST, &mut |frame| {
        let at = lens.len() * MAX_FRAME;
        if let Some(dst) = bytes.get_mut(at..at + frame.len().min(MAX_FRAME)) {
            dst.copy_from_slice(&frame[..dst.len()]);
            lens.push(dst.len());
        }
    })?;
    for (i, &len) in scratch.lens.iter().enumerate() {
        let src = &scratch.bytes[i * MAX_FRAME..i * MAX_FRAME + len];
        io.tx_stage(len, &mut |buf| buf.copy_from_slice(src));
    }
    io.tx_flush()?;
    Ok(scratch.lens.len())
}

const MAX_FRAME: usize = 1514;

/// Room for one burst of frames, allocated once.
struct Scratch {
    bytes: Vec<u8>,
    lens: Vec<usize>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            bytes: vec![0; BURST * MAX_FRAME],
            lens: Vec::with_capacity(BURST),
        }
    }
}

/// Runs one tap or AF_XDP test: our side in a child process inside its namespace, the Python
/// sender (when the test needs one) in the peer namespace.
fn kernel(args: &DriverArgs, driver: Driver, test: Test, size: usize) -> anyhow::Result<Row> {
    let exe = std::env::current_exe()?;
    let (mut ours, sender_ns, sender_iface, _guards): (
        Command,
        String,
        &str,
        Box<dyn std::any::Any>,
    ) = match driver {
        Driver::Tap => {
            let lab = Lab::create("bench-tap").context("creating the tap namespace")?;
            let cmd = lab.command(&exe);
            let name = lab.namespace().to_owned();
            (cmd, name, "sbtap0", Box::new(lab))
        }
        Driver::Afxdp => {
            let lab = VethLab::create_unique("bench").context("creating the veth lab")?;
            let cmd = lab.server_command(&exe);
            let name = lab.client_ns().to_owned();
            (cmd, name, "veth-cli", Box::new(lab))
        }
        Driver::Memory => unreachable!("memory runs in process"),
    };
    let spec = format!("{}:{}:{}", driver.name(), test.name(), size);
    let mut child = ours
        .args([
            "driver",
            "--child",
            &spec,
            "--seconds",
            &args.seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the measuring child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The child says "ready" once its device is open.
    match lines.next() {
        Some(Ok(line)) if line == "ready" => {}
        other => {
            let _ = child.wait();
            bail!("the child did not get ready: {other:?}");
        }
    }
    let sender = if test == Test::TxOnly {
        None
    } else {
        Some(
            netns_command(&sender_ns, "python3")
                .args(["-c", SENDER])
                .args([sender_iface, &size.to_string(), &args.seconds.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the Python sender")?,
        )
    };
    let line = lines
        .next()
        .context("the child printed no result")?
        .context("reading the child's result")?;
    let status = child.wait()?;
    let sent = match sender {
        Some(s) => String::from_utf8_lossy(&s.wait_with_output()?.stdout)
            .trim()
            .parse::<u64>()
            .ok(),
        None => None,
    };
    if !status.success() {
        bail!("the measuring child failed");
    }
    let mut row = Row {
        json: serde_json::from_str(&line).context("parsing the child's result")?,
    };
    if let (Some(sent), Some(map)) = (sent, row.json.as_object_mut()) {
        map.insert(
            "sender_pps".into(),
            (sent as f64 / args.seconds).round().into(),
        );
    }
    Ok(row)
}

/// The measuring side of a kernel-backed test, inside its namespace.
fn run_child(args: &DriverArgs, spec: &str) -> anyhow::Result<Row> {
    let mut parts = spec.split(':');
    let (driver, test, size) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default().parse::<usize>()?,
    );
    let test = Test::from_str(test, false).map_err(anyhow::Error::msg)?;
    let (driver, mut io): (Driver, Box<dyn FrameIo>) = match driver {
        "tap" => (Driver::Tap, Box::new(TapDevice::open("sbtap0")?)),
        "afxdp" => {
            let mut config = AfXdpConfig::new("veth-srv");
            config.copy = CopyMode::Copy;
            (Driver::Afxdp, Box::new(AfXdp::open(config)?))
        }
        other => bail!("unknown child driver {other}"),
    };
    let mut scratch = Scratch::new();
    outln!("ready");
    let secs = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut count = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = started;
    // The sender gets a little longer than its own run to start up.
    let limit = secs + Duration::from_millis(700);
    while started.elapsed() < limit {
        match test {
            Test::TxOnly => {
                if started.elapsed() >= secs {
                    break;
                }
                while io.tx_room() > 0 {
                    if !io.tx_stage(size, &mut |buf| fill_frame(buf)) {
                        break;
                    }
                }
                io.tx_flush()?;
            }
            Test::RxDrop | Test::Echo => {
                let got = if test == Test::Echo {
                    echo_burst(&mut *io, &mut scratch)?
                } else {
                    let mut got = 0;
                    io.rx_burst(BURST, &mut |frame| {
                        std::hint::black_box(frame.first());
                        got += 1;
                    })?;
                    got
                };
                if got > 0 {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    count += got as u64;
                }
            }
        }
    }
    let (packets, busy) = match test {
        Test::TxOnly => (io.counters().tx_frames, started.elapsed()),
        _ => (count, last - first.unwrap_or(last)),
    };
    Ok(row(driver, test, size, packets, busy.as_secs_f64()))
}
