//! The `reprise` binary: parses the command line and exits with the documented code.
//!
//! mimalloc is the allocator: with the system allocator, the leader spent about 12% of its
//! CPU zeroing fresh pages for large, short-lived buffers (batched entries, gRPC frames)
//! that glibc returned to the kernel and then faulted back in (`bench/notes.md`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    reprise_ops::cli::main()
}
