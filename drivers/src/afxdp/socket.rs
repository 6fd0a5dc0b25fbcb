//! One AF_XDP socket: UMEM registration, the four rings mapped from the kernel, and the bind
//! to an interface queue.
//!
//! The order follows Documentation/networking/af_xdp.rst: create the socket, register the
//! UMEM, size the fill, completion, RX and TX rings, read their offsets with
//! `XDP_MMAP_OFFSETS`, map each at its page offset, then bind. A failed bind leaves the socket
//! useless for another attempt in a different mode, so the caller opens a fresh one instead.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::sys::Fd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::if_xdp::{DEFAULT_TX_BUDGET, XDP_MAX_TX_SKB_BUDGET};
use super::queue::{Doorbell, Rings};
use super::ring::{ConsumerRing, ProducerRing, RingLayout};
use super::tx_meta::TxChecksum;
use super::umem::Umem;
use crate::sys::Mmap;
use crate::sys::xdp::{bind_xdp, get_xdp_option, kick_tx, set_xdp_option, wake_rx, xdp_socket};

/// How long a bind that meets `EBUSY` is retried: the previous socket on the queue may still
/// be tearing down in a kernel work queue.
const BIND_RETRY_FOR: Duration = Duration::from_secs(1);
/// The TX budget per kick we ask for (the kernel default is 32).
const WANTED_TX_BUDGET: u32 = 256;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketConfig {
    pub(crate) ifindex: u32,
    pub(crate) queue: u32,
    /// Entries in each of the four rings; a power of two.
    pub(crate) ring_size: u32,
    pub(crate) zero_copy: bool,
    pub(crate) need_wakeup: bool,
    /// Bind with `XDP_USE_SG`: frames longer than a chunk come and go as descriptor chains.
    pub(crate) multi_buffer: bool,
    /// Who completes TCP checksums, which decides the UMEM's TX metadata
    /// ([`Umem::registration`]).
    pub(crate) tx_checksum: TxChecksum,
}

/// The setup step that failed, for the caller's error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketStep {
    Create,
    RegisterUmem,
    SizeRings,
    ReadOffsets,
    MapRings,
    Bind,
    TxBudget,
}

#[derive(Debug)]
pub(crate) struct SocketError {
    pub(crate) step: SocketStep,
    pub(crate) error: io::Error,
}

fn at(step: SocketStep) -> impl Fn(io::Error) -> SocketError {
    move |error| SocketError { step, error }
}

/// Whether this kernel registers a UMEM with TX metadata (Linux 6.11+), tried on a throwaway
/// socket and a UMEM of one chunk of its own, so the real one is registered once.
pub(crate) fn takes_tx_metadata() -> bool {
    let Ok(umem) = Umem::new(1, 4096) else {
        return false;
    };
    xdp_socket().is_ok_and(|fd| {
        set_xdp_option(
            fd.as_fd(),
            libc::XDP_UMEM_REG,
            &umem.registration(TxChecksum::Device),
        )
        .is_ok()
    })
}

/// The socket's descriptor; its rings go to the [`Queue`](super::queue::Queue) that uses it
/// as its doorbell.
pub(crate) struct XdpSocket {
    /// Frames one TX kick may send, if the kernel took our `XDP_MAX_TX_SKB_BUDGET`.
    pub(crate) tx_budget: Option<u32>,
    fd: Fd,
}

impl std::fmt::Debug for XdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSocket")
            .field("fd", &self.fd)
            .field("tx_budget", &self.tx_budget)
            .finish_non_exhaustive()
    }
}

