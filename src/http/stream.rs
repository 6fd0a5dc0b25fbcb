//! The byte stream [`serve`](super::serve) reads requests from and writes responses to: a
//! netstack [`TcpSocket`], or a fake one in the tests.

use std::net::IpAddr;

use sirocco_netstack::{TcpSocket, TcpState};

use crate::cache::EngineTree;

/// The byte-stream side of a connection, as [`serve`](super::serve) uses it.
pub trait ByteStream {
    /// Copies received bytes into `buf`; 0 when nothing is available.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Queues as much of `data` as the send buffer takes; returns how much.
    fn send(&mut self, data: &[u8]) -> usize;
    /// Queues `body`, the bytes at `start` in `tree`'s arena, as [`send`](Self::send) does;
    /// a socket queues a reference to the tree instead of a copy. This default copies.
    fn send_cached(&mut self, tree: &EngineTree, start: usize, body: &[u8]) -> usize {
        let _ = (tree, start);
        self.send(body)
    }
    /// `false` once the peer has closed its side and every received byte has been read.
    fn may_recv(&self) -> bool;
    /// Closes our side after everything queued has been sent.
    fn close(&mut self);
    /// The client's address, for the access log.
    fn peer(&self) -> Option<IpAddr> {
        None
    }
    /// Whether the handshake is complete (the keep-alive clock starts there).
    fn established(&self) -> bool {
        true
    }
    /// Bytes queued to send and not yet acknowledged by the peer.
    fn unacked(&self) -> usize {
        0
    }
    /// Reads and drops everything received so far; returns how many bytes that was.
    fn discard(&mut self) -> usize {
        let mut scratch = [0u8; 512];
        let mut total = 0;
        loop {
            let got = self.recv(&mut scratch);
            if got == 0 {
                return total;
            }
            total += got;
        }
    }
    /// Ends the connection at once with a reset. `false` if it had already ended.
    fn abort(&mut self) -> bool;
}

impl ByteStream for TcpSocket<'_> {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        // The last read of an exchange finds the buffer empty; `recv_slice` would go through
        // its state checks to say so, and does nothing else with no bytes to give.
        if self.recv_queue() == 0 {
            return 0;
        }
        self.recv_slice(buf).unwrap_or(0)
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.send_slice(data).unwrap_or(0)
    }

    fn send_cached(&mut self, tree: &EngineTree, start: usize, body: &[u8]) -> usize {
        match self.send_shared(tree.payload(), start, body.len()) {
            Ok(0) => {
                // Every shared range the socket holds is in use (a run of small pipelined
                // answers): copy, as far as the send buffer takes it.
                self.send_slice(body).unwrap_or(0)
            }
            Ok(taken) => taken,
            Err(_) => 0,
        }
    }

    fn may_recv(&self) -> bool {
        // smoltcp's may_recv is also false before the handshake completes; only a FIN from the
        // peer (with its data all read) means "will never send more".
        TcpSocket::may_recv(self)
            || matches!(
                self.state(),
                TcpState::Listen | TcpState::SynSent | TcpState::SynReceived
            )
    }

    fn close(&mut self) {
        TcpSocket::close(self)
    }

    fn peer(&self) -> Option<IpAddr> {
        self.remote_endpoint()
            .map(|endpoint| IpAddr::from(endpoint.addr))
    }

    fn established(&self) -> bool {
        !matches!(
            self.state(),
            TcpState::Listen | TcpState::SynSent | TcpState::SynReceived | TcpState::Closed
        )
    }

    fn unacked(&self) -> usize {
        self.send_queue()
    }

    fn discard(&mut self) -> usize {
        let mut total = 0;
        // The receive buffer is a ring: at most two contiguous pieces.
        while let Ok(got) = self.recv(|bytes| (bytes.len(), bytes.len())) {
            if got == 0 {
                break;
            }
            total += got;
        }
        total
    }

    fn abort(&mut self) -> bool {
        if !self.is_active() {
            return false;
        }
        TcpSocket::abort(self);
        true
    }
}
