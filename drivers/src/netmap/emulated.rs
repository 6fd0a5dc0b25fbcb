//! An in-process netmap: a memory region laid out as the kernel lays it out, and a fake kernel
//! that moves slots by netmap's rules. It lets the driver's ring logic run, and a whole server
//! run, on machines without the netmap module.
//!
//! # What is emulated
//!
//! - **Layout** ([`EmulatedLayout`]), after `netmap_mem2.c`: three pools back to back. The
//!   interface pool holds the `netmap_if` (object 1, so `nr_offset` is not 0, as for a second
//!   descriptor); the ring pool holds every ring in page-sized objects, RX rings first as the
//!   kernel allocates them; the buffer pool holds `nr_buf_size`-byte buffers, 0 and 1 reserved.
//!   `ring_ofs[i]` is each ring's offset minus the `netmap_if`'s (TX rings first, 0 for rings not
//!   bound), and each ring's `buf_ofs` is the buffer pool's offset minus the ring's. All structs
//!   are `netmap_sys`'s `#[repr(C)]` ones.
//! - **Kernel rules** ([`EmulatedPort`] as a [`NetmapPort`]). Per ring the fake kernel keeps
//!   `hwcur` and `hwtail` like a `netmap_kring`. A sync first checks the user's `head` lies in
//!   `[hwcur, hwtail]` (a bad one "reinits" the ring to the kernel's view, as `netmap_ring_reinit`
//!   does); `tx_sync` then sends `[hwcur, head)` and completes at once (`tail = head - 1`);
//!   `rx_sync` reclaims `[hwcur, head)` and fills free slots from `hwtail` on, leaving one slot
//!   empty. `NS_BUF_CHANGED` on a reclaimed or sent slot is honoured: its new buffer is checked,
//!   and the flag cleared.
//! - **Wire and host stack.** [`EmulatedNetmap::port_pair`] joins two ports: what one sends on a
//!   NIC TX ring arrives on the other's NIC RX rings (spread by a flow hash when there are
//!   several). Frames sent on the host TX ring go to the port's emulated host stack
//!   ([`EmulatedPort::take_host_frames`]); frames the test "sends from the host"
//!   ([`EmulatedPort::host_send`]) appear on the host RX ring.
//! - **Faults:** buffer swaps by the kernel on RX and TX ([`EmulatedConfig::swap_buffers`]),
//!   corrupted RX slots ([`SlotFault`]), and paused TX completions.
//!
//! No clock: a sync moves everything at once, so tests are deterministic and a simulation can
//! drive both ends on a virtual clock. `poll` never sleeps.
//!
//! # What only a real kernel shows
//!
//! Real DMA timing, interrupts and `poll` wake-ups, NIC drivers' own slot checks, `NS_REPORT`,
//! multi-slot frames from the NIC, and kernel ring resets beyond the ones emulated here.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::ptr::{NonNull, addr_of_mut};
use std::rc::Rc;
use std::time::Duration;

use netmap_sys::netmap::{IFNAMSIZ, NETMAP_API, NS_BUF_CHANGED, netmap_if, netmap_ring};

use super::port::{NetmapPort, RegisterMode, Registration};
use super::region::{Region, RingId, netmap_if_bytes, netmap_ring_bytes};
use super::ring::{NetmapRing, RESERVED_BUFFERS, Slot};
use super::{Netmap, NetmapConfig};
use crate::DriverError;

const PAGE_SIZE: usize = 4096;
/// The interface pool's object size in the kernel's default configuration.
const IF_OBJ_SIZE: usize = 1024;
/// Cache-line alignment netmap uses for its objects.
const NM_CACHE_ALIGN: usize = 128;

/// Shape of one emulated interface (both ports of a pair get the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedConfig {
    /// Slots in every ring, host rings included.
    pub num_slots: u32,
    /// `nr_buf_size`.
    pub buf_size: u32,
    /// NIC ring pairs (queues).
    pub nic_rings: u16,
    /// Buffers the kernel keeps aside for swapping into slots.
    pub spare_buffers: u32,
    /// The interface's IP MTU as `SIOCGIFMTU` would report it.
    pub mtu: usize,
    /// Frames that may wait on the wire toward a port whose RX rings are full; more are dropped.
    pub wire_queue_limit: usize,
    /// The kernel swaps the buffer of every RX slot it fills and every TX slot it sends for a
    /// spare one, and sets `NS_BUF_CHANGED`, as zero-copy netmap ports (pipes, VALE) do.
    pub swap_buffers: bool,
}

impl Default for EmulatedConfig {
    /// 256-slot rings of 2048-byte buffers, one queue, 64 spare buffers, MTU 1500.
    fn default() -> Self {
        EmulatedConfig {
            num_slots: 256,
            buf_size: 2048,
            nic_rings: 1,
            spare_buffers: 64,
            mtu: 1500,
            wire_queue_limit: 4096,
            swap_buffers: false,
        }
    }
}

