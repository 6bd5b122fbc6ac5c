//! The host allocator's settings: glibc keeps freed memory for reuse (libtorch allocates a
//! fresh buffer for every tensor), and the size up to which it serves a buffer from its
//! heap, which `compare` sizes its blocks by.

/// The largest buffer glibc's allocator serves from its heap once
/// [`reuse_freed_host_memory`] has run; larger ones are mapped on their own.
pub(crate) const HEAP_BLOCK_BYTES: usize = 64 << 20;

/// Makes glibc's allocator keep freed host memory for reuse instead of returning it to
/// the system: blocks up to 64 MiB come from the heap rather than from their own `mmap`,
/// and the heap is trimmed only past 2 GiB free. libtorch allocates a fresh buffer for
/// every tensor, and by default glibc maps many of them afresh and unmaps them when freed,
/// the kernel zeroing every page again on first touch: keeping them cut the page faults
/// of training and of the analysis several-fold, and training's wall-clock with them
/// (benches/records/2026-12-01.md, "Analysis rows"). Larger blocks (a big layer's float64
/// copy) are still mapped on their own: keeping those in the heap saved little more and
/// raised `svcca compare`'s peak memory.
///
/// Every thread allocates from that one heap (one arena): glibc would give each thread
/// that allocates its own arena, whose heaps are at most 64 MiB and do not keep freed
/// memory the same way, so a large tensor made on a rayon thread (the analysis
/// summarises layers side by side) would be mapped and zeroed afresh each time: on the
/// quickstart's analysis, one arena took about half or less of the system time of an arena
/// per thread (benches/records/2026-12-02.md).
///
/// Called once at the start of `main`; skipped where the user tunes the allocator
/// (`MALLOC_*_`, `GLIBC_TUNABLES`).
pub(crate) fn reuse_freed_host_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if tuned {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters; called before other threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES as i32);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
