//! Logging for every role: `KAASD_LOG` filters (tracing's env-filter syntax, default `info,sqlx=warn`) and
//! `KAASD_LOG_FORMAT` picks `plain` or `json` lines (default: plain, json for a hosted control plane). Logs go to
//! stderr: stdout carries only the lines scripts wait for.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use tracing_subscriber::EnvFilter;

const FILTER_VARIABLE: &str = "KAASD_LOG";
const FORMAT_VARIABLE: &str = "KAASD_LOG_FORMAT";

/// The log line format when `KAASD_LOG_FORMAT` does not choose one.
pub enum Format {
    Plain,
    Json,
}

pub fn install(default: Format) -> anyhow::Result<()> {
    let filter = match std::env::var(FILTER_VARIABLE) {
        Ok(directives) => EnvFilter::try_new(&directives).with_context(|| format!("invalid {FILTER_VARIABLE}"))?,
        // sqlx reports every PostgreSQL notice ("relation already exists, skipping") at info.
        Err(_) => EnvFilter::new("info,sqlx=warn"),
    };
    let format = std::env::var(FORMAT_VARIABLE).unwrap_or_default();
    // Colours only for a person at a terminal: escape codes would garble journald and log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format.as_str() {
        "" if matches!(default, Format::Json) => builder.json().try_init(),
        "" | "plain" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => bail!("invalid {FORMAT_VARIABLE} {other:?}: use plain or json"),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install logging: {error}"))
}