/// Where everything lives in an emulated region, computed as `netmap_mem2.c` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedLayout {
    pub tx_rings: u32,
    pub rx_rings: u32,
    pub num_slots: u32,
    pub buf_size: u32,
    /// Size of one interface-pool object.
    pub if_obj_size: usize,
    /// Offset of the `netmap_if` (`nr_offset`).
    pub nifp_offset: usize,
    /// The ring pool follows the interface pool.
    pub ring_pool_offset: usize,
    pub ring_obj_size: usize,
    /// Offset of each ring from the region's start, in `ring_ofs[]` order: NIC TX rings, host TX,
    /// NIC RX rings, host RX.
    pub ring_offsets: Vec<usize>,
    /// The buffer pool follows the ring pool.
    pub buf_pool_offset: usize,
    /// Buffers in the pool, the two reserved ones included.
    pub buf_count: u32,
    /// Region size (`nr_memsize`).
    pub len: usize,
}

impl EmulatedLayout {
    pub fn new(config: &EmulatedConfig) -> Self {
        let nic = u32::from(config.nic_rings.max(1));
        let num_slots = config.num_slots.max(2);
        let buf_size = config.buf_size.max(64);
        let rings_each_way = nic as usize + 1;
        let if_obj_size = IF_OBJ_SIZE
            .max(netmap_if_bytes(nic as usize, nic as usize).next_multiple_of(NM_CACHE_ALIGN));
        // Object 0 belongs to another descriptor; ours is object 1.
        let nifp_offset = if_obj_size;
        let ring_pool_offset = (2 * if_obj_size).next_multiple_of(PAGE_SIZE);
        let ring_obj_size = netmap_ring_bytes(num_slots as usize).next_multiple_of(PAGE_SIZE);
        // The kernel creates RX rings (NR_RX = 0) before TX rings; ring_ofs[] lists TX first.
        let rx_object = |i: usize| ring_pool_offset + i * ring_obj_size;
        let tx_object = |i: usize| ring_pool_offset + (rings_each_way + i) * ring_obj_size;
        let ring_offsets: Vec<usize> = (0..rings_each_way)
            .map(tx_object)
            .chain((0..rings_each_way).map(rx_object))
            .collect();
        let buf_pool_offset = ring_pool_offset + 2 * rings_each_way * ring_obj_size;
        let slots_total = 2 * rings_each_way as u32 * num_slots;
        let buf_count = RESERVED_BUFFERS + slots_total + config.spare_buffers;
        let len = buf_pool_offset + buf_count as usize * buf_size as usize;
        EmulatedLayout {
            tx_rings: nic,
            rx_rings: nic,
            num_slots,
            buf_size,
            if_obj_size,
            nifp_offset,
            ring_pool_offset,
            ring_obj_size,
            ring_offsets,
            buf_pool_offset,
            buf_count,
            len,
        }
    }

    /// Index into [`Self::ring_offsets`] (and `ring_ofs[]`) of `ring`.
    pub fn ring_index(&self, ring: RingId) -> Option<usize> {
        ring.ring_ofs_index(self.tx_rings, self.rx_rings)
    }

    /// Index of NIC RX ring `n` in [`Self::ring_offsets`].
    pub fn rx_ring_index(&self, n: u32) -> usize {
        self.tx_rings as usize + 1 + n as usize
    }

    /// `buf_ofs` of the ring at `ring_offsets[index]`: the buffer pool relative to that ring.
    pub fn buf_ofs(&self, index: usize) -> i64 {
        self.buf_pool_offset as i64 - self.ring_offsets[index] as i64
    }

    /// Every ring with its place in `ring_ofs[]`.
    fn rings(&self) -> impl Iterator<Item = (usize, RingId)> + '_ {
        let tx = (0..self.tx_rings)
            .map(RingId::Tx)
            .chain(std::iter::once(RingId::HostTx));
        let rx = (0..self.rx_rings)
            .map(RingId::Rx)
            .chain(std::iter::once(RingId::HostRx));
        tx.chain(rx).enumerate()
    }
}

/// A heap block holding an emulated region, initialised as the kernel initialises rings at
/// registration: every ring exists, TX rings empty (`tail = num_slots - 1`), RX rings with no
/// frames (`tail = head = 0`), and every slot with its own buffer.
pub struct EmulatedRegion {
    base: NonNull<u8>,
    alloc: Layout,
    layout: EmulatedLayout,
}

impl fmt::Debug for EmulatedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedRegion")
            .field("len", &self.layout.len)
            .finish_non_exhaustive()
    }
}

