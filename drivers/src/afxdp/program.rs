//! The two XDP programs the driver loads, built as eBPF instruction arrays.
//!
//! - [`redirect_all`]: every frame on the queue goes to the AF_XDP socket in the XSKMAP slot
//!   for that queue (6 instructions, the `ld_imm64` counting as two).
//! - [`redirect_server`]: only the frames [`Filter::Server`](crate::Filter::Server) gives the
//!   server go to the socket (ARP for and IPv4 to its IPv4 address, IPv6 to its IPv6
//!   addresses, Neighbor Solicitations for them); everything else is `XDP_PASS`ed to the
//!   kernel, which keeps serving SSH and the rest of the NIC. `Filter::accepts` is the same
//!   rule in Rust, and the tests hold the two to the same verdicts.
//!
//! Both fall back to `XDP_PASS` when the map slot is empty (the flags argument of
//! `bpf_redirect_map`). Every packet load in the filter is preceded by a `data + n > data_end`
//! check on the same register, which is what the verifier requires.
//!
//! Jumps are written against labels and resolved by [`Asm::finish`]; the tests run both
//! programs on a small interpreter over real frame bytes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use super::if_xdp::XDP_PASS;
use crate::ServerAddresses;
use crate::filter::{
    ICMPV6_NEIGHBOR_SOLICITATION, IPV6_DST_OFFSET, IPV6_NEXT_HEADER_OFFSET, IPV6_PAYLOAD_OFFSET,
    ND_HOP_LIMIT, NEXT_HEADER_ICMPV6, NS_TARGET_OFFSET, SOLICITED_NODE_PREFIX,
};

/// One eBPF instruction, laid out as `struct bpf_insn` (linux/bpf.h) on a little-endian CPU:
/// the destination register in the low nibble of `regs`, the source in the high nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    #[cfg(test)]
    pub(crate) fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    #[cfg(test)]
    pub(crate) fn src(&self) -> u8 {
        self.regs >> 4
    }
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
/// Where [`emit_load_ipv6`] puts the four words of an IPv6 address.
const IPV6_WORD_REGS: [u8; 4] = [R4, R5, R7, R8];

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

pub(crate) const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
pub(crate) const LDX_H: u8 = BPF_LDX | BPF_MEM | BPF_H;
pub(crate) const LDX_B: u8 = BPF_LDX | BPF_MEM | BPF_B;
pub(crate) const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
pub(crate) const MOV64_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
pub(crate) const MOV64_X: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
pub(crate) const ADD64_K: u8 = BPF_ALU64 | BPF_ADD | BPF_K;
pub(crate) const JA: u8 = BPF_JMP | BPF_JA;
pub(crate) const JGT_X: u8 = BPF_JMP | BPF_JGT | BPF_X;
pub(crate) const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
/// 32-bit compare: an IPv4 address loaded as a `u32` may have its top bit set, and a 64-bit
/// compare would sign-extend the immediate.
pub(crate) const JNE32_K: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
pub(crate) const CALL: u8 = BPF_JMP | BPF_CALL;
pub(crate) const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// `src_reg` of an `ld_imm64` whose immediate is a map file descriptor.
pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Helper number of `bpf_redirect_map(map, key, flags)`.
pub(crate) const HELPER_REDIRECT_MAP: i32 = 51;

