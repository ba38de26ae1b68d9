//! Shared by the fuzz targets: a global allocator that turns any single allocation larger
//! than the input could justify into a crash.
//!
//! libFuzzer's `-rss_limit_mb` only sees memory that was touched; a `Vec::with_capacity`
//! taken from a length field is often never touched and would pass unnoticed. Inside
//! [`capped`], one allocation may not exceed `1 MiB + 128 x input length`: enough for the
//! parsers' fixed buffers (64 KiB), for LZF (at most 100 output bytes per input byte) and for
//! vectors of parsed items (each item comes from at least a few input bytes), far below what
//! an unchecked 32-bit length asks for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Capped;

#[global_allocator]
static ALLOC: Capped = Capped;

fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if size > limit {
        // Lift the cap first: writing the message may allocate.
        LIMIT.store(usize::MAX, Ordering::Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "ferry-fuzz: one allocation of {size} bytes, over the cap of {limit} for this input"
        );
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the cap only adds a size check.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with single allocations capped for an input of `input_len` bytes.
pub fn capped<T>(input_len: usize, f: impl FnOnce() -> T) -> T {
    let cap = (1usize << 20).saturating_add(input_len.saturating_mul(128));
    LIMIT.store(cap, Ordering::Relaxed);
    let out = f();
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    out
}
