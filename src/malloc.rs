//! glibc allocator settings. With one malloc arena per thread (up to eight
//! per core), the freed memory of a burst (the initial list, the first
//! round of checks, a large scrape) stays spread over many arenas and the
//! resident size stays high; two arenas and a trim after each burst keep it
//! close to what is live. No effect on other C libraries.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }

    /// glibc's `M_ARENA_MAX`.
    const M_ARENA_MAX: i32 = -8;

    pub fn limit_arenas(n: i32) {
        // SAFETY: a plain call into the C library, made before threads start.
        unsafe {
            mallopt(M_ARENA_MAX, n);
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
}

/// Caps the number of malloc arenas; call before any thread starts.
pub fn limit_arenas(n: i32) {
    imp::limit_arenas(n);
}

/// Returns free heap memory to the system after a burst of allocations.
pub fn trim() {
    imp::trim();
}