// Offsets in `struct xdp_md`.
const XDP_MD_DATA: i16 = 0;
const XDP_MD_DATA_END: i16 = 4;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Frame layout.
const ETH_TYPE: i16 = 12;
const ETH_HEADER: i32 = 14;
/// Ethernet + the fixed IPv4 header.
const IPV4_MIN: i32 = ETH_HEADER + 20;
const IPV4_DST: i16 = 14 + 16;
/// Ethernet + ARP for IPv4 over Ethernet.
const ARP_LEN: i32 = ETH_HEADER + 28;
const ARP_TARGET_IP: i16 = 14 + 24;
/// EtherTypes as a little-endian CPU sees them after a 16-bit load of the big-endian field.
const ETHERTYPE_IPV4_LOADED: i32 = u16::from_le_bytes(0x0800u16.to_be_bytes()) as i32;
const ETHERTYPE_ARP_LOADED: i32 = u16::from_le_bytes(0x0806u16.to_be_bytes()) as i32;
const ETHERTYPE_IPV6_LOADED: i32 = u16::from_le_bytes(0x86ddu16.to_be_bytes()) as i32;
/// Ethernet + the fixed IPv6 header.
const IPV6_MIN: i32 = IPV6_PAYLOAD_OFFSET as i32;
const IPV6_DST: i16 = IPV6_DST_OFFSET as i16;
const IPV6_NEXT_HEADER: i16 = IPV6_NEXT_HEADER_OFFSET as i16;
/// Next header (ICMPv6) and hop limit (255) of a Neighbor Solicitation, as one 16-bit load.
const ND_NEXT_HEADER_HOP_LIMIT_LOADED: i32 =
    u16::from_le_bytes([NEXT_HEADER_ICMPV6, ND_HOP_LIMIT]) as i32;
/// The first 12 bytes of a solicited-node group as three 32-bit loads; byte 12 (`ff`) is
/// loaded alone.
const SOLICITED_NODE_WORDS_LOADED: [i32; 3] = [
    word_loaded(&SOLICITED_NODE_PREFIX, 0),
    word_loaded(&SOLICITED_NODE_PREFIX, 4),
    word_loaded(&SOLICITED_NODE_PREFIX, 8),
];
const SOLICITED_NODE_BYTE_12: i16 = IPV6_DST + 12;
const ICMPV6_TYPE: i16 = IPV6_PAYLOAD_OFFSET as i16;
const NS_TARGET: i16 = NS_TARGET_OFFSET as i16;
/// Ethernet + IPv6 + a Neighbor Solicitation up to the end of its target address.
const NS_MIN: i32 = NS_TARGET_OFFSET as i32 + 16;

/// The four bytes at `at` as a 32-bit load on a little-endian CPU sees them.
const fn word_loaded(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A jump target inside an [`Asm`] program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// A tiny assembler: instructions in order, jumps to labels fixed up at the end.
#[derive(Debug, Default)]
pub(crate) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub(crate) fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    pub(crate) fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn::new(code, dst, src, off, imm));
    }

    pub(crate) fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.push(code, dst, src, 0, imm);
    }

    /// `dst = map fd`, as the two-slot `ld_imm64` the loader rewrites into a map pointer.
    pub(crate) fn load_map_fd(&mut self, dst: u8, map_fd: RawFd) {
        self.push(LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, map_fd);
        self.push(0, 0, 0, 0, 0);
    }

    /// Resolves the jumps. Panics on an unplaced label or an offset that does not fit: both
    /// are bugs in the fixed programs below, caught by their tests.
    pub(crate) fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label.0].expect("every jump label is placed");
            let off = target as isize - (at as isize + 1);
            self.insns[at].off = i16::try_from(off).expect("jump offset fits in i16");
        }
        self.insns
    }
}

/// `bpf_redirect_map(map, ctx->rx_queue_index, XDP_PASS)`: the tail both programs share.
fn emit_redirect(asm: &mut Asm, queue_reg: u8, map_fd: RawFd) {
    if queue_reg != R2 {
        asm.push(MOV64_X, R2, queue_reg, 0, 0);
    }
    asm.load_map_fd(R1, map_fd);
    asm.push(MOV64_K, R3, 0, 0, XDP_PASS);
    asm.push(CALL, 0, 0, 0, HELPER_REDIRECT_MAP);
    asm.push(EXIT, 0, 0, 0, 0);
}

/// Redirects every frame of the queue to the socket in `map_fd[rx_queue_index]`.
pub(crate) fn redirect_all(map_fd: RawFd) -> Vec<Insn> {
    let mut asm = Asm::default();
    asm.push(LDX_W, R2, R1, XDP_MD_RX_QUEUE_INDEX, 0);
    emit_redirect(&mut asm, R2, map_fd);
    asm.finish()
}

