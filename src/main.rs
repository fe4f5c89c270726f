#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};
use vault_external_secrets::cli::{self, Cli};

// mimalloc returns memory to the OS far better than glibc's per-thread arenas (and is much
// faster than musl's malloc in the static image); built as v2 without transparent huge pages
// (Cargo.toml says why): peak RSS at 10,000 objects, docs/benchmarks.md.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
