//! Giving memory back after bursts (issue 16: berthd's RSS grew from 14 to 37 MiB while 300
//! containers came and went, and stayed there).
//!
//! berthd runs its blocking work (store commits, mounts, runtime and monitor calls) on tokio's
//! blocking pool, which grows a thread per concurrent call: a burst of container starts or
//! removals briefly runs dozens of threads. Two glibc malloc behaviours then keep the memory:
//!
//! * A new thread's first allocation creates an arena of its own (unless an exited thread left
//!   one free), up to 8 per core, and arenas are never destroyed: the pages a short-lived
//!   blocking thread touched stay in its arena after the thread is gone, one arena per thread
//!   the pool ever ran at once.
//! * Memory freed inside a heap goes back to the kernel only when it ends up at the top of the
//!   heap in one large piece. Freed chunks between live ones stay resident until `malloc_trim`,
//!   and `malloc_trim` never shrinks the top of a thread arena's heap, only of the main one.
//!
//! So berthd caps the arenas at startup, before any thread exists, and trims once freed memory
//! has piled up. Both are cheap for berthd: it seldom allocates from many threads at once
//! (glibc's per-thread caches serve most small allocations without taking an arena's lock), and
//! a trim walks a heap of a few MiB.

use std::time::Duration;

/// Arenas berthd's threads share: the main one and one more, so that the async workers and a
/// blocking call rarely wait on each other's lock.
const ARENAS: i32 = 2;

/// How often freed memory is checked.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Free heap bytes that may pile up (beyond what the last trim left) before a trim. Small: after
/// 100 pods came and went, well under 1 MiB was left free in pieces between live allocations
/// (measured with heaptrack and mallinfo2), and a trim of a heap of a few MiB takes microseconds.
const TRIM_SLACK: usize = 256 * 1024;

/// Caps glibc's malloc arenas, unless `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable
/// says otherwise. Call it first thing in `main`: threads that already have an arena keep it.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
        if !tuned {
            // SAFETY: mallopt only sets an allocator parameter.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
        }
    }
}

/// Returns freed heap memory to the kernel after bursts: when more than [`TRIM_SLACK`] bytes of
/// heap have been freed since the last trim, checked every [`TRIM_INTERVAL`]. A daemon that holds
/// steady never trims. Runs forever.
pub async fn trim_after_bursts() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Free bytes the last trim left: already returned pages and pieces smaller than a page
        // still count as free.
        let mut left = 0;
        loop {
            tick.tick().await;
            // SAFETY: mallinfo2 only reads the allocator's statistics.
            let free = unsafe { libc::mallinfo2() }.fordblks;
            if free > left + TRIM_SLACK {
                // SAFETY: malloc_trim only releases free heap memory.
                unsafe { libc::malloc_trim(0) };
                // SAFETY: as above.
                left = unsafe { libc::mallinfo2() }.fordblks;
                tracing::debug!(free, "returned freed heap memory to the kernel");
            } else {
                // Free memory that was allocated again is resident again once freed.
                left = left.min(free);
            }
        }
    }
}
