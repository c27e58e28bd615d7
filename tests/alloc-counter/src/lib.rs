//! Proof that the audio path never touches the allocator: a test binary installs
//! [`Counting`] as its global allocator and wraps the audio-thread work in [`watched`].
//! Only the watching thread is counted, so other threads (a model loader, the test
//! harness) may allocate freely meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations, frees and reallocations made by threads inside [`watched`].
pub struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    /// this thread's count: a global one would also count another test thread's watched
    /// allocations made at the same time (a flaky count of 1 under load)
    static EVENTS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may already be gone while a thread shuts down
    if WATCHING.try_with(Cell::get).unwrap_or(false) {
        let _ = EVENTS.try_with(|e| e.set(e.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` on this thread and returns its result with the number of allocator calls it made.
pub fn watched<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = EVENTS.with(Cell::get);
    WATCHING.with(|w| w.set(true));
    let r = f();
    WATCHING.with(|w| w.set(false));
    (r, EVENTS.with(Cell::get) - before)
}
