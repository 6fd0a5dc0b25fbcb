//! The HTTP counters of one engine, summed over its connections.

#[cfg(doc)]
use super::HttpLimits;
use super::LatencyHistogram;

/// Counters across all connections; plain integers read by the stats reporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCounters {
    /// Request heads parsed (malformed ones included).
    pub requests: u64,
    // Responses by status class, counted when the last byte of each is in the socket.
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Response bytes accepted by sockets.
    pub bytes_sent: u64,
    /// Requests answered with 400, 414, 431 or 505 because they could not be parsed, counted
    /// when that answer is in the socket, as the responses are.
    pub parse_errors: u64,
    /// Requests parsed while an earlier response on the same connection was still unsent, or
    /// found behind another request in the buffer.
    pub pipelined_requests: u64,
    /// Request heads not completed within [`HttpLimits::header_timeout`] (answered 408).
    pub header_timeouts: u64,
    /// Idle connections closed because no request came within
    /// [`HttpLimits::keepalive_timeout`].
    pub keepalive_timeouts: u64,
    /// Closed connections reset because the peer had not finished within the lingering
    /// bounds ([`HttpLimits::lingering_time`], [`HttpLimits::lingering_timeout`]).
    pub lingering_aborts: u64,
    /// Connections closed without an answer because they opened with another protocol: a TLS
    /// handshake or the HTTP/2 connection preface.
    pub foreign_protocol: u64,
    /// Access-log lines dropped because the log writer could not keep up.
    pub access_log_dropped: u64,
    /// Idle keep-alive connections closed because the server is stopping.
    pub drain_closes: u64,
    /// From the read that completed a request (its last segment) to the first byte of its
    /// response handed to the socket (sent in that iteration's egress), on the engine's
    /// clock, which is read once per loop iteration. Requests the server answered without a
    /// complete head (408) are not in it.
    pub time_to_first_byte: LatencyHistogram,
}

/// Adds every counter of another server, e.g. to total the engines of a multi-queue server.
impl std::ops::AddAssign<&HttpCounters> for HttpCounters {
    fn add_assign(&mut self, other: &HttpCounters) {
        // Destructured, so a new counter cannot be forgotten here.
        let HttpCounters {
            requests,
            responses_2xx,
            responses_3xx,
            responses_4xx,
            responses_5xx,
            bytes_sent,
            parse_errors,
            pipelined_requests,
            header_timeouts,
            keepalive_timeouts,
            lingering_aborts,
            foreign_protocol,
            access_log_dropped,
            drain_closes,
            time_to_first_byte,
        } = other;
        self.requests += requests;
        self.responses_2xx += responses_2xx;
        self.responses_3xx += responses_3xx;
        self.responses_4xx += responses_4xx;
        self.responses_5xx += responses_5xx;
        self.bytes_sent += bytes_sent;
        self.parse_errors += parse_errors;
        self.pipelined_requests += pipelined_requests;
        self.header_timeouts += header_timeouts;
        self.keepalive_timeouts += keepalive_timeouts;
        self.lingering_aborts += lingering_aborts;
        self.foreign_protocol += foreign_protocol;
        self.access_log_dropped += access_log_dropped;
        self.drain_closes += drain_closes;
        self.time_to_first_byte += time_to_first_byte;
    }
}

impl HttpCounters {
    /// Every counter as `(name, value)`, for stats output (the histogram
    /// [`HttpCounters::time_to_first_byte`] aside).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("requests", self.requests),
            ("responses_2xx", self.responses_2xx),
            ("responses_3xx", self.responses_3xx),
            ("responses_4xx", self.responses_4xx),
            ("responses_5xx", self.responses_5xx),
            ("bytes_sent", self.bytes_sent),
            ("parse_errors", self.parse_errors),
            ("pipelined_requests", self.pipelined_requests),
            ("header_timeouts", self.header_timeouts),
            ("keepalive_timeouts", self.keepalive_timeouts),
            ("lingering_aborts", self.lingering_aborts),
            ("foreign_protocol", self.foreign_protocol),
            ("access_log_dropped", self.access_log_dropped),
            ("drain_closes", self.drain_closes),
        ]
        .into_iter()
    }
}
