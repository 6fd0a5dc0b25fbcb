//! A counting global allocator, for tests and benchmarks that prove a code path allocates
//! nothing, or measure the heap a part of the program holds. It forwards every call to the
//! system allocator and, on threads that have switched counting on, counts allocations (and
//! reallocations) and the net bytes allocated (requested sizes: what was allocated less what
//! was freed). It lives here because implementing `GlobalAlloc` takes `unsafe`, and all of
//! the workspace's `unsafe` lives in this crate.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//! let (result, allocations) = allocations_in(|| server.poll(now));
//! let (server, heap_bytes) = heap_growth_in(|| Server::new(...));
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting allocations on threads inside [`allocations_in`].
pub struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated less bytes freed while counting (wrapping: a scope may free more than
    /// it allocated).
    static NET_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn counting() -> bool {
    // `try_with`: the allocator can run while thread-locals are being torn down.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

/// One allocation (or reallocation) whose net size change is `grown` bytes.
fn note_allocation(grown: u64) {
    if counting() {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        note_bytes(grown);
    }
}

fn note_bytes(grown: u64) {
    let _ = NET_BYTES.try_with(|n| n.set(n.get().wrapping_add(grown)));
}

/// `new - old` as a wrapping byte count.
fn growth(old: usize, new: usize) -> u64 {
    (new as u64).wrapping_sub(old as u64)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; the counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(growth(0, layout.size()));
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(growth(0, layout.size()));
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(growth(layout.size(), new_size));
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            note_bytes(growth(layout.size(), 0));
        }
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the allocations it made on this thread. Counts only
/// when [`CountingAllocator`] is the program's global allocator (otherwise always 0).
pub fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (out, allocations, _) = counted(f);
    (out, allocations)
}

/// Runs `f` and returns its result with the bytes it left allocated on this thread: what it
/// allocated less what it freed, negative if it freed more. Requested sizes, without the
/// allocator's own overhead. Measures only when [`CountingAllocator`] is the program's global
/// allocator (otherwise always 0).
pub fn heap_growth_in<R>(f: impl FnOnce() -> R) -> (R, i64) {
    let (out, _, net_bytes) = counted(f);
    (out, net_bytes)
}

/// Runs `f` with counting off on this thread, inside a counted scope or not: for memory
/// that belongs to no party being measured, such as the simulated wire's frame buffers.
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let was = COUNTING.with(|c| c.replace(false));
    let out = f();
    COUNTING.with(|c| c.set(was));
    out
}

/// Runs `f` counting (scopes nest: an inner one leaves counting as it found it).
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64, i64) {
    let allocations = ALLOCATIONS.with(Cell::get);
    let net_bytes = NET_BYTES.with(Cell::get);
    let was = COUNTING.with(|c| c.replace(true));
    let out = f();
    COUNTING.with(|c| c.set(was));
    (
        out,
        ALLOCATIONS.with(Cell::get) - allocations,
        // Two's complement: the wrapping difference read as signed is the net change.
        NET_BYTES.with(Cell::get).wrapping_sub(net_bytes) as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The drivers crate's unit-test binary counts with it; it forwards to `System`.
    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    #[test]
    fn heap_growth_is_the_net_bytes_of_the_scope() {
        let (kept, grown) = heap_growth_in(|| vec![7u8; 1000]);
        assert_eq!(grown, 1000);
        let ((), grown) = heap_growth_in(|| drop(vec![7u8; 4096]));
        assert_eq!(grown, 0);
        let ((), grown) = heap_growth_in(|| drop(kept));
        assert_eq!(grown, -1000);
        let (mut grown_vec, _) = heap_growth_in(|| Vec::<u8>::with_capacity(10));
        // A reallocation counts its growth: capacity 10 to 90.
        let ((), grown) = heap_growth_in(|| grown_vec.reserve_exact(90));
        assert_eq!(grown, 80);
    }

    #[test]
    fn scopes_nest_and_count_nothing_outside() {
        let ((inner, allocations), outer) = heap_growth_in(|| {
            let (inner, allocations) = allocations_in(|| (vec![1u8; 10], vec![2u8; 20]));
            // Still counting after the inner scope ends.
            let _third = Box::new(3u64);
            (inner, allocations)
        });
        assert_eq!(allocations, 2);
        assert_eq!(outer, 30);
        drop(inner);
        let ((), grown) = heap_growth_in(|| {
            let _wire = uncounted(|| vec![0u8; 1500]);
        });
        // Allocated uncounted, freed counted: the free shows. Callers keep one side uncounted.
        assert_eq!(grown, -1500);
        let before = NET_BYTES.with(Cell::get);
        drop(vec![0u8; 100]);
        assert_eq!(NET_BYTES.with(Cell::get), before);
    }
}
