//! Proof that the audio path never touches the allocator: a test binary installs
//! [`Counting`] as its global allocator and wraps the audio-thread work in [`watched`].
//! Only the watching thread is counted, so other threads (a model loader, the test
//! harness) may allocate freely meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts allocations, frees and reallocations made by threads inside [`watched`].
pub struct Counting;

static EVENTS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the thread-local may already be gone while a thread shuts down
    if WATCHING.try_with(Cell::get).unwrap_or(false) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
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
    let before = EVENTS.load(Ordering::SeqCst);
    WATCHING.with(|w| w.set(true));
    let r = f();
    WATCHING.with(|w| w.set(false));
    (r, EVENTS.load(Ordering::SeqCst) - before)
}