impl Drop for EmulatedRegion {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed(self.alloc)` and is freed only here.
        unsafe { dealloc(self.base.as_ptr(), self.alloc) };
    }
}

impl EmulatedRegion {
    pub fn new(layout: EmulatedLayout, iface: &str) -> Self {
        let alloc = Layout::from_size_align(layout.len.max(PAGE_SIZE), PAGE_SIZE)
            .unwrap_or_else(|_| Layout::new::<[u8; PAGE_SIZE]>());
        // SAFETY: `alloc` has a non-zero size.
        let base = unsafe { alloc_zeroed(alloc) };
        let Some(base) = NonNull::new(base) else {
            handle_alloc_error(alloc)
        };
        let region = EmulatedRegion {
            base,
            alloc,
            layout,
        };
        region.write_interface(iface);
        let mut next_buf = RESERVED_BUFFERS;
        for (index, ring) in region.layout.rings() {
            region.write_ring(index, ring, &mut next_buf);
        }
        region.bind(|_| true);
        region
    }

    /// The region as the driver sees it.
    pub fn region(&self) -> Region {
        // SAFETY: `base` is a live, zeroed, page-aligned allocation of at least `layout.len`
        // bytes that is freed only when `self` drops; whoever holds the returned `Region` must
        // not outlive `self` (the emulated port keeps both together).
        unsafe { Region::new(self.base, self.layout.len) }
    }

    pub fn layout(&self) -> &EmulatedLayout {
        &self.layout
    }

    fn nifp(&self) -> *mut netmap_if {
        // SAFETY: `nifp_offset + netmap_if_bytes(..)` lies inside the allocation: the interface
        // pool is two objects each at least that large.
        unsafe { self.base.as_ptr().add(self.layout.nifp_offset).cast() }
    }

    fn write_interface(&self, iface: &str) {
        let nifp = self.nifp();
        // SAFETY: `nifp` is an aligned `netmap_if` inside the allocation (see `nifp`), and no
        // reference into the region exists while the emulation sets it up.
        unsafe {
            let name = addr_of_mut!((*nifp).ni_name).cast::<u8>();
            for (i, &byte) in iface.as_bytes().iter().take(IFNAMSIZ - 1).enumerate() {
                name.add(i).write(byte);
            }
            addr_of_mut!((*nifp).ni_version).write(NETMAP_API as u32);
            addr_of_mut!((*nifp).ni_tx_rings).write(self.layout.tx_rings);
            addr_of_mut!((*nifp).ni_rx_rings).write(self.layout.rx_rings);
        }
    }

    /// Writes `ring_ofs[]`: the ring's offset relative to the `netmap_if` where `bound` says
    /// so, 0 elsewhere (what the kernel does for rings another descriptor owns).
    fn bind(&self, bound: impl Fn(RingId) -> bool) {
        let nifp = self.nifp();
        for (index, ring) in self.layout.rings() {
            let relative = if bound(ring) {
                self.layout.ring_offsets[index] as isize - self.layout.nifp_offset as isize
            } else {
                0
            };
            // SAFETY: `ring_ofs[index]` lies inside the interface object (`netmap_if_bytes`
            // counts every ring) and is aligned for `isize`.
            unsafe {
                addr_of_mut!((*nifp).ring_ofs)
                    .cast::<isize>()
                    .add(index)
                    .write_volatile(relative)
            };
        }
    }

    fn write_ring(&self, index: usize, id: RingId, next_buf: &mut u32) {
        let layout = &self.layout;
        let offset = layout.ring_offsets[index];
        // SAFETY: the ring object at `offset` holds `netmap_ring_bytes(num_slots)` bytes inside
        // the allocation and is page-aligned; no reference into the region exists meanwhile.
        unsafe {
            let ring = self.base.as_ptr().add(offset).cast::<netmap_ring>();
            addr_of_mut!((*ring).buf_ofs).write(layout.buf_ofs(index));
            addr_of_mut!((*ring).num_slots).write(layout.num_slots);
            addr_of_mut!((*ring).nr_buf_size).write(layout.buf_size);
            let ringid = match id {
                RingId::Tx(n) | RingId::Rx(n) => n,
                RingId::HostTx => layout.tx_rings,
                RingId::HostRx => layout.rx_rings,
            };
            addr_of_mut!((*ring).ringid).write(u16::try_from(ringid).unwrap_or(u16::MAX));
            // netmap_mem2.c stores kring->tx: NR_TX = 1, NR_RX = 0.
            addr_of_mut!((*ring).dir).write(u16::from(id.is_tx()));
            let tail = if id.is_tx() { layout.num_slots - 1 } else { 0 };
            addr_of_mut!((*ring).tail).write(tail);
            let slots = addr_of_mut!((*ring).slot).cast::<netmap_sys::netmap::netmap_slot>();
            for i in 0..layout.num_slots as usize {
                addr_of_mut!((*slots.add(i)).buf_idx).write(*next_buf);
                *next_buf += 1;
            }
        }
    }
}

/// A way the fake kernel can corrupt the next RX slot it fills on a NIC ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFault {
    /// `buf_idx` past the end of the buffer pool.
    BufIdxOutOfRange,
    /// `buf_idx` 0, the reserved "no buffer" index.
    ReservedBufIdx,
    /// `len` one byte more than `nr_buf_size`.
    LenOverBufSize,
}

/// What the fake kernel did. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatedStats {
    pub tx_syncs: u64,
    pub rx_syncs: u64,
    pub polls: u64,
    /// Frames sent from NIC TX rings onto the wire.
    pub wire_sent: u64,
    /// Frames dropped because the wire toward the peer held `wire_queue_limit` frames.
    pub wire_dropped: u64,
    /// Frames put on NIC RX rings.
    pub rx_published: u64,
    /// Frames that reached the emulated host stack from the host TX ring.
    pub to_host_stack: u64,
    /// Frames from the emulated host stack put on the host RX ring.
    pub from_host_stack: u64,
    /// Slots user space handed back with `NS_BUF_CHANGED` set.
    pub user_buf_changes: u64,
    /// Buffers the kernel swapped into slots.
    pub kernel_swaps: u64,
    /// Slots user space handed back with an unusable buffer index or length.
    pub bad_user_slots: u64,
    /// Syncs that found `head` outside `[hwcur, hwtail]` and reset the ring.
    pub reinits: u64,
}

/// The kernel's private state for one ring (`netmap_kring`).
#[derive(Debug)]
struct KernelRing {
    id: RingId,
    view: NetmapRing,
    bound: bool,
    hwcur: u32,
    hwtail: u32,
}

impl KernelRing {
    /// `true` if the user's `head` is one netmap accepts: in `[hwcur, hwtail]`.
    fn head_is_valid(&self, head: u32) -> bool {
        head < self.view.num_slots()
            && self.view.distance(self.hwcur, head) <= self.view.distance(self.hwcur, self.hwtail)
    }

    /// `netmap_ring_reinit`: forget what user space did and republish the kernel's view.
    fn reinit(&self) {
        self.view.set_head_cur(self.hwcur);
        self.view.set_tail(self.hwtail);
    }

    fn has_free_rx_slot(&self) -> bool {
        self.view.next(self.hwtail) != self.hwcur
    }
}

/// Which end of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Frames in flight each way, and spent frame buffers for reuse.
#[derive(Debug, Default)]
struct Wire {
    toward: [VecDeque<Vec<u8>>; 2],
    free: Vec<Vec<u8>>,
}

/// One emulated netmap interface: its region, its fake kernel, and its end of the wire.
#[derive(Debug)]
pub struct EmulatedPort {
    side: Side,
    config: EmulatedConfig,
    wire: Rc<RefCell<Wire>>,
    mode: Option<RegisterMode>,
    rings: Vec<KernelRing>,
    spares: VecDeque<u32>,
    host_inbox: VecDeque<Vec<u8>>,
    host_outbox: VecDeque<Vec<u8>>,
    faults: VecDeque<SlotFault>,
    /// Slots carrying an injected bad index: (ring, slot, the real buffer), restored on reclaim.
    corrupted: Vec<(usize, u32, u32)>,
    tx_paused: bool,
    stats: EmulatedStats,
    // Last: the ring views point into it.
    memory: EmulatedRegion,
}

/// The test-facing controls of an [`EmulatedPort`] that a [`Netmap`] driver owns. It lends the
/// port only through these methods: a `&mut EmulatedPort` would let a caller swap the port (and
/// its region) out from under the driver's ring views.
#[derive(Debug)]
pub struct EmulationControl<'a> {
    port: &'a mut EmulatedPort,
}

impl<'a> EmulationControl<'a> {
    pub(crate) fn new(port: &'a mut EmulatedPort) -> Self {
        EmulationControl { port }
    }

    /// See [`EmulatedPort::inject_rx_fault`].
    pub fn inject_rx_fault(&mut self, fault: SlotFault) {
        self.port.inject_rx_fault(fault);
    }

    /// See [`EmulatedPort::set_swap_buffers`].
    pub fn set_swap_buffers(&mut self, on: bool) {
        self.port.set_swap_buffers(on);
    }

    /// See [`EmulatedPort::set_tx_completions_paused`].
    pub fn set_tx_completions_paused(&mut self, paused: bool) {
        self.port.set_tx_completions_paused(paused);
    }

    /// See [`EmulatedPort::host_send`].
    pub fn host_send(&mut self, frame: &[u8]) {
        self.port.host_send(frame);
    }

    /// See [`EmulatedPort::take_host_frames`].
    pub fn take_host_frames(&mut self) -> Vec<Vec<u8>> {
        self.port.take_host_frames()
    }
}

/// Builds emulated netmap pairs.
#[derive(Debug)]
pub struct EmulatedNetmap;

impl EmulatedNetmap {
    /// Two unregistered ports joined by a wire, both shaped by `config`.
    pub fn port_pair(config: EmulatedConfig) -> (EmulatedPort, EmulatedPort) {
        let wire = Rc::new(RefCell::new(Wire::default()));
        (
            EmulatedPort::new(Side::A, config.clone(), "emu-a", Rc::clone(&wire)),
            EmulatedPort::new(Side::B, config, "emu-b", wire),
        )
    }

    /// Two netmap drivers, `emu-a` and `emu-b`, joined by a wire: NIC rings only, every frame
    /// to the server, idle mode. Each is a [`crate::FrameIo`].
    pub fn pair(
        config: EmulatedConfig,
    ) -> Result<(Netmap<EmulatedPort>, Netmap<EmulatedPort>), DriverError> {
        let nic_only = |iface: &str| NetmapConfig {
            host_rings: false,
            ..NetmapConfig::new(iface)
        };
        Self::pair_with(config, nic_only("emu-a"), nic_only("emu-b"))
    }

    /// Two netmap drivers with their own driver settings.
    pub fn pair_with(
        config: EmulatedConfig,
        a: NetmapConfig,
        b: NetmapConfig,
    ) -> Result<(Netmap<EmulatedPort>, Netmap<EmulatedPort>), DriverError> {
        let (port_a, port_b) = Self::port_pair(config);
        Ok((Netmap::with_port(port_a, a)?, Netmap::with_port(port_b, b)?))
    }
}

impl EmulatedPort {
    fn new(side: Side, config: EmulatedConfig, iface: &str, wire: Rc<RefCell<Wire>>) -> Self {
        let layout = EmulatedLayout::new(&config);
        let memory = EmulatedRegion::new(layout, iface);
        let region = memory.region();
        let layout = memory.layout();
        let rings = layout
            .rings()
            .filter_map(|(index, id)| {
                // SAFETY: `memory` owns the region and is a field of the port that owns this
                // view, so it outlives it (and is declared last, so it drops last).
                let view = unsafe { NetmapRing::new(region, layout.ring_offsets[index]) }.ok()?;
                let hwtail = view.tail();
                Some(KernelRing {
                    id,
                    view,
                    bound: false,
                    hwcur: 0,
                    hwtail,
                })
            })
            .collect();
        let first_spare = layout.buf_count - config.spare_buffers;
        let spares = (first_spare..layout.buf_count).collect();
        EmulatedPort {
            side,
            config,
            wire,
            mode: None,
            rings,
            spares,
            host_inbox: VecDeque::new(),
            host_outbox: VecDeque::new(),
            faults: VecDeque::new(),
            corrupted: Vec::new(),
            tx_paused: false,
            stats: EmulatedStats::default(),
            memory,
        }
    }

    pub fn stats(&self) -> EmulatedStats {
        self.stats
    }

    pub fn layout(&self) -> &EmulatedLayout {
        self.memory.layout()
    }

    /// The whole region, for tests that inspect it.
    pub fn region(&self) -> Region {
        self.memory.region()
    }

    pub fn config(&self) -> &EmulatedConfig {
        &self.config
    }

    /// Corrupts the next RX slot the kernel fills on a NIC ring (faults queue up in order).
    pub fn inject_rx_fault(&mut self, fault: SlotFault) {
        self.faults.push_back(fault);
    }

    /// Changes the MTU `register` reports (call before registering), e.g. to give the two
    /// ends of a pair different MTUs.
    pub fn set_interface_mtu(&mut self, mtu: usize) {
        self.config.mtu = mtu;
    }

    /// Turns kernel buffer swapping on RX fill and TX send on or off.
    pub fn set_swap_buffers(&mut self, on: bool) {
        self.config.swap_buffers = on;
    }

    /// While paused, `tx_sync` sends frames but reports no completions (`tail` stays), so the
    /// TX ring fills as behind a stalled NIC.
    pub fn set_tx_completions_paused(&mut self, paused: bool) {
        self.tx_paused = paused;
    }

    /// The emulated host stack transmits `frame`: it appears on the host RX ring at the next
    /// sync.
    pub fn host_send(&mut self, frame: &[u8]) {
        self.host_outbox.push_back(frame.to_vec());
    }

    /// Frames that reached the emulated host stack through the host TX ring, oldest first.
    pub fn take_host_frames(&mut self) -> Vec<Vec<u8>> {
        self.host_inbox.drain(..).collect()
    }

    /// Frames waiting on the wire toward this port.
    pub fn wire_pending(&self) -> usize {
        self.wire.borrow().toward[self.side.index()].len()
    }

    /// Checks that every buffer of the pool is in exactly one place (a slot of some ring, or
    /// the kernel's spares): swaps must never lose or duplicate a buffer.
    pub fn check_buffers(&self) -> Result<(), String> {
        let mut seen = vec![false; self.layout().buf_count as usize];
        let mut place = |idx: u32, whence: &dyn fmt::Display| -> Result<(), String> {
            match seen.get_mut(idx as usize) {
                Some(s) if !*s && idx >= RESERVED_BUFFERS => {
                    *s = true;
                    Ok(())
                }
                _ => Err(format!(
                    "buffer {idx} in {whence} is reserved, unknown or duplicated"
                )),
            }
        };
        for (r, ring) in self.rings.iter().enumerate() {
            for s in 0..ring.view.num_slots() {
                let slot = ring.view.slot(s).map_err(|e| e.to_string())?;
                let idx = self
                    .corrupted
                    .iter()
                    .find(|&&(cr, cs, _)| cr == r && cs == s)
                    .map_or(slot.buf_idx, |&(_, _, real)| real);
                place(idx, &format_args!("{:?} slot {s}", ring.id))?;
            }
        }
        for &idx in &self.spares {
            place(idx, &"the spares")?;
        }
        match seen.iter().skip(RESERVED_BUFFERS as usize).position(|s| !s) {
            Some(missing) => Err(format!("buffer {} is lost", missing + 2)),
            None => Ok(()),
        }
    }

    fn not_registered() -> io::Error {
        io::Error::from_raw_os_error(libc::ENXIO)
    }

    fn is_bound(mode: RegisterMode, id: RingId) -> bool {
        match (mode, id) {
            (RegisterMode::OneNic(q), RingId::Tx(n) | RingId::Rx(n)) => n == u32::from(q),
            (RegisterMode::AllNic | RegisterMode::NicAndHost, RingId::Tx(_) | RingId::Rx(_)) => {
                true
            }
            (RegisterMode::NicAndHost, RingId::HostTx | RingId::HostRx) => true,
            _ => false,
        }
    }

    /// Picks the bound NIC RX ring for `frame` by a hash of its IPv4 addresses and ports
    /// (an RSS stand-in), so one flow always lands on one ring.
    fn rx_ring_for(&self, frame: &[u8]) -> Option<usize> {
        let bound: Vec<usize> = (0..self.rings.len())
            .filter(|&r| self.rings[r].bound && matches!(self.rings[r].id, RingId::Rx(_)))
            .collect();
        let hash = frame
            .get(26..38)
            .unwrap_or(&[])
            .iter()
            .fold(0x811c_9dc5_u32, |h, &b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        bound.get(hash as usize % bound.len().max(1)).copied()
    }

    /// Takes back the RX slots user space released, `[hwcur, head)`.
    fn reclaim_rx(&mut self, r: usize) {
        let ring = &self.rings[r];
        let head = ring.view.head();
        if !ring.head_is_valid(head) {
            ring.reinit();
            self.stats.reinits += 1;
            return;
        }
        let mut s = ring.hwcur;
        while s != head {
            if let Some(pos) = self
                .corrupted
                .iter()
                .position(|&(cr, cs, _)| cr == r && cs == s)
            {
                let (_, _, real) = self.corrupted.swap_remove(pos);
                if let Ok(slot) = ring.view.slot(s) {
                    let _ = ring.view.set_slot(
                        s,
                        Slot {
                            buf_idx: real,
                            ..slot
                        },
                    );
                }
            }
            if let Ok(mut slot) = ring.view.slot(s)
                && slot.flags & NS_BUF_CHANGED != 0
            {
                self.stats.user_buf_changes += 1;
                if ring.view.check_buf_idx(slot.buf_idx).is_err() {
                    self.stats.bad_user_slots += 1;
                }
                slot.flags &= !NS_BUF_CHANGED;
                let _ = ring.view.set_slot(s, slot);
            }
            s = ring.view.next(s);
        }
        self.rings[r].hwcur = head;
    }

    /// Puts `frame` in the next free slot of RX ring `r` (the caller checked there is one).
    fn fill_rx(&mut self, r: usize, frame: &[u8], may_corrupt: bool) {
        let swap = self.config.swap_buffers;
        let ring = &self.rings[r];
        let s = ring.hwtail;
        let Ok(mut slot) = ring.view.slot(s) else {
            return;
        };
        slot.flags = 0;
        if swap && let Some(spare) = self.spares.pop_front() {
            self.spares.push_back(slot.buf_idx);
            slot.buf_idx = spare;
            slot.flags = NS_BUF_CHANGED;
            self.stats.kernel_swaps += 1;
        }
        if ring.view.write_buffer(slot.buf_idx, frame).is_err() {
            // The user broke this slot's buffer; a NIC would drop the frame.
            self.stats.bad_user_slots += 1;
        }
        slot.len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        if may_corrupt && let Some(fault) = self.faults.pop_front() {
            match fault {
                SlotFault::BufIdxOutOfRange => {
                    self.corrupted.push((r, s, slot.buf_idx));
                    slot.buf_idx = ring.view.buf_count().saturating_add(7);
                }
                SlotFault::ReservedBufIdx => {
                    self.corrupted.push((r, s, slot.buf_idx));
                    slot.buf_idx = 0;
                }
                SlotFault::LenOverBufSize => {
                    slot.len = u16::try_from(ring.view.buf_size() + 1).unwrap_or(u16::MAX);
                }
            }
        }
        let _ = ring.view.set_slot(s, slot);
        let next = ring.view.next(s);
        self.rings[r].hwtail = next;
    }

    /// Sends `[hwcur, head)` of TX ring `r` and completes it.
    fn send_tx(&mut self, r: usize) {
        let ring = &self.rings[r];
        let head = ring.view.head();
        if !ring.head_is_valid(head) {
            ring.reinit();
            self.stats.reinits += 1;
            return;
        }
        let to_host = ring.id == RingId::HostTx;
        let mut s = ring.hwcur;
        while s != head {
            let ring = &self.rings[r];
            let Ok(mut slot) = ring.view.slot(s) else {
                break;
            };
            if slot.flags & NS_BUF_CHANGED != 0 {
                self.stats.user_buf_changes += 1;
                slot.flags &= !NS_BUF_CHANGED;
            }
            let mut wire = self.wire.borrow_mut();
            let mut frame = wire.free.pop().unwrap_or_default();
            frame.clear();
            let copied = ring
                .view
                .read_buffer(slot.buf_idx, usize::from(slot.len), |bytes| {
                    frame.extend_from_slice(bytes)
                });
            if copied.is_err() {
                self.stats.bad_user_slots += 1;
                wire.free.push(frame);
            } else if to_host {
                self.host_inbox.push_back(frame);
                self.stats.to_host_stack += 1;
            } else {
                let queue = &mut wire.toward[self.side.peer().index()];
                if queue.len() >= self.config.wire_queue_limit {
                    self.stats.wire_dropped += 1;
                    wire.free.push(frame);
                } else {
                    queue.push_back(frame);
                    self.stats.wire_sent += 1;
                }
            }
            drop(wire);
            if self.config.swap_buffers
                && copied.is_ok()
                && let Some(spare) = self.spares.pop_front()
            {
                self.spares.push_back(slot.buf_idx);
                slot.buf_idx = spare;
                slot.flags |= NS_BUF_CHANGED;
                self.stats.kernel_swaps += 1;
            }
            let _ = ring.view.set_slot(s, slot);
            s = ring.view.next(s);
        }
        let ring = &mut self.rings[r];
        ring.hwcur = head;
        if !self.tx_paused {
            // Everything sent has completed: all slots but the one before head are free.
            ring.hwtail = if head == 0 {
                ring.view.num_slots() - 1
            } else {
                head - 1
            };
        }
        ring.view.set_tail(ring.hwtail);
    }

    fn any_rx_ready(&self) -> bool {
        self.rings
            .iter()
            .filter(|r| r.bound && !r.id.is_tx())
            .any(|r| r.view.user_span().is_some_and(|(_, n)| n > 0))
    }
}

// SAFETY: the region returned by `register` is `memory`, a heap block owned by the port and
// freed only when the port drops. The fake kernel writes only kernel-owned slots (`[hwtail,
// hwcur)` on RX, `[hwcur, head)` while sending on TX), their buffers and `tail`, and only inside
// `rx_sync`, `tx_sync` and `poll`.
unsafe impl NetmapPort for EmulatedPort {
    fn register(&mut self, iface: &str, mode: RegisterMode) -> Result<Registration, DriverError> {
        if self.mode.is_some() {
            return Err(DriverError::Setup(
                "netmap: this descriptor is already registered".to_string(),
            ));
        }
        if iface.is_empty() || iface.len() >= IFNAMSIZ {
            return Err(DriverError::NoInterface(format!(
                "netmap: bad interface name {iface:?}"
            )));
        }
        if let RegisterMode::OneNic(q) = mode
            && u32::from(q) >= self.layout().rx_rings
        {
            return Err(DriverError::Setup(format!(
                "netmap: cannot register netmap:{iface}{mode}: the interface has {} queues",
                self.layout().rx_rings
            )));
        }
        self.memory.write_interface(iface);
        self.memory.bind(|id| Self::is_bound(mode, id));
        for ring in &mut self.rings {
            ring.bound = Self::is_bound(mode, ring.id);
        }
        self.mode = Some(mode);
        debug_assert!(size_of::<netmap_if>() <= self.layout().if_obj_size);
        Ok(Registration {
            region: self.memory.region(),
            nifp_offset: self.layout().nifp_offset,
            interface_mtu: Some(self.config.mtu),
        })
    }

    fn rx_sync(&mut self) -> io::Result<()> {
        if self.mode.is_none() {
            return Err(Self::not_registered());
        }
        self.stats.rx_syncs += 1;
        self.sync_rx_rings();
        Ok(())
    }

    fn tx_sync(&mut self) -> io::Result<()> {
        if self.mode.is_none() {
            return Err(Self::not_registered());
        }
        self.stats.tx_syncs += 1;
        for r in 0..self.rings.len() {
            if self.rings[r].bound && self.rings[r].id.is_tx() {
                self.send_tx(r);
            }
        }
        Ok(())
    }

    /// Syncs the RX rings and reports whether a frame is waiting; never sleeps.
    fn poll(&mut self, _timeout: Duration) -> io::Result<bool> {
        if self.mode.is_none() {
            return Err(Self::not_registered());
        }
        self.stats.polls += 1;
        self.sync_rx_rings();
        Ok(self.any_rx_ready())
    }
}

impl EmulatedPort {
    /// The kernel half of `NIOCRXSYNC`: reclaim released slots, then fill free ones.
    fn sync_rx_rings(&mut self) {
        let rx: Vec<usize> = (0..self.rings.len())
            .filter(|&r| self.rings[r].bound && !self.rings[r].id.is_tx())
            .collect();
        for &r in &rx {
            self.reclaim_rx(r);
        }
        // NIC rings: frames from the wire, in order; stop at the first whose ring is full.
        loop {
            let frame = {
                let mut wire = self.wire.borrow_mut();
                let queue = &mut wire.toward[self.side.index()];
                match queue.front() {
                    None => break,
                    Some(f) if f.len() > self.layout().buf_size as usize => {
                        // Longer than a buffer: a NIC without multi-slot support drops it.
                        if let Some(f) = queue.pop_front() {
                            wire.free.push(f);
                        }
                        self.stats.wire_dropped += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                let Some(r) = queue.front().and_then(|f| self.rx_ring_for(f)) else {
                    break;
                };
                if !self.rings[r].has_free_rx_slot() {
                    break;
                }
                queue.pop_front().map(|f| (r, f))
            };
            let Some((r, frame)) = frame else { break };
            self.fill_rx(r, &frame, true);
            self.stats.rx_published += 1;
            self.wire.borrow_mut().free.push(frame);
        }
        // The host RX ring: what the host stack sent.
        if let Some(r) = rx
            .iter()
            .copied()
            .find(|&r| self.rings[r].id == RingId::HostRx)
        {
            while self.rings[r].has_free_rx_slot() {
                let Some(frame) = self.host_outbox.pop_front() else {
                    break;
                };
                if frame.len() > self.layout().buf_size as usize {
                    continue;
                }
                self.fill_rx(r, &frame, false);
                self.stats.from_host_stack += 1;
            }
        }
        for &r in &rx {
            let ring = &self.rings[r];
            ring.view.set_tail(ring.hwtail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_follow_one_another_and_rings_fit_their_objects() {
        let layout = EmulatedLayout::new(&EmulatedConfig::default());
        assert_eq!(layout.ring_offsets.len(), 4);
        assert!(layout.nifp_offset + netmap_if_bytes(1, 1) <= layout.ring_pool_offset);
        assert!(netmap_ring_bytes(256) <= layout.ring_obj_size);
        // RX rings are allocated first, so the host RX ring precedes TX ring 0.
        assert!(layout.ring_offsets[3] < layout.ring_offsets[0]);
        assert_eq!(
            layout.buf_pool_offset,
            layout.ring_pool_offset + 4 * layout.ring_obj_size
        );
        assert_eq!(layout.buf_count, 2 + 4 * 256 + 64);
        assert_eq!(
            layout.len,
            layout.buf_pool_offset + layout.buf_count as usize * 2048
        );
    }

    #[test]
    fn a_fresh_pair_accounts_for_every_buffer() {
        let (a, b) = EmulatedNetmap::port_pair(EmulatedConfig {
            num_slots: 16,
            ..EmulatedConfig::default()
        });
        a.check_buffers().unwrap();
        b.check_buffers().unwrap();
    }

    #[test]
    fn syncs_before_registration_fail() {
        let (mut a, _b) = EmulatedNetmap::port_pair(EmulatedConfig::default());
        assert!(a.rx_sync().is_err());
        assert!(a.tx_sync().is_err());
        a.register("emu-a", RegisterMode::AllNic).unwrap();
        assert!(a.register("emu-a", RegisterMode::AllNic).is_err());
        assert!(a.rx_sync().is_ok());
    }

    #[test]
    fn a_head_beyond_tail_makes_the_kernel_reinit_the_ring() {
        let (mut a, _b) = EmulatedNetmap::port_pair(EmulatedConfig {
            num_slots: 8,
            ..EmulatedConfig::default()
        });
        a.register("emu-a", RegisterMode::AllNic).unwrap();
        let rx = a.layout().rx_ring_index(0);
        // Nothing received, yet user space "releases" three slots.
        a.rings[rx].view.set_head_cur(3);
        a.rx_sync().unwrap();
        assert_eq!(a.stats().reinits, 1);
        assert_eq!(a.rings[rx].view.head(), 0);
    }
}
