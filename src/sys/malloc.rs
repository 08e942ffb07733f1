//! glibc allocator settings. With one malloc arena per thread (up to eight
//! per core), the freed memory of a burst (the initial list, the first
//! round of checks, a large scrape) stays spread over many arenas and the
//! resident size stays high; two arenas and a trim after each burst keep it
//! close to what is live. Large buffers (a list page of 500 objects is
//! megabytes) are always mapped on their own and unmapped when freed:
//! glibc's default raises its mmap threshold to the largest buffer freed,
//! after which such buffers come from the heap and leave holes behind. No
//! effect on other C libraries.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
        fn mallinfo2() -> MallInfo2;
    }

    /// glibc's `struct mallinfo2` (2.33+), laid out in full; only the
    /// in-use and free counts are read.
    #[repr(C)]
    #[allow(dead_code)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }

    pub fn heap() -> Option<(usize, usize)> {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { mallinfo2() };
        Some((m.uordblks + m.hblkhd, m.fordblks))
    }

    /// glibc's `M_ARENA_MAX`.
    const M_ARENA_MAX: i32 = -8;
    /// glibc's `M_MMAP_THRESHOLD`; setting it turns off its dynamic growth.
    const M_MMAP_THRESHOLD: i32 = -3;
    /// glibc's `M_TRIM_THRESHOLD`.
    const M_TRIM_THRESHOLD: i32 = -1;

    pub fn limit_arenas(n: i32) {
        // SAFETY: plain calls into the C library, made before threads start.
        unsafe {
            mallopt(M_ARENA_MAX, n);
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
            mallopt(M_TRIM_THRESHOLD, 256 * 1024);
        }
    }

    pub fn trim() {
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn limit_arenas(_: i32) {}
    pub fn trim() {}
    pub fn heap() -> Option<(usize, usize)> {
        None
    }
}

/// Caps the number of malloc arenas; call before any thread starts.
pub fn limit_arenas(n: i32) {
    imp::limit_arenas(n);
}

/// Returns free heap memory to the system after a burst of allocations.
pub fn trim() {
    imp::trim();
}

/// Heap bytes (in use by live allocations, free but held by the allocator),
/// where the C library tells.
pub fn heap() -> Option<(usize, usize)> {
    imp::heap()
}
