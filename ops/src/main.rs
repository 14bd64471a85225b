//! The `reprise` binary: parses the command line and exits with the documented code.
//!
//! mimalloc is the allocator: with the system allocator, the leader spent about 12% of its
//! CPU zeroing fresh pages for large, short-lived buffers (batched entries, gRPC frames)
//! that glibc returned to the kernel and then faulted back in (`bench/notes.md`).
//!
//! mimalloc itself gives memory that stayed free for its purge delay (1 s by default)
//! back to the kernel, and the next allocation there faults in pages the kernel zeroes
//! first. Under sustained writes the same buffers come and go every few seconds (a
//! snapshot's, an archive segment's, AppendEntries frames), so at 64 clients x 4 KiB a
//! follower spent 11.6% of its CPU zeroing pages and 21.7% in mimalloc; with a 10 s
//! delay, 4.8% and 14.5% (perf, same load). Memory a burst left free is still returned,
//! 10 s later.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3 alike: the sixteenth
/// option, after the five deprecated ones `libmimalloc-sys` names up to
/// `mi_option_eager_commit_delay` = 14).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Milliseconds memory stays free before mimalloc returns it to the kernel.
const PURGE_DELAY_MS: std::os::raw::c_long = 10_000;

fn main() -> std::process::ExitCode {
    // SAFETY: `mi_option_set` stores one integer in mimalloc's option table; it takes no
    // pointers and is called here before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
    reprise_ops::cli::main()
}