/// Redirects the frames [`Filter::Server`](crate::Filter::Server) gives the server (ARP for
/// and IPv4 to its IPv4 address, IPv6 to one of its IPv6 addresses, Neighbor Solicitations
/// for one of them); passes everything else to the kernel.
///
/// Each IPv6 address is compared as four 32-bit words against immediates: one unrolled block
/// per address for the destination, and another for a solicitation's target, which is why
/// [`ServerAddresses::check`] bounds their number. An empty family compiles to nothing but a
/// jump to `pass`.
pub(crate) fn redirect_server(map_fd: RawFd, server: &ServerAddresses) -> Vec<Insn> {
    let mut asm = Asm::default();
    let pass = asm.label();
    let not_ipv4 = asm.label();
    let not_arp = asm.label();
    let redirect = asm.label();

    // r6 = queue (survives to the call); r2 = data; r3 = data_end.
    asm.push(LDX_W, R6, R1, XDP_MD_RX_QUEUE_INDEX, 0);
    asm.push(LDX_W, R2, R1, XDP_MD_DATA, 0);
    asm.push(LDX_W, R3, R1, XDP_MD_DATA_END, 0);

    // Ethernet + minimal IPv4 header present? (Shorter frames cannot be for us.)
    emit_bounds_check(&mut asm, IPV4_MIN, pass);
    asm.push(LDX_H, R5, R2, ETH_TYPE, 0);

    asm.jump(JNE_K, R5, 0, ETHERTYPE_IPV4_LOADED, not_ipv4);
    match server.ipv4 {
        Some(ip) => {
            asm.push(LDX_W, R4, R2, IPV4_DST, 0);
            asm.jump(JNE32_K, R4, 0, ipv4_loaded(ip), pass);
            asm.jump(JA, 0, 0, 0, redirect);
        }
        None => asm.jump(JA, 0, 0, 0, pass),
    }

    asm.bind(not_ipv4);
    asm.jump(JNE_K, R5, 0, ETHERTYPE_ARP_LOADED, not_arp);
    match server.ipv4 {
        Some(ip) => {
            emit_bounds_check(&mut asm, ARP_LEN, pass);
            asm.push(LDX_W, R4, R2, ARP_TARGET_IP, 0);
            asm.jump(JNE32_K, R4, 0, ipv4_loaded(ip), pass);
            asm.jump(JA, 0, 0, 0, redirect);
        }
        None => asm.jump(JA, 0, 0, 0, pass),
    }

    asm.bind(not_arp);
    asm.jump(JNE_K, R5, 0, ETHERTYPE_IPV6_LOADED, pass);
    if !server.ipv6.is_empty() {
        // Destination address: one of ours?
        emit_bounds_check(&mut asm, IPV6_MIN, pass);
        emit_load_ipv6(&mut asm, IPV6_DST);
        emit_match_ipv6(&mut asm, &server.ipv6, redirect);
        // Or a Neighbor Solicitation to a solicited-node group (the words of the destination
        // are still in r4, r5, r7, r8) with one of ours as its target?
        asm.push(LDX_H, R9, R2, IPV6_NEXT_HEADER, 0);
        asm.jump(JNE_K, R9, 0, ND_NEXT_HEADER_HOP_LIMIT_LOADED, pass);
        let [w0, w1, w2] = SOLICITED_NODE_WORDS_LOADED;
        asm.jump(JNE32_K, R4, 0, w0, pass);
        asm.jump(JNE32_K, R5, 0, w1, pass);
        asm.jump(JNE32_K, R7, 0, w2, pass);
        asm.push(LDX_B, R9, R2, SOLICITED_NODE_BYTE_12, 0);
        asm.jump(JNE_K, R9, 0, 0xff, pass);
        emit_bounds_check(&mut asm, NS_MIN, pass);
        asm.push(LDX_B, R9, R2, ICMPV6_TYPE, 0);
        asm.jump(JNE_K, R9, 0, i32::from(ICMPV6_NEIGHBOR_SOLICITATION), pass);
        emit_load_ipv6(&mut asm, NS_TARGET);
        emit_match_ipv6(&mut asm, &server.ipv6, redirect);
    }
    asm.jump(JA, 0, 0, 0, pass);

    asm.bind(redirect);
    emit_redirect(&mut asm, R6, map_fd);

    asm.bind(pass);
    asm.push(MOV64_K, R0, 0, 0, XDP_PASS);
    asm.push(EXIT, 0, 0, 0, 0);
    asm.finish()
}