impl XdpSocket {
    /// Opens a socket over `umem` and binds it to `config.ifindex`/`config.queue`. Returns it
    /// with its four rings.
    pub(crate) fn open(
        umem: &Umem,
        config: &SocketConfig,
    ) -> Result<(XdpSocket, Rings), SocketError> {
        let fd = xdp_socket().map_err(at(SocketStep::Create))?;
        set_xdp_option(
            fd.as_fd(),
            libc::XDP_UMEM_REG,
            &umem.registration(config.tx_checksum),
        )
        .map_err(at(SocketStep::RegisterUmem))?;
        for ring in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            set_xdp_option(fd.as_fd(), ring, &config.ring_size)
                .map_err(at(SocketStep::SizeRings))?;
        }
        let (offsets, len) =
            get_xdp_option::<libc::xdp_mmap_offsets>(fd.as_fd(), libc::XDP_MMAP_OFFSETS)
                .map_err(at(SocketStep::ReadOffsets))?;
        if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 give offsets without the flags word.
            return Err(SocketError {
                step: SocketStep::ReadOffsets,
                error: io::Error::from_raw_os_error(libc::ENOPROTOOPT),
            });
        }
        let size = config.ring_size;
        let map = |offset: libc::xdp_ring_offset, page: u64, desc_size: usize| {
            let layout = RingLayout::from(offset);
            let len = usize::try_from(layout.descs)
                .ok()
                .and_then(|d| d.checked_add(desc_size.checked_mul(size as usize)?))
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            Mmap::shared(fd.as_fd(), len, page, true).map(|m| (Arc::new(m), layout))
        };
        let map_err = at(SocketStep::MapRings);
        let (rx_area, rx_layout) =
            map(offsets.rx, libc::XDP_PGOFF_RX_RING as u64, 16).map_err(&map_err)?;
        let (tx_area, tx_layout) =
            map(offsets.tx, libc::XDP_PGOFF_TX_RING as u64, 16).map_err(&map_err)?;
        let (fill_area, fill_layout) =
            map(offsets.fr, libc::XDP_UMEM_PGOFF_FILL_RING, 8).map_err(&map_err)?;
        let (comp_area, comp_layout) =
            map(offsets.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING, 8).map_err(&map_err)?;
        // SAFETY: each area is one ring of this socket, mapped once; the kernel is the only
        // other party and follows the ring protocol; we build exactly one side per ring.
        let (rx, tx, fill, completion) = unsafe {
            (
                ConsumerRing::new(rx_area, rx_layout, size).map_err(&map_err)?,
                ProducerRing::new(tx_area, tx_layout, size).map_err(&map_err)?,
                ProducerRing::new(fill_area, fill_layout, size).map_err(&map_err)?,
                ConsumerRing::new(comp_area, comp_layout, size).map_err(&map_err)?,
            )
        };

        let mut flags = if config.zero_copy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        if config.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        if config.multi_buffer {
            flags |= libc::XDP_USE_SG;
        }
        let started = Instant::now();
        loop {
            match bind_xdp(fd.as_fd(), config.ifindex, config.queue, flags) {
                Ok(()) => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && started.elapsed() < BIND_RETRY_FOR =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(SocketError {
                        step: SocketStep::Bind,
                        error: e,
                    });
                }
            }
        }

        let budget = WANTED_TX_BUDGET.min(config.ring_size);
        let tx_budget = if budget < DEFAULT_TX_BUDGET {
            None
        } else {
            match set_xdp_option(fd.as_fd(), XDP_MAX_TX_SKB_BUDGET, &budget) {
                Ok(()) => Some(budget),
                // Kernels before 6.17 do not know the option: keep their budget of 32.
                Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => None,
                Err(e) => {
                    return Err(SocketError {
                        step: SocketStep::TxBudget,
                        error: e,
                    });
                }
            }
        };

        let rings = Rings {
            rx,
            tx,
            fill,
            completion,
        };
        Ok((XdpSocket { tx_budget, fd }, rings))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The kernel's own counters for this socket (`XDP_STATISTICS`).
    pub(crate) fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        get_xdp_option::<libc::xdp_statistics>(self.fd.as_fd(), libc::XDP_STATISTICS)
            .map(|(s, _)| s)
    }
}

impl Doorbell for XdpSocket {
    fn kick_tx(&self) -> io::Result<()> {
        kick_tx(self.fd.as_fd())
    }

    fn wake_rx(&self) -> io::Result<()> {
        wake_rx(self.fd.as_fd())
    }

    fn tx_budget(&self) -> u32 {
        self.tx_budget.unwrap_or(DEFAULT_TX_BUDGET)
    }
}
