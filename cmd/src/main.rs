//! The kaasd binary: parses the command line, installs logging, and runs the chosen role.
//!
//! Every role follows the same shape: parse its configuration, build what it needs (which may fail, with an
//! error that says what and why), then run until a shutdown signal. A failure prints one line,
//! `error: <message>: <cause>: ...`, to stderr and exits with status 1.

mod cli;
mod controller_cmd;
mod datastore_cmd;
mod logging;
mod readiness;
mod reset_cmd;
mod service_cmd;
mod signal;
mod token_cmd;
mod worker_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, DatastoreCommand, KubeconfigCommand};

/// mimalloc instead of the C library's allocator. The API server allocates and frees many small JSON values per
/// request on every thread; with mimalloc (and informers without managedFields) the controller held 395 MiB with
/// 5,000 pods where it held 707 MiB before, and its peak fell from 1.4 GiB to 944 MiB (docs/benchmarks.md,
/// scheduler section). The static (musl) builds use it too, so they allocate the same way.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `kaasd --version` prints after the name: the version, the commit it was built from and the target it was
/// built for (build.rs), so a report about a binary says exactly which one it is.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KAASD_GIT_COMMIT"), ", ", env!("KAASD_TARGET"), ")");

fn main() -> ExitCode {
    // The matches are kept: `kaasd install` writes into the service's environment file the flags that were given.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", kaasd_datastore::one_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    // A hosted control plane's logs go to a log collector, which reads JSON.
    let hosted = matches!(&cli.command, Command::Controller(arguments) if arguments.hosted);
    logging::install(if hosted { logging::Format::Json } else { logging::Format::Plain })?;
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
            Command::Kubeconfig {
                command: KubeconfigCommand::Admin { data_dir, server, datastore, secret_key, cluster_name },
            } => match (datastore, server) {
                (Some(datastore), Some(server)) => {
                    controller_cmd::print_stored_admin_kubeconfig(&datastore, &secret_key, &server, &cluster_name).await
                }
                (_, server) => controller_cmd::print_admin_kubeconfig(&data_dir, server.as_deref()),
            },
            Command::Install { command } => service_cmd::install(command, matches),
            Command::Start(arguments) => service_cmd::start(&arguments),
            Command::Stop(arguments) => service_cmd::stop(&arguments),
            Command::Uninstall(arguments) => service_cmd::uninstall(&arguments),
            Command::Status(arguments) => service_cmd::status(&arguments).await,
            Command::Reset(arguments) => reset_cmd::run(&arguments).await,
        }
    })
}
