//! The kaasd binary: parses the command line, installs logging, and runs the chosen role.
//!
//! Every role follows the same shape: parse its configuration, build what it needs (which may fail, with an
//! error that says what and why), then run until a shutdown signal. A failure prints one line,
//! `error: <message>: <cause>: ...`, to stderr and exits with status 1.

mod cli;
mod controller_cmd;
mod datastore_cmd;
mod logging;
mod signal;
mod token_cmd;
mod worker_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, DatastoreCommand, KubeconfigCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", kaasd_datastore::one_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    logging::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kaasd")
        .build()
        .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))?;
    runtime.block_on(async {
        match cli.command {
            Command::Datastore { command: DatastoreCommand::Serve(arguments) } => datastore_cmd::serve(arguments).await,
            Command::Controller(arguments) => controller_cmd::run(arguments).await,
            Command::Worker(arguments) => worker_cmd::run(arguments).await,
            Command::Images { command } => worker_cmd::images(command).await,
            Command::Token { command } => token_cmd::run(command).await,
            Command::Kubeconfig { command: KubeconfigCommand::Admin { data_dir, server } } => {
                controller_cmd::print_admin_kubeconfig(&data_dir, server.as_deref())
            }
        }
    })
}
