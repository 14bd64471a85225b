//! The `reprise` binary: parses the command line and exits with the documented code.
//!
//! mimalloc is the allocator: with the system allocator, the leader spent about 12% of its
//! CPU zeroing fresh pages for large, short-lived buffers (batched entries, gRPC frames)
//! that glibc returned to the kernel and then faulted back in (`bench/notes.md`).
//!
//! mimalloc returns freed memory to the kernel after a delay, 1 s by default. A loaded
//! node frees and allocates again buffers of megabytes at intervals about that long (log
//! archive segments and their shards every 500 ms, snapshots every second or two, received
//! shards), so with the default it faulted them back in and the kernel zeroed them again:
//! 6-8% of a leader's samples at 64 clients x 4 KiB. Freed memory is kept 10 s instead
//! (`MIMALLOC_PURGE_DELAY` in the environment still overrides it).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the Rust bindings do not name it;
/// the test below checks that this number is that option).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it is returned to the kernel.
const PURGE_DELAY_MS: std::os::raw::c_long = 10_000;

/// Keeps freed memory `PURGE_DELAY_MS` unless the environment sets mimalloc's delay. The
/// one `unsafe` of the workspace: a call into the allocator's C library.
#[allow(unsafe_code)]
fn keep_freed_memory_longer() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        && std::env::var_os("MIMALLOC_RESET_DELAY").is_none()
    {
        // SAFETY: sets one of mimalloc's options; any value is valid for this one.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory_longer();
    reprise_ops::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets mimalloc options; any value is valid for this one.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                default, 1000,
                "mimalloc 3's purge delay defaults to 1000 ms"
            );
        }
        keep_freed_memory_longer();
        let set = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(set, PURGE_DELAY_MS);
        }
    }
}