/// The address as the CPU sees it after a 32-bit load of the big-endian field.
fn ipv4_loaded(addr: Ipv4Addr) -> i32 {
    i32::from_le_bytes(addr.octets())
}

/// `if data + len > data_end goto pass`, through r4: every packet load after it reads below
/// `data + len`, which is what the verifier checks.
fn emit_bounds_check(asm: &mut Asm, len: i32, pass: Label) {
    asm.push(MOV64_X, R4, R2, 0, 0);
    asm.push(ADD64_K, R4, 0, 0, len);
    asm.jump(JGT_X, R4, R3, 0, pass);
}

/// The 16 bytes at `data + off` as four 32-bit words in r4, r5, r7, r8.
fn emit_load_ipv6(asm: &mut Asm, off: i16) {
    for (k, reg) in IPV6_WORD_REGS.into_iter().enumerate() {
        asm.push(LDX_W, reg, R2, off + 4 * k as i16, 0);
    }
}

/// `goto hit` if the words in r4, r5, r7, r8 are one of `addrs`; falls through otherwise.
fn emit_match_ipv6(asm: &mut Asm, addrs: &[Ipv6Addr], hit: Label) {
    for addr in addrs {
        let next = asm.label();
        for (chunk, reg) in addr.octets().chunks_exact(4).zip(IPV6_WORD_REGS) {
            let word = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            asm.jump(JNE32_K, reg, 0, word, next);
        }
        asm.jump(JA, 0, 0, 0, hit);
        asm.bind(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{
        CLIENT6, KERNEL6, LINK_LOCAL6, SERVER6, ipv6_frame, nd_message, solicitation,
        solicited_node, tcp6_to,
    };
    use crate::{Filter, MAX_SERVER_IPV6};

    const MAP_FD: RawFd = 7;
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// What a program did with a frame.
    #[derive(Debug, PartialEq, Eq)]
    enum Verdict {
        Pass,
        Redirect {
            map_fd: RawFd,
            key: u64,
            fallback: u64,
        },
    }

    // A fake address space: the context and the packet live at fixed, distinct bases.
    const CTX_BASE: u64 = 0x1000_0000;
    const PKT_BASE: u64 = 0x2000_0000;
    const MAP_TAG: u64 = 0x3000_0000;

    /// Runs the subset of eBPF the programs use. Panics on anything the verifier would refuse
    /// at run time: a packet load outside `data .. data_end`, an unknown opcode, a jump out of
    /// the program, reading a register never written.
    fn run(prog: &[Insn], frame: &[u8], queue: u32) -> Verdict {
        let mut ctx = [0u8; 24];
        ctx[0..4].copy_from_slice(&(PKT_BASE as u32).to_le_bytes());
        ctx[4..8].copy_from_slice(&((PKT_BASE + frame.len() as u64) as u32).to_le_bytes());
        ctx[16..20].copy_from_slice(&queue.to_le_bytes());
        let mut regs: [Option<u64>; 11] = [None; 11];
        regs[1] = Some(CTX_BASE);
        regs[10] = Some(0x4000_0000);
        let mut redirected = None;
        let mut pc = 0usize;
        let reg = |regs: &[Option<u64>; 11], r: u8| {
            regs[r as usize].expect("register read before written")
        };
        for _ in 0..1000 {
            let insn = prog[pc];
            pc += 1;
            let (dst, src) = (insn.dst(), insn.src());
            let jump_if = |cond: bool, pc: &mut usize| {
                if cond {
                    *pc = (*pc as isize + insn.off as isize) as usize;
                    assert!(*pc < prog.len(), "jump out of the program");
                }
            };
            match insn.code {
                LDX_W | LDX_H | LDX_B => {
                    let size = match insn.code {
                        LDX_W => 4,
                        LDX_H => 2,
                        _ => 1,
                    };
                    let addr = reg(&regs, src).wrapping_add(insn.off as i64 as u64);
                    let bytes: &[u8] = if (CTX_BASE..CTX_BASE + 24).contains(&addr) {
                        &ctx[(addr - CTX_BASE) as usize..]
                    } else {
                        assert!(
                            addr >= PKT_BASE && addr + size <= PKT_BASE + frame.len() as u64,
                            "packet load at {addr:#x} outside the frame (pc {})",
                            pc - 1
                        );
                        &frame[(addr - PKT_BASE) as usize..]
                    };
                    let mut word = [0u8; 8];
                    word[..size as usize].copy_from_slice(&bytes[..size as usize]);
                    regs[dst as usize] = Some(u64::from_le_bytes(word));
                }
                LD_IMM64 => {
                    assert_eq!(src, BPF_PSEUDO_MAP_FD);
                    assert_eq!(prog[pc], Insn::new(0, 0, 0, 0, 0), "second ld_imm64 slot");
                    regs[dst as usize] = Some(MAP_TAG | insn.imm as u64);
                    pc += 1;
                }
                MOV64_K => regs[dst as usize] = Some(insn.imm as i64 as u64),
                MOV64_X => regs[dst as usize] = Some(reg(&regs, src)),
                ADD64_K => {
                    regs[dst as usize] = Some(reg(&regs, dst).wrapping_add(insn.imm as i64 as u64))
                }
                JA => jump_if(true, &mut pc),
                JGT_X => jump_if(reg(&regs, dst) > reg(&regs, src), &mut pc),
                JNE_K => jump_if(reg(&regs, dst) != insn.imm as i64 as u64, &mut pc),
                JNE32_K => jump_if(reg(&regs, dst) as u32 != insn.imm as u32, &mut pc),
                CALL => {
                    assert_eq!(insn.imm, HELPER_REDIRECT_MAP);
                    let map = reg(&regs, R1);
                    assert_eq!(map & !0xffff, MAP_TAG, "r1 holds the map");
                    redirected = Some(Verdict::Redirect {
                        map_fd: (map & 0xffff) as RawFd,
                        key: reg(&regs, R2),
                        fallback: reg(&regs, R3),
                    });
                    regs[0] = Some(4); // XDP_REDIRECT
                    // r1-r5 are clobbered by the call.
                    regs[1..=5].fill(None);
                }
                EXIT => {
                    let r0 = reg(&regs, R0);
                    return match redirected {
                        Some(v) => {
                            assert_eq!(r0, 4);
                            v
                        }
                        None => {
                            assert_eq!(r0, XDP_PASS as u64);
                            Verdict::Pass
                        }
                    };
                }
                other => panic!("opcode {other:#04x} not in the supported subset"),
            }
        }
        panic!("program did not exit");
    }

    fn redirect(queue: u64) -> Verdict {
        Verdict::Redirect {
            map_fd: MAP_FD,
            key: queue,
            fallback: XDP_PASS as u64,
        }
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 0, 1];
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&target.octets());
        ethernet(0x0806, &arp)
    }

    fn ipv4_to(dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0, 198, 18, 0, 1];
        ip.extend_from_slice(&dst.octets());
        ip.resize(20 + payload_len, 0);
        ethernet(0x0800, &ip)
    }

    /// Every jump lands inside the program and not on the second half of an `ld_imm64`;
    /// the program ends in `exit`.
    fn check_structure(prog: &[Insn]) {
        let second_halves: Vec<usize> = prog
            .iter()
            .enumerate()
            .filter(|(_, i)| i.code == LD_IMM64)
            .map(|(at, _)| at + 1)
            .collect();
        for (at, insn) in prog.iter().enumerate() {
            if matches!(insn.code, JA | JGT_X | JNE_K | JNE32_K) {
                let target = at as isize + 1 + insn.off as isize;
                assert!((0..prog.len() as isize).contains(&target), "jump at {at}");
                assert!(!second_halves.contains(&(target as usize)), "jump at {at}");
                assert!(insn.off >= 0, "no loops");
            }
        }
        assert_eq!(prog.last().map(|i| i.code), Some(EXIT));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // The verifier refuses a program with an instruction no path reaches.
        let mut reached = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(at) = todo.pop() {
            if at >= prog.len() || std::mem::replace(&mut reached[at], true) {
                continue;
            }
            let insn = prog[at];
            let target = (at as isize + 1 + insn.off as isize) as usize;
            match insn.code {
                EXIT => {}
                JA => todo.push(target),
                JGT_X | JNE_K | JNE32_K => todo.extend([at + 1, target]),
                LD_IMM64 => todo.push(at + 2),
                _ => todo.push(at + 1),
            }
        }
        for (at, reached) in reached.iter().enumerate() {
            assert!(
                *reached || second_halves.contains(&at),
                "instruction {at} is unreachable"
            );
        }
    }

    #[test]
    fn redirect_all_is_the_six_instruction_program() {
        let prog = redirect_all(MAP_FD);
        assert_eq!(prog.len(), 6);
        assert_eq!(prog[0], Insn::new(LDX_W, R2, R1, 16, 0));
        assert_eq!(
            prog[1],
            Insn::new(LD_IMM64, R1, BPF_PSEUDO_MAP_FD, 0, MAP_FD)
        );
        assert_eq!(prog[1].regs, 0x11);
        assert_eq!(prog[3], Insn::new(MOV64_K, R3, 0, 0, 2));
        assert_eq!(prog[4], Insn::new(0x85, 0, 0, 0, 51));
        assert_eq!(prog[5].code, 0x95);
        check_structure(&prog);
        assert_eq!(run(&prog, &[0u8; 60], 3), redirect(3));
        assert_eq!(run(&prog, &[], 0), redirect(0));
    }

    #[test]
    fn filter_redirects_only_traffic_for_the_server() {
        let prog = redirect_server(MAP_FD, &ServerAddresses::ipv4(SERVER));
        check_structure(&prog);
        let other = Ipv4Addr::new(198, 18, 0, 3);
        assert_eq!(run(&prog, &arp_request(SERVER), 0), redirect(0));
        assert_eq!(run(&prog, &arp_request(other), 0), Verdict::Pass);
        assert_eq!(run(&prog, &ipv4_to(SERVER, 8), 1), redirect(1));
        assert_eq!(
            run(&prog, &ipv4_to(SERVER, 0), 0),
            redirect(0),
            "34-byte frame"
        );
        assert_eq!(run(&prog, &ipv4_to(other, 8), 0), Verdict::Pass);
        // IPv6 and anything else stays with the kernel.
        assert_eq!(run(&prog, &ethernet(0x86dd, &[0; 60]), 0), Verdict::Pass);
    }

    #[test]
    fn filter_handles_addresses_with_the_top_bit_set() {
        // 198.18.1.200: the last octet becomes the top byte of the loaded u32.
        let high = Ipv4Addr::new(198, 18, 1, 200);
        let prog = redirect_server(MAP_FD, &ServerAddresses::ipv4(high));
        assert_eq!(run(&prog, &ipv4_to(high, 8), 0), redirect(0));
        assert_eq!(run(&prog, &arp_request(high), 0), redirect(0));
        assert_eq!(run(&prog, &ipv4_to(SERVER, 8), 0), Verdict::Pass);
    }

    #[test]
    fn filter_never_reads_past_a_short_frame() {
        let prog = redirect_server(MAP_FD, &ServerAddresses::ipv4(SERVER));
        let arp = arp_request(SERVER);
        let ip = ipv4_to(SERVER, 0);
        // `run` panics on an out-of-bounds load, so every truncation must simply pass.
        for len in 0..arp.len() {
            assert_eq!(
                run(&prog, &arp[..len], 0),
                Verdict::Pass,
                "ARP cut to {len}"
            );
        }
        for len in 0..ip.len() {
            assert_eq!(
                run(&prog, &ip[..len], 0),
                Verdict::Pass,
                "IPv4 cut to {len}"
            );
        }
    }

    fn dual_stack() -> ServerAddresses {
        ServerAddresses {
            ipv4: Some(SERVER),
            ipv6: vec![SERVER6, LINK_LOCAL6],
        }
    }

    #[test]
    fn ipv6_to_our_addresses_and_solicitations_for_them_are_redirected() {
        let prog = redirect_server(MAP_FD, &dual_stack());
        check_structure(&prog);
        // TCP to each of our addresses; to the kernel's and to another host's.
        assert_eq!(run(&prog, &tcp6_to(SERVER6), 2), redirect(2));
        assert_eq!(run(&prog, &tcp6_to(LINK_LOCAL6), 0), redirect(0));
        assert_eq!(run(&prog, &tcp6_to(KERNEL6), 0), Verdict::Pass);
        assert_eq!(run(&prog, &tcp6_to(CLIENT6), 0), Verdict::Pass);
        // NS to the solicited-node group, for us; for the kernel's address in the same group.
        assert_eq!(solicited_node(SERVER6), solicited_node(KERNEL6));
        assert_eq!(run(&prog, &solicitation(SERVER6), 1), redirect(1));
        assert_eq!(run(&prog, &solicitation(LINK_LOCAL6), 0), redirect(0));
        assert_eq!(run(&prog, &solicitation(KERNEL6), 0), Verdict::Pass);
        // A Neighbor Advertisement and an echo request to the group stay with the kernel;
        // an echo request to our address is ours.
        let group = solicited_node(SERVER6);
        let na = ipv6_frame(CLIENT6, group, 58, 255, &nd_message(136, SERVER6));
        assert_eq!(run(&prog, &na, 0), Verdict::Pass);
        let echo = nd_message(128, SERVER6);
        let echo_group = ipv6_frame(CLIENT6, group, 58, 64, &echo);
        assert_eq!(run(&prog, &echo_group, 0), Verdict::Pass);
        let echo_us = ipv6_frame(CLIENT6, SERVER6, 58, 64, &echo);
        assert_eq!(run(&prog, &echo_us, 0), redirect(0));
        // IPv4 and ARP still work beside it.
        assert_eq!(run(&prog, &ipv4_to(SERVER, 8), 0), redirect(0));
        assert_eq!(run(&prog, &arp_request(SERVER), 0), redirect(0));
        assert_eq!(
            run(&prog, &ipv4_to(Ipv4Addr::new(198, 18, 0, 3), 8), 0),
            Verdict::Pass
        );
    }

    #[test]
    fn ipv6_frames_cut_short_pass_without_a_load_past_the_end() {
        let prog = redirect_server(MAP_FD, &dual_stack());
        // The rule reads up to the end of the fixed header, or of the solicitation's target;
        // the source link-layer option after it is the stack's business.
        for (frame, needed) in [(solicitation(SERVER6), 78), (tcp6_to(SERVER6), 54)] {
            for len in 0..frame.len() {
                let expected = if len >= needed {
                    redirect(0)
                } else {
                    Verdict::Pass
                };
                assert_eq!(run(&prog, &frame[..len], 0), expected, "cut to {len}");
            }
        }
    }

    /// Frames that probe every branch of the filter: each address family, every field the
    /// rule looks at changed one at a time, and every truncation of each.
    fn probe_frames() -> Vec<Vec<u8>> {
        let others = [KERNEL6, CLIENT6, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)];
        let mut frames = vec![
            ipv4_to(SERVER, 8),
            ipv4_to(Ipv4Addr::new(198, 18, 1, 200), 8),
            arp_request(SERVER),
            arp_request(Ipv4Addr::new(198, 18, 0, 3)),
            ethernet(0x86dd, &[0; 60]),
            ethernet(0x88cc, &[0; 60]),
        ];
        for addr in [SERVER6, LINK_LOCAL6].into_iter().chain(others) {
            frames.push(tcp6_to(addr));
            frames.push(solicitation(addr));
        }
        let ns = solicitation(SERVER6);
        for (at, value) in [
            (20, 6),    // next header TCP
            (21, 64),   // hop limit
            (38, 0xfe), // group byte 0
            (41, 1),    // group byte 3
            (46, 0),    // group byte 8
            (49, 0),    // group byte 11
            (50, 0xfe), // group byte 12
            (54, 136),  // type: Neighbor Advertisement
            (62, 0x20), // target byte 0
            (77, 3),    // target byte 15
        ] {
            let mut f = ns.clone();
            f[at] = value;
            frames.push(f);
        }
        let whole = frames.clone();
        for f in &whole {
            for len in 0..f.len() {
                frames.push(f[..len].to_vec());
            }
        }
        frames
    }

    #[test]
    fn program_and_filter_accepts_agree_on_every_probe() {
        let sets = [
            ServerAddresses::ipv4(SERVER),
            dual_stack(),
            ServerAddresses {
                ipv4: None,
                ipv6: vec![SERVER6],
            },
            ServerAddresses {
                ipv4: Some(Ipv4Addr::new(198, 18, 1, 200)),
                ipv6: vec![
                    LINK_LOCAL6,
                    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10),
                    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                    SERVER6,
                ],
            },
        ];
        let frames = probe_frames();
        for set in sets {
            set.check().unwrap();
            let prog = redirect_server(MAP_FD, &set);
            check_structure(&prog);
            let filter = Filter::Server(set.clone());
            let mut taken = 0;
            for frame in &frames {
                let expected = if filter.accepts(frame) {
                    taken += 1;
                    redirect(0)
                } else {
                    Verdict::Pass
                };
                assert_eq!(run(&prog, frame, 0), expected, "{set:?} on {frame:02x?}");
            }
            assert!(taken > 0, "{set:?} takes some probes");
        }
    }

    #[test]
    fn the_largest_address_set_matches_each_address() {
        let addrs: Vec<Ipv6Addr> = (1..=MAX_SERVER_IPV6 as u16)
            .map(|k| Ipv6Addr::new(0x2001, 2, 0, 0, k, 0, 0, 2))
            .collect();
        let set = ServerAddresses {
            ipv4: None,
            ipv6: addrs.clone(),
        };
        let prog = redirect_server(MAP_FD, &set);
        check_structure(&prog);
        for addr in &addrs {
            assert_eq!(run(&prog, &tcp6_to(*addr), 0), redirect(0), "{addr}");
            assert_eq!(run(&prog, &solicitation(*addr), 0), redirect(0), "{addr}");
        }
        // All share one solicited-node group; a fifth address in it is not ours.
        let stranger = Ipv6Addr::new(0x2001, 2, 0, 0, 9, 0, 0, 2);
        assert_eq!(run(&prog, &solicitation(stranger), 0), Verdict::Pass);
        // No IPv4 address: IPv4 and ARP go to the kernel whatever their target.
        assert_eq!(run(&prog, &ipv4_to(SERVER, 8), 0), Verdict::Pass);
        assert_eq!(run(&prog, &arp_request(SERVER), 0), Verdict::Pass);
    }

    #[test]
    #[should_panic(expected = "every jump label is placed")]
    fn an_unplaced_label_is_caught() {
        let mut asm = Asm::default();
        let nowhere = asm.label();
        asm.jump(JA, 0, 0, 0, nowhere);
        let _ = asm.finish();
    }
}
