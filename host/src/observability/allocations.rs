//! Counting heap allocations, for the tests and benches that prove a path
//! allocates nothing (or how much): install [`CountingAllocator`] as the
//! binary's global allocator and read [`on_this_thread`] around the code
//! under test. Per thread, since tests run side by side.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each allocation and reallocation made
/// on the calling thread.
pub struct CountingAllocator;

// SAFETY: forwards to the system allocator unchanged; the count is a
// thread-local Cell, which neither allocates nor re-enters.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made on this thread so far (0 unless [`CountingAllocator`]
/// is the global allocator).
pub fn on_this_thread() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations `run` makes on this thread.
pub fn of(run: impl FnOnce()) -> u64 {
    let before = on_this_thread();
    run();
    on_this_thread() - before
}
