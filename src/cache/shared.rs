//! The cache as a buffer the TCP stack sends from without copying: a socket holds a reference
//! to the tree until the body bytes it queued are acknowledged (see
//! [`ByteStream::send_cached`](crate::http::ByteStream::send_cached)).

use std::sync::Arc;

use sirocco_netstack::SharedPayload;

use super::ContentCache;

/// A tree as a socket's shared payload: its bytes are the arena, where every body lies. One
/// per engine and tree, behind the engine's own [`EngineTree`](super::EngineTree) pointer, so
/// queuing a body writes a reference count no other engine touches.
#[derive(Debug)]
pub struct TreeBytes(pub(super) Arc<ContentCache>);

impl SharedPayload for TreeBytes {
    fn bytes(&self) -> &[u8] {
        &self.0.arena
    }

    /// From the partial sums kept since load ([`ContentCache::arena_sum`]): a segment's
    /// checksum costs O(1) in the body bytes it carries.
    fn sum(&self, start: usize, len: usize) -> Option<u16> {
        Some(self.0.arena_sum(start, len))
    }
}
