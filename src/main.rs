// One audited FFI call sets an allocator option (`return_free_pages_at_once`); nothing else.
#![deny(unsafe_code)]

use clap::{CommandFactory, Parser};
use vault_external_secrets::cli::{self, Cli};

// mimalloc returns memory to the OS far better than glibc's per-thread arenas (and is much
// faster than musl's malloc in the static image); built as v2 without transparent huge pages
// (Cargo.toml says why): peak RSS at 10,000 objects, docs/benchmarks.md.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_t` (libmimalloc-sys has no name for it).
#[cfg(not(feature = "system-alloc"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc keeps a freed page for 10 ms before returning it to the OS, by default. Returned at
/// once, the controller's peak RSS and its CPU were both lower at 10,000 ExternalSecrets
/// (docs/benchmarks.md).
#[cfg(not(feature = "system-alloc"))]
#[allow(unsafe_code)]
fn return_free_pages_at_once() {
    // The option's index is mimalloc 2's (the `v2` feature, Cargo.lock pins the version).
    // `version()` is major * 10000 + minor * 100 + patch.
    if GLOBAL.version() / 10000 == 2 {
        // SAFETY: sets one integer option; mimalloc reads its options at any time, on any
        // thread, and a purge delay of 0 is a documented value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

/// One thread runs everything. The controller mostly waits on the apiserver and Vault; tokio's
/// multi-thread runtime spent much of its CPU waking workers across threads for every response,
/// and each thread kept an allocator heap of its own (docs/benchmarks.md, part 2 step 8).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    #[cfg(not(feature = "system-alloc"))]
    return_free_pages_at_once();
    let cli = Cli::parse();
    // As a kubectl plugin (`kubectl-vault_external_secrets`) it never starts the controller.
    let plugin = std::env::args().next().is_some_and(|a| {
        a.rsplit('/')
            .next()
            .unwrap_or_default()
            .starts_with("kubectl-")
    });
    match cli.command {
        None if plugin => {
            Cli::command().print_help()?;
            Ok(())
        }
        command => match cli::run(command).await? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
    }
}

#[cfg(all(test, not(feature = "system-alloc")))]
mod tests {
    /// The version gate lets the call through, and index 15 is the purge delay: its default
    /// is mimalloc's 10 ms before, and 0 after.
    #[test]
    #[allow(unsafe_code)]
    fn free_pages_are_returned_at_once() {
        // SAFETY: reads one integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 10);
        super::return_free_pages_at_once();
        assert_eq!(get(), 0);
    }
}
