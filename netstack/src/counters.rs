//! Stack-wide event and drop counters.
//!
//! Owns [`StackCounters`]: plain `u64` fields, bumped on the data path with no atomics and no
//! allocation, read by a stats reporter through [`StackCounters::fields`]. Invariant: every frame
//! the stack does not use is counted in exactly one `drop_*` field, so
//! [`StackCounters::total_dropped`] is the number of received frames thrown away.

macro_rules! define_counters {
    (
        events { $( $(#[doc = $edoc:literal])* $event:ident, )* }
        drops { $( $(#[doc = $ddoc:literal])* $drop:ident, )* }
    ) => {
        /// Counters of a [`crate::Stack`]. Events first, then `drop_*` reasons.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct StackCounters {
            $( $(#[doc = $edoc])* pub $event: u64, )*
            $( $(#[doc = $ddoc])* pub $drop: u64, )*
        }

        impl StackCounters {
            /// Sum of all `drop_*` counters.
            pub fn total_dropped(&self) -> u64 {
                0 $( + self.$drop )*
            }

            /// Every counter as `(name, value)`, in declaration order, for a stats printer.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
                [
                    $( (stringify!($event), self.$event), )*
                    $( (stringify!($drop), self.$drop), )*
                ]
                .into_iter()
            }

            /// What the counter `name` counts: its documentation above, as one line (with its
            /// rustdoc markup), for a metrics exporter's help text. `None` for an unknown name.
            pub fn help(name: &str) -> Option<&'static str> {
                match name {
                    $( stringify!($event) => Some(concat!($($edoc),*)), )*
                    $( stringify!($drop) => Some(concat!($($ddoc),*)), )*
                    _ => None,
                }
            }
        }

        /// Adds every counter of another stack, e.g. to total the engines of a multi-queue
        /// server. Gauges (`syn_cache_entries`) add up to the gauge of the whole.
        impl core::ops::AddAssign<&StackCounters> for StackCounters {
            fn add_assign(&mut self, other: &StackCounters) {
                $( self.$event += other.$event; )*
                $( self.$drop += other.$drop; )*
            }
        }
    };
}

define_counters! {
    events {
        /// Frames passed to `handle_frame`.
        rx_frames,
        /// Frames written into the `TxSink`.
        tx_frames,
        /// Frames a cell built while the sink refused them (the sink lied about `has_room`);
        /// TCP retransmits them.
        tx_refused,
        /// ARP replies staged.
        arp_replies,
        /// ICMP echo replies staged.
        icmp_echo_replies,
        /// ICMPv6 echo replies staged.
        icmpv6_echo_replies,
        /// Neighbor Advertisements staged: answers to solicitations for our addresses,
        /// defences against duplicate address detection probes, and the unsolicited ones sent
        /// at start.
        ndp_adverts_sent,
        /// Neighbor Advertisements from another node for one of our IPv6 addresses: a
        /// duplicate address on the link. Not answered; the frame is counted here, in no
        /// `drop_*` counter.
        ndp_address_conflicts,
        /// SYNs for new connections, answered with a SYN-ACK (from the SYN cache or a cookie).
        syn_received,
        /// Handshakes that completed and got a cell.
        syn_accepted,
        /// Completed handshakes refused with RST because all `max_connections` cells were in
        /// use and no keep-alive connection was idle.
        syn_refused_full,
        /// SYNs and completed handshakes refused with RST because the server is stopping
        /// ([`crate::Stack::begin_drain`]).
        syn_refused_draining,
        /// Half-open connections in the SYN cache now (a gauge, not a count of events).
        syn_cache_entries,
        /// SYNs that found the SYN cache full and were answered with a cookie alone.
        syn_cache_overflow,
        /// SYN-ACKs sent with no SYN-cache entry behind them: the cookie is all the state.
        syncookies_sent,
        /// Final ACKs with no SYN-cache entry that opened a connection through their cookie.
        syncookies_valid,
        /// ACKs for no known flow whose cookie did not validate (stray, forged or expired);
        /// also counted in `drop_tcp_no_flow`.
        syncookies_invalid,
        /// SYN-ACKs sent again, on the retransmission schedule or for a repeated SYN.
        synack_retransmits,
        /// Handshakes in the SYN cache ended by the peer's exact RST.
        handshake_resets,
        /// Challenge ACKs sent (RFC 5961): to an RST or SYN not exactly in sequence, an
        /// unacceptable ACK, an out-of-window segment.
        challenge_acks,
        /// Challenge ACKs not sent because the host-wide limit (`challenge_ack_limit` a second)
        /// was reached.
        challenge_acks_limited,
        /// Completed handshakes refused with RST because the peer's address already had
        /// `max_connections_per_ip` connections.
        conn_limit_per_ip,
        /// Idle keep-alive connections closed (with RST) to free a cell for a new one.
        idle_evicted,
        /// RSTs we chose to send: for unknown flows and closed ports, and aborts on timeouts.
        rst_sent,
        /// Cells returned to the pool.
        connections_closed,
        /// Half-open connections dropped from the SYN cache after `handshake_timeout`.
        handshake_timeouts,
        /// Established connections reset after `idle_timeout` without a segment from the peer.
        idle_timeouts,
        /// Replies lost because the front end's reply queue was full.
        tx_staging_full,
        /// Connections we closed first that left a TIME-WAIT tombstone (and freed their cell).
        time_wait_entered,
        /// ACKs sent from a tombstone: for a retransmitted FIN (RFC 9293 §3.10.7.4), for stray
        /// data, or a challenge ACK for an old SYN.
        time_wait_acks,
        /// Tombstones dropped before expiry because the ring was full (`time_wait_slots`).
        time_wait_evicted,
        /// Tombstones ended early: a new SYN above the old sequence space took the flow over,
        /// or an exact RST closed it (RFC 9293 §3.10.7.4).
        time_wait_ended,
        /// Cells lent to the application or run for egress: the work the loop did per cell.
        cell_polls,
        /// Cells run because their timer-wheel deadline was due.
        timer_fires,
        /// Data segments (or FINs) sent again, tail loss probes included.
        tcp_retransmits,
        /// Retransmission timeouts: the losses loss recovery could not find from ACKs.
        tcp_timeouts,
        /// Fast-recovery episodes: losses found from ACKs (RACK, SACK, duplicate ACKs).
        tcp_fast_recoveries,
        /// Tail loss probes sent (RFC 8985 §7).
        tcp_loss_probes,
        /// Fast recoveries undone because what they retransmitted had arrived (reordering).
        tcp_spurious_recoveries,
        /// Path MTU reports (ICMPv4 Fragmentation Needed, ICMPv6 Packet Too Big) that lowered
        /// a connection's MSS: what it had in flight was resent in smaller segments.
        pmtu_lowered,
    }
    drops {
        /// Shorter than an Ethernet header.
        drop_eth_truncated,
        /// Destination MAC is neither ours nor broadcast.
        drop_eth_not_for_us,
        /// Source MAC is broadcast or multicast.
        drop_eth_bad_source,
        /// Neither IPv4, ARP nor IPv6 (VLAN tags included).
        drop_ethertype_unknown,
        /// IPv6 frames while we serve no IPv6 address.
        drop_ipv6,
        /// Bad IPv6 header: too short, version, payload length past the frame.
        drop_ipv6_malformed,
        /// IPv6 source is multicast, or ours (but on a Neighbor Advertisement), or unspecified
        /// (but on a duplicate address detection probe).
        drop_ipv6_bad_source,
        /// IPv6 destination is a unicast address not ours, or the frame went to an Ethernet
        /// group that does not match its IPv6 destination.
        drop_ipv6_not_for_us,
        /// IPv6 to a multicast group: one we do not listen to, or (for anything but neighbor
        /// discovery) one we do, such as an echo request to a group.
        drop_ipv6_multicast,
        /// IPv6 extension headers we may not skip: malformed, an option whose type says
        /// discard, a hop-by-hop header not first, routing type 0 (RFC 5095) or a routing
        /// header with segments left.
        drop_ipv6_ext_header,
        /// TCP behind IPv6 extension headers other than one hop-by-hop header (the cells'
        /// smoltcp skips no others).
        drop_ipv6_ext_tcp,
        /// IPv6 fragments (no reassembly).
        drop_ipv6_fragment,
        /// ARP that does not parse as Ethernet/IPv4 or has a non-unicast sender.
        drop_arp_malformed,
        /// ARP request for another address.
        drop_arp_not_for_us,
        /// ARP replies and unknown operations: we learn nothing from ARP.
        drop_arp_other,
        /// Bad IPv4 header: version, lengths.
        drop_ipv4_malformed,
        /// Bad IPv4 header checksum.
        drop_ipv4_checksum,
        /// IPv4 fragments (no reassembly).
        drop_ipv4_fragment,
        /// IPv4 destination is not our address.
        drop_ipv4_not_for_us,
        /// IPv4 source is not a unicast address of someone else.
        drop_ipv4_bad_source,
        /// Protocol other than ICMP, ICMPv6 and TCP, IPv6 no next header (59) included.
        drop_ip_protocol_unknown,
        /// ICMP that does not parse, or has a bad checksum.
        drop_icmp_malformed,
        /// ICMP other than echo request and Fragmentation Needed.
        drop_icmp_other,
        /// Echo request (ICMP or ICMPv6) whose reply would not fit the MTU.
        drop_icmp_oversize,
        /// ICMPv6 that does not parse, has a bad checksum, or an echo request with a code.
        drop_icmpv6_malformed,
        /// ICMPv6 other than echo request, neighbor discovery and Packet Too Big: errors,
        /// echo replies, multicast listener discovery, unknown types.
        drop_icmpv6_other,
        /// Neighbor discovery that fails RFC 4861 §7.1: hop limit not 255, code not 0, a
        /// multicast target, malformed options, a probe from `::` with a source link-layer
        /// option or not to a solicited-node group, a Solicited advertisement to a group.
        drop_ndp_invalid,
        /// Neighbor Solicitations for an address not ours.
        drop_ndp_not_for_us,
        /// Router Solicitations and Advertisements, Redirects, and Neighbor Advertisements
        /// that are no conflict: we learn nothing from neighbor discovery.
        drop_ndp_other,
        /// Path MTU report whose quote is not a TCP segment from our address (too short, not
        /// of the report's IP version, another protocol or source), or that gives no usable
        /// MTU.
        drop_pmtu_malformed,
        /// Path MTU report quoting a segment of no connection we hold (another port, an
        /// unknown peer, a half-open or TIME-WAIT flow).
        drop_pmtu_no_flow,
        /// Path MTU report whose quoted sequence number is not in flight (RFC 5927 §4.1):
        /// forged, or too old to matter.
        drop_pmtu_not_in_flight,
        /// Valid path MTU report that would not lower the connection's MSS (at or above it, or
        /// the MSS is already at the minimum).
        drop_pmtu_not_lower,
        /// TCP header that does not parse (lengths, zero ports, impossible flags).
        drop_tcp_malformed,
        /// Bad TCP checksum.
        drop_tcp_checksum,
        /// Segment without SYN for an unknown flow (answered by RST unless it is an RST).
        drop_tcp_no_flow,
        /// Segment for an unknown flow with neither SYN, ACK nor RST: dropped unanswered
        /// (RFC 9293 §3.10.7.2).
        drop_tcp_no_ack,
        /// Segment for a half-open connection that does not complete it: an RST not exactly
        /// in sequence, a wrong ACK (answered by RST), no ACK.
        drop_tcp_handshake,
        /// Segment to a port we do not listen on (answered by RST unless it is an RST).
        drop_tcp_port_closed,
        /// Segment for a flow in TIME-WAIT that needs no answer: a duplicate ACK, or an RST
        /// that does not match the sequence exactly (RFC 5961 §3.2).
        drop_tcp_time_wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_dropped_sums_only_drop_fields() {
        let c = StackCounters {
            rx_frames: 10,
            drop_ipv6: 2,
            drop_tcp_checksum: 3,
            ..Default::default()
        };
        assert_eq!(c.total_dropped(), 5);
    }

    #[test]
    fn fields_lists_every_counter_once() {
        let c = StackCounters {
            idle_timeouts: 7,
            ..Default::default()
        };
        let fields: Vec<_> = c.fields().collect();
        assert_eq!(fields.first(), Some(&("rx_frames", 0)));
        assert!(fields.contains(&("idle_timeouts", 7)));
        let mut names: Vec<_> = fields.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len());
    }

    #[test]
    fn every_counter_has_its_documentation_as_help() {
        for (name, _) in StackCounters::default().fields() {
            let help = StackCounters::help(name).unwrap_or_default();
            assert!(help.trim().len() > 10, "{name} has no help: {help:?}");
            assert!(!help.contains('\n'), "{name}: {help:?}");
        }
        assert_eq!(
            StackCounters::help("drop_ipv6").map(str::trim),
            Some("IPv6 frames while we serve no IPv6 address.")
        );
        assert_eq!(StackCounters::help("no_such_counter"), None);
    }

    #[test]
    fn adding_counters_adds_events_and_drops() {
        let mut total = StackCounters {
            rx_frames: 10,
            syn_accepted: 4,
            drop_tcp_no_flow: 1,
            ..Default::default()
        };
        let other = StackCounters {
            rx_frames: 5,
            time_wait_entered: 2,
            drop_tcp_no_flow: 3,
            ..Default::default()
        };
        total += &other;
        assert_eq!(total.rx_frames, 15);
        assert_eq!(total.syn_accepted, 4);
        assert_eq!(total.time_wait_entered, 2);
        assert_eq!(total.drop_tcp_no_flow, 4);
        assert_eq!(total.total_dropped(), 4);
    }
}
