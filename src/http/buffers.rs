//! The pool of request buffers: a connection borrows one only while it holds request bytes it
//! has not parsed yet (a head split across segments, pipelined requests behind the queue
//! limit, a slow sender), and gives it back as soon as it has parsed everything.
//!
//! Buffers are allocated when the pool is empty and never freed, so the pool grows to the
//! largest number of connections that were ever mid-request at once and then allocates
//! nothing. A buffer of another size (limits changed) is dropped instead of kept.
//!
//! The pool also holds the one scratch buffer every request's target is normalised into: a
//! request is answered in one call, so one buffer per server serves every connection, stays
//! in cache, and grows only to the longest path ever asked for.

/// Request buffers of one size, lent to connections.
#[derive(Debug, Default)]
pub struct RequestBuffers {
    free: Vec<Vec<u8>>,
    size: usize,
    path: Vec<u8>,
}

impl RequestBuffers {
    /// A pool that starts with `count` buffers of `size` bytes.
    pub fn with_buffers(count: usize, size: usize) -> RequestBuffers {
        RequestBuffers {
            free: (0..count).map(|_| vec![0; size]).collect(),
            size,
            path: Vec::new(),
        }
    }

    /// A buffer of `size` bytes, from the pool when it has one.
    pub fn take(&mut self, size: usize) -> Vec<u8> {
        if size != self.size {
            self.free.clear();
            self.size = size;
        }
        self.free.pop().unwrap_or_else(|| vec![0; size])
    }

    /// Returns a buffer to the pool.
    pub fn give(&mut self, buffer: Vec<u8>) {
        if buffer.len() == self.size {
            self.free.push(buffer);
        }
    }

    /// The scratch buffer a request's normalised path is built in (see the module docs).
    pub fn path_scratch(&mut self) -> &mut Vec<u8> {
        &mut self.path
    }

    /// Buffers waiting in the pool.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_other_sizes_dropped() {
        let mut pool = RequestBuffers::with_buffers(2, 64);
        let a = pool.take(64);
        let b = pool.take(64);
        let c = pool.take(64);
        assert_eq!((a.len(), b.len(), c.len(), pool.idle()), (64, 64, 64, 0));
        let c_ptr = c.as_ptr();
        pool.give(c);
        let again = pool.take(64);
        assert_eq!(again.as_ptr(), c_ptr, "the returned buffer is lent again");
        pool.give(vec![0; 10]);
        assert_eq!(pool.idle(), 0, "a buffer of another size is not kept");
        assert_eq!(pool.take(128).len(), 128);
    }
}
