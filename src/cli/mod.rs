//! The command line in the controller's binary. With no subcommand it runs the controller; the
//! subcommands explain a sync without applying anything: `check` (offline validation of
//! manifests), `render` (what a manifest would produce, from Vault), `status` (every
//! ExternalSecret in the cluster, worst first). Installed as `kubectl-vault_external_secrets`
//! it is a kubectl plugin (`kubectl vault-external-secrets check -f dir/`).

mod check;
mod manifests;
mod render;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::{controller, logging};

#[derive(Parser, Debug)]
#[command(
    name = "vault-external-secrets",
    version,
    about = "Syncs secrets from HashiCorp Vault / OpenBao into Kubernetes Secrets. With no subcommand: runs the controller (configured by environment variables)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the controller (the default).
    Controller,
    /// Validates ExternalSecret and SecretStore manifests offline: schema and semantics (kvVersion,
    /// keys, properties, Secret key names, templates, find and rewrite, stores). Exit code 1 with
    /// one line per problem (file: object: reason).
    Check {
        /// Manifest files or directories (YAML, several documents per file).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Prints the Secret an ExternalSecret would produce, reading Vault with the controller's
    /// settings (VAULT_ADDR and the rest of its environment): values redacted (length and a hash
    /// prefix) unless --show-values, or the exact error the controller would report.
    Render {
        /// A manifest with the ExternalSecret (and, for ESO, its store unless in the cluster).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Print the values themselves.
        #[arg(long)]
        show_values: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One line per ExternalSecret in the cluster (both APIs): Ready reason, last sync age, poll,
    /// Vault paths, last error; worst first.
    Status {
        /// One namespace (default: all).
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Runs a subcommand (the controller with none); returns the process exit code.
pub async fn run(command: Option<Command>) -> anyhow::Result<i32> {
    match command.unwrap_or(Command::Controller) {
        Command::Controller => {
            let config = Config::from_env()?;
            let pino = logging::Pino::from_lookup(|k| std::env::var(k).ok());
            logging::init(&config.log_level, &config.log_message_key, pino)?;
            controller::run(config).await?;
            Ok(0)
        }
        Command::Check { files, output } => Ok(check::run(&files, output)),
        Command::Render {
            file,
            show_values,
            output,
        } => render::run(&file, show_values, output).await,
        Command::Status { namespace, output } => status::run(namespace.as_deref(), output).await,
    }
}
