//! kaasd-bench: measures kaasd's datastore and its anchor, etcd 3.4, side by side in one run; `kaasd-bench api`
//! measures the Kubernetes API server (`kaasd controller`) on SQLite and PostgreSQL (see the `api` module).
//!
//! Every selected target is started fresh, then each case runs on every target in turn (case by case, run by
//! run), so a burst of background load on this shared machine hurts all targets alike instead of one. The
//! result is a markdown table on stdout and, with `--write`, in the marked section of docs/benchmarks.md.

mod api;
mod api_client;
mod api_server;
mod api_workloads;
mod dns;
mod hosted;
mod pod_network;
mod pods;
mod report;
mod restart;
mod scheduler;
mod services;
mod simulated_nodes;
mod targets;
mod tunnel;
mod tunnel_load;
mod tunnel_roles;
mod workloads;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use report::{Better, Table};
use targets::{LaunchConfig, MemoryUsage, PostgresAdmin, RunningTarget, TargetKind};
use workloads::{Connections, KeyOrder, Settings};

/// Connections per target for the request/response workloads (watchers open their own).
const CONNECTIONS_PER_TARGET: usize = 8;
/// Time a freshly started server gets to settle before its idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "kaasd-bench",
    about = "Benchmark kaasd's datastore against etcd 3.4 in one run and print a markdown table",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    datastore: Args,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Benchmark the Kubernetes API server (`kaasd controller`) on SQLite and PostgreSQL in one run.
    Api(api::ApiArgs),
    /// Time from spawn to ready, and memory per object, of kaasd on a database holding many objects.
    Restart(restart::RestartArgs),
    /// Pod create → Running on a real worker (containerd), and the worker agent's memory.
    Pods(pods::PodsArgs),
    /// The node's cluster DNS resolver against dnsmasq: queries/s and latency on the same names and load.
    Dns(dns::DnsArgs),
    /// The worker's Service proxy: EndpointSlice change to nftables rule in place, 1,000 Services x 10 endpoints.
    Services(services::ServicesArgs),
    /// Pod → pod TCP throughput and latency (host-gw, VXLAN) against host → host, on a three-node lab.
    PodNetwork(pod_network::PodNetworkArgs),
    /// Hosted control planes per GiB: memory of N `kaasd controller --hosted` (one database each on PostgreSQL)
    /// idle and loaded, and a new replica's start against an existing database.
    Hosted(hosted::HostedArgs),
    /// The scheduler and workload controllers on simulated nodes: pods bound per second against the API's own pod
    /// create rate, Deployments of thousands to Running, and the controller's memory holding them.
    Scheduler(scheduler::SchedulerArgs),
    /// Registers simulated nodes (Ready, Leases renewed, pods reported Running without containers) in a cluster
    /// until Ctrl-C; for scale work, never in place of a real worker.
    SimulatedNodes(simulated_nodes::SimulatedNodesArgs),
    /// (Run by `pod-network` in pods and hosts.) A TCP sink for throughput and echo for latency.
    #[command(hide = true)]
    TcpSink(pod_network::SinkArgs),
    /// (Run by `pod-network` in pods and hosts.) Measures throughput and round trips to a `tcp-sink`.
    #[command(hide = true)]
    TcpSource(pod_network::SourceArgs),
    #[command(flatten)]
    Tunnel(tunnel::TunnelCommand),
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Comma-separated cases to run: put, cas, get, list, watch.
    #[arg(long, default_value = "put,cas,get,list,watch")]
    cases: String,
    /// Comma-separated targets: etcd, sqlite, postgres.
    #[arg(long, default_value = "etcd,sqlite,postgres")]
    targets: String,
    /// kaasd binary [default: kaasd next to this binary, i.e. target/release/kaasd].
    #[arg(long)]
    kaasd: Option<PathBuf>,
    /// etcd binary (3.4 is the anchor).
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Replace the results section of this markdown file (e.g. docs/benchmarks.md).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Smoke run of about a minute: short runs and small data.
    #[arg(long)]
    quick: bool,
    /// Do not pin the servers to a CPU.
    #[arg(long)]
    no_pin: bool,
    /// CPU the servers are pinned to; the load generator is left free.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Where the targets' temporary data directories go [default: the system temp dir].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Runs per throughput case; the median is reported.
    #[arg(long)]
    repeats: Option<usize>,
    /// Time limit of one throughput run, in seconds.
    #[arg(long)]
    run_seconds: Option<f64>,
    /// Request budget of one throughput run (whichever of budget and time limit ends first).
    #[arg(long, default_value_t = 2_000_000)]
    run_max_requests: u64,
    /// Comma-separated client counts for the put cases.
    #[arg(long, default_value = "1,16,64")]
    put_clients: String,
    /// Keys of the put cases: sequential, or random over --key-space.
    #[arg(long, value_enum, default_value_t = KeyOrder::Sequential)]
    key_order: KeyOrder,
    #[arg(long, default_value_t = 1_000_000)]
    key_space: u64,
    /// Clients competing in the CAS case.
    #[arg(long, default_value_t = 16)]
    cas_clients: usize,
    /// Hot keys they compete for.
    #[arg(long, default_value_t = 4)]
    cas_hot_keys: usize,
    /// Values in the list case [default: 10000, quick: 2000].
    #[arg(long)]
    list_values: Option<usize>,
    #[arg(long, default_value_t = 1024)]
    list_value_bytes: usize,
    /// Superseded revisions written over the list keys before listing again [default: 200000, quick: 20000].
    #[arg(long)]
    superseded: Option<u64>,
    /// Watchers on one prefix [default: 1000].
    #[arg(long)]
    watchers: Option<usize>,
    #[arg(long, default_value_t = 1000)]
    watch_writes_per_second: u64,
    /// Seconds of watched writes [default: 5, quick: 1].
    #[arg(long)]
    watch_seconds: Option<f64>,
    #[arg(long, default_value = "127.0.0.1")]
    postgres_host: String,
    #[arg(long, default_value_t = 5432)]
    postgres_port: u16,
    #[arg(long, default_value = "postgres")]
    postgres_user: String,
}

const CASE_NAMES: [&str; 5] = ["put", "cas", "get", "list", "watch"];

impl Args {
    fn cases(&self) -> Result<Vec<String>> {
        let cases: Vec<String> = self.cases.split(',').map(|case| case.trim().to_string()).collect();
        for case in &cases {
            if !CASE_NAMES.contains(&case.as_str()) {
                anyhow::bail!("unknown case {case:?} in --cases; expected some of {CASE_NAMES:?}");
            }
        }
        Ok(cases)
    }

    fn settings(&self) -> Result<Settings> {
        let quick = self.quick;
        let put_concurrency = self
            .put_clients
            .split(',')
            .map(|count| count.trim().parse::<usize>().with_context(|| format!("--put-clients: {count:?}")))
            .collect::<Result<Vec<_>>>()?;
        let run_seconds = self.run_seconds.unwrap_or(if quick { 0.5 } else { 3.0 });
        Ok(Settings {
            repeats: self.repeats.unwrap_or(3).max(1),
            put_concurrency,
            put_run_limit: Duration::from_secs_f64(run_seconds),
            put_run_max_requests: self.run_max_requests,
            key_order: self.key_order,
            key_space: self.key_space.max(1),
            cas_clients: self.cas_clients.max(1),
            cas_hot_keys: self.cas_hot_keys.max(1),
            get_run_limit: Duration::from_secs_f64(run_seconds * 2.0 / 3.0),
            list_values: self.list_values.unwrap_or(if quick { 2_000 } else { 10_000 }).max(1),
            list_value_bytes: self.list_value_bytes,
            list_reads: if quick { 3 } else { 5 },
            superseded_revisions: self.superseded.unwrap_or(if quick { 20_000 } else { 200_000 }),
            watchers: self.watchers.unwrap_or(1_000).max(1),
            watch_writes_per_second: self.watch_writes_per_second.max(1),
            watch_run_limit: Duration::from_secs_f64(self.watch_seconds.unwrap_or(if quick { 1.0 } else { 5.0 })),
            watch_drain_limit: Duration::from_secs(if quick { 10 } else { 20 }),
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The pod network benchmark and its probes are plain threads and blocking sockets.
    match cli.mode {
        Some(Mode::PodNetwork(args)) => return pod_network::run(args),
        Some(Mode::Hosted(args)) => return hosted::run(args),
        Some(Mode::TcpSink(args)) => return pod_network::sink(args),
        Some(Mode::TcpSource(args)) => return pod_network::source(args),
        _ => {}
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")?;
    match cli.mode {
        Some(Mode::Api(api_args)) => runtime.block_on(api::run(api_args)),
        Some(Mode::Restart(restart_args)) => runtime.block_on(restart::run(restart_args)),
        Some(Mode::Pods(pods_args)) => runtime.block_on(pods::run(pods_args)),
        Some(Mode::Dns(dns_args)) => runtime.block_on(dns::run(dns_args)),
        Some(Mode::Services(services_args)) => runtime.block_on(services::run(services_args)),
        Some(Mode::Tunnel(command)) => runtime.block_on(tunnel::run(command)),
        Some(Mode::Scheduler(scheduler_args)) => runtime.block_on(scheduler::run(scheduler_args)),
        Some(Mode::SimulatedNodes(nodes_args)) => runtime.block_on(simulated_nodes::run(nodes_args)),
        Some(Mode::PodNetwork(_) | Mode::Hosted(_) | Mode::TcpSink(_) | Mode::TcpSource(_)) => {
            unreachable!("handled above")
        }
        None => runtime.block_on(run(cli.datastore)),
    }
}

/// A selected target; `live` is None when it never started or its process died (the status row says why).
struct Slot {
    kind: TargetKind,
    live: Option<Box<Live>>,
    key_sequence: Arc<AtomicU64>,
}

struct Live {
    target: RunningTarget,
    connections: Connections,
    idle_memory: Option<MemoryUsage>,
}

impl Slot {
    fn running(&self) -> Option<(&RunningTarget, &Connections)> {
        self.live.as_deref().map(|live| (&live.target, &live.connections))
    }
}

async fn run(args: Args) -> Result<()> {
    let settings = args.settings()?;
    let cases = args.cases()?;
    let kinds = TargetKind::parse_list(&args.targets)?;
    let machine = MachineInfo::read();
    let load_at_start = read_trimmed("/proc/loadavg");
    let pinning = choose_pinning(&args, &machine).await;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let kaasd_binary = api_server::kaasd_binary(args.kaasd.as_ref())?;
    let config = LaunchConfig {
        etcd_binary: find_on_path(&args.etcd).unwrap_or_else(|| args.etcd.clone()),
        kaasd_binary,
        server_cpu: pinning.as_ref().ok().copied(),
        work_dir,
        postgres: PostgresAdmin {
            host: args.postgres_host.clone(),
            port: args.postgres_port,
            user: args.postgres_user.clone(),
        },
    };

    let mut titles = Vec::new();
    for kind in &kinds {
        titles.push((*kind, column_title(*kind, &config).await));
    }
    let mut table = Table::new(titles);
    let mut slots = Vec::new();
    let mut command_lines = Vec::new();
    for kind in &kinds {
        progress(&format!("starting {}", kind.short_name()));
        let live = match start_target(*kind, &config).await {
            Ok((target, connections)) => {
                table.set_status(*kind, "ok".to_string());
                command_lines.push(format!("{}: `{}`", kind.short_name(), target.command_line));
                Some(Box::new(Live { target, connections, idle_memory: None }))
            }
            Err(error) => {
                let why = format!("{error:#}");
                progress(&format!("NOT RUNNING {}: {why}", kind.short_name()));
                table.set_status(*kind, format!("**NOT RUN: {why}**"));
                None
            }
        };
        slots.push(Slot { kind: *kind, live, key_sequence: Arc::new(AtomicU64::new(0)) });
    }

    tokio::time::sleep(IDLE_SETTLE).await;
    for slot in &mut slots {
        if let Some(live) = &mut slot.live {
            live.idle_memory = live.target.memory().ok();
        }
    }

    let run_started = Instant::now();
    run_cases(&mut slots, &settings, &cases, &mut table).await;

    for slot in &mut slots {
        let kind = slot.kind;
        let Some(live) = slot.live.take() else { continue };
        record_resources(&mut table, kind, &live.target, live.idle_memory).await;
        if let Err(error) = live.target.stop().await {
            progress(&format!("stopping {}: {error:#}", kind.short_name()));
        }
    }

    let section = render_section(RenderInput {
        args: &args,
        settings: &settings,
        machine: &machine,
        pinning: &pinning,
        load_at_start: &load_at_start,
        load_at_end: &read_trimmed("/proc/loadavg"),
        command_lines: &command_lines,
        table: &table,
        elapsed: run_started.elapsed(),
    });
    println!("{section}");
    if let Some(path) = &args.write {
        report::write_section(path, &section)?;
        progress(&format!("wrote results to {}", path.display()));
    }
    Ok(())
}

async fn start_target(kind: TargetKind, config: &LaunchConfig) -> Result<(RunningTarget, Connections)> {
    let target = targets::launch(kind, config).await?;
    let mut clients = Vec::with_capacity(CONNECTIONS_PER_TARGET);
    for _ in 0..CONNECTIONS_PER_TARGET {
        clients.push(target.connect().await?);
    }
    Ok((target, Connections::new(clients)?))
}

/// Every selected case, run by run, target by target. A failing case marks its cells and moves on; a target
/// whose process died is taken out of the remaining cases, with the reason in its status.
async fn run_cases(slots: &mut [Slot], settings: &Settings, cases: &[String], table: &mut Table) {
    for case in CASE_NAMES.iter().filter(|name| cases.iter().any(|selected| selected == *name)) {
        match *case {
            "put" => put_cases(slots, settings, table).await,
            "cas" => cas_case(slots, settings, table).await,
            "get" => get_case(slots, settings, table).await,
            "list" => list_cases(slots, settings, table).await,
            _ => watch_case(slots, settings, table).await,
        }
        log_memory_after(case, slots);
    }
}

/// Memory after each case goes to stderr: it shows which case makes a server grow, without a table row each.
fn log_memory_after(case: &str, slots: &[Slot]) {
    for slot in slots {
        let Some((target, _)) = slot.running() else { continue };
        if let Ok(memory) = target.memory() {
            progress(&format!(
                "after {case}: {} VmRSS {:.0} MiB, VmHWM {:.0} MiB",
                slot.kind.short_name(),
                memory.resident_bytes as f64 / 1048576.0,
                memory.peak_resident_bytes as f64 / 1048576.0
            ));
        }
    }
}

const MS: &str = "ms";

async fn put_cases(slots: &mut [Slot], settings: &Settings, table: &mut Table) {
    for &concurrency in &settings.put_concurrency {
        let clients = if concurrency == 1 { "1 client".to_string() } else { format!("{concurrency} clients") };
        let label = format!("put {}B/{}B, {clients}", workloads::PUT_KEY_BYTES, workloads::PUT_VALUE_BYTES);
        progress(&label);
        let mut samples: BTreeMap<TargetKind, Vec<workloads::LoadStats>> = BTreeMap::new();
        for _ in 0..settings.repeats {
            for slot in slots.iter_mut() {
                let Some((_, connections)) = slot.running() else { continue };
                let result = workloads::put_throughput(connections, concurrency, settings, &slot.key_sequence).await;
                match result {
                    Ok(stats) => samples.entry(slot.kind).or_default().push(stats),
                    Err(error) => {
                        fail_case(table, slot, &[(&format!("{label}: throughput"), "ops/s", Better::Higher)], &error)
                    }
                }
            }
        }
        for (kind, runs) in samples {
            record_load(table, &label, "ops/s", kind, &runs);
        }
    }
}

async fn cas_case(slots: &mut [Slot], settings: &Settings, table: &mut Table) {
    let label = format!("CAS txn, {} clients on {} hot keys", settings.cas_clients, settings.cas_hot_keys);
    progress(&label);
    let mut samples: BTreeMap<TargetKind, Vec<workloads::CasStats>> = BTreeMap::new();
    for run in 0..settings.repeats {
        for slot in slots.iter_mut() {
            let Some((_, connections)) = slot.running() else { continue };
            match workloads::cas_contention(connections, settings, run).await {
                Ok(stats) => samples.entry(slot.kind).or_default().push(stats),
                Err(error) => {
                    fail_case(table, slot, &[(&format!("{label}: successful updates"), "/s", Better::Higher)], &error)
                }
            }
        }
    }
    for (kind, runs) in samples {
        let updates = workloads::median(&mut runs.iter().map(|run| run.updates_per_second).collect::<Vec<_>>());
        let conflicts = workloads::median(&mut runs.iter().map(|run| run.conflict_rate * 100.0).collect::<Vec<_>>());
        table.number(&format!("{label}: successful updates"), "/s", Better::Higher, kind, updates);
        table.number(&format!("{label}: conflict rate"), "%", Better::Lower, kind, conflicts);
    }
}

async fn get_case(slots: &mut [Slot], settings: &Settings, table: &mut Table) {
    let label = "get, 1 client, one key".to_string();
    progress(&label);
    let mut samples: BTreeMap<TargetKind, Vec<workloads::LoadStats>> = BTreeMap::new();
    for _ in 0..settings.repeats {
        for slot in slots.iter_mut() {
            let Some((_, connections)) = slot.running() else { continue };
            match workloads::get_latency(connections, settings).await {
                Ok(stats) => samples.entry(slot.kind).or_default().push(stats),
                Err(error) => fail_case(table, slot, &[(&format!("{label}: p50"), MS, Better::Lower)], &error),
            }
        }
    }
    for (kind, runs) in samples {
        record_latencies(table, &label, kind, &runs);
    }
}

/// Loads the list keys and reads them back; then overwrites them until the superseded revisions are written
/// and reads them again, which shows what an uncompacted history costs a full list.
async fn list_cases(slots: &mut [Slot], settings: &Settings, table: &mut Table) {
    let list_label = format!("list {} × {} B values (one range read)", settings.list_values, settings.list_value_bytes);
    let load_label = format!("load {} × {} B values, 64 clients", settings.list_values, settings.list_value_bytes);
    progress(&list_label);
    for slot in slots.iter_mut() {
        let Some((_, connections)) = slot.running() else { continue };
        let loaded = workloads::write_list_keys(connections, settings, settings.list_values as u64, 0).await;
        let listed = match loaded {
            Ok(puts_per_second) => {
                table.number(&load_label, "puts/s", Better::Higher, slot.kind, puts_per_second);
                workloads::list_all(connections, settings).await
            }
            Err(error) => Err(error),
        };
        match listed {
            Ok(stats) => record_list(table, &list_label, slot.kind, stats),
            Err(error) => fail_case(table, slot, &[(&format!("{list_label}: time"), MS, Better::Lower)], &error),
        }
    }

    let superseded_label = format!("same list after {} superseded revisions", settings.superseded_revisions);
    let overwrite_label =
        format!("write {} superseding puts over those keys, 64 clients", settings.superseded_revisions);
    progress(&superseded_label);
    for slot in slots.iter_mut() {
        let Some((_, connections)) = slot.running() else { continue };
        let overwritten = workloads::write_list_keys(connections, settings, settings.superseded_revisions, 1).await;
        let listed = match overwritten {
            Ok(puts_per_second) => {
                table.number(&overwrite_label, "puts/s", Better::Higher, slot.kind, puts_per_second);
                workloads::list_all(connections, settings).await
            }
            Err(error) => Err(error),
        };
        match listed {
            Ok(stats) => record_list(table, &superseded_label, slot.kind, stats),
            Err(error) => fail_case(table, slot, &[(&format!("{superseded_label}: time"), MS, Better::Lower)], &error),
        }
    }
}

async fn watch_case(slots: &mut [Slot], settings: &Settings, table: &mut Table) {
    let label =
        format!("watch, {} watchers on one prefix, {} writes/s", settings.watchers, settings.watch_writes_per_second);
    progress(&label);
    for slot in slots.iter_mut() {
        let Some((target, _)) = slot.running() else { continue };
        let kind = slot.kind;
        let result = workloads::watch_fanout(target, settings).await;
        match result {
            Ok(stats) => {
                let rows: [(&str, &'static str, Better, f64); 7] = [
                    ("writes done", "count", Better::Higher, stats.writes as f64),
                    ("write rate reached", "writes/s", Better::Higher, stats.achieved_writes_per_second),
                    ("put issued → event, p50", MS, Better::Lower, millis(stats.p50)),
                    ("put issued → event, p99", MS, Better::Lower, millis(stats.p99)),
                    ("put issued → event, max", MS, Better::Lower, millis(stats.max)),
                    ("lost events", "count", Better::Zero, stats.lost_events as f64),
                    ("duplicate events", "count", Better::Zero, stats.duplicate_events as f64),
                ];
                for (name, unit, better, value) in rows {
                    table.number(&format!("{label}: {name}"), unit, better, kind, value);
                }
                if let Some(cores) = stats.server_cores {
                    table.number(&format!("{label}: server CPU"), "cores", Better::Lower, kind, cores);
                }
                if let Some(cores) = stats.load_generator_cores {
                    table.number(&format!("{label}: load generator CPU"), "cores", Better::Lower, kind, cores);
                }
            }
            Err(error) => {
                fail_case(table, slot, &[(&format!("{label}: put issued → event, p50"), MS, Better::Lower)], &error)
            }
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn record_load(table: &mut Table, label: &str, unit: &'static str, kind: TargetKind, runs: &[workloads::LoadStats]) {
    let throughput = workloads::median(&mut runs.iter().map(|run| run.requests_per_second).collect::<Vec<_>>());
    table.number(&format!("{label}: throughput"), unit, Better::Higher, kind, throughput);
    record_latencies(table, label, kind, runs);
}

fn record_latencies(table: &mut Table, label: &str, kind: TargetKind, runs: &[workloads::LoadStats]) {
    let p50 = workloads::median(&mut runs.iter().map(|run| millis(run.p50)).collect::<Vec<_>>());
    let p99 = workloads::median(&mut runs.iter().map(|run| millis(run.p99)).collect::<Vec<_>>());
    table.number(&format!("{label}: p50"), "ms", Better::Lower, kind, p50);
    table.number(&format!("{label}: p99"), "ms", Better::Lower, kind, p99);
}

fn record_list(table: &mut Table, label: &str, kind: TargetKind, stats: workloads::ListStats) {
    table.number(&format!("{label}: time"), "ms", Better::Lower, kind, stats.median_seconds * 1000.0);
    table.number(&format!("{label}: rate"), "MB/s", Better::Higher, kind, stats.megabytes_per_second);
}

/// Marks the case's first row failed for this target, and takes the target out if its process is gone.
fn fail_case(table: &mut Table, slot: &mut Slot, rows: &[(&str, &'static str, Better)], error: &anyhow::Error) {
    let why = format!("{error:#}");
    progress(&format!("{} failed: {why}", slot.kind.short_name()));
    for (label, unit, better) in rows {
        table.failed(label, unit, *better, slot.kind, &why);
    }
    if let Some(live) = &mut slot.live {
        if let Some(reason) = live.target.exit_reason() {
            table.set_status(slot.kind, format!("**FAILED: {reason}**"));
            slot.live = None;
        }
    }
}

async fn record_resources(table: &mut Table, kind: TargetKind, target: &RunningTarget, idle: Option<MemoryUsage>) {
    const MIB: f64 = 1024.0 * 1024.0;
    let rss_label = "server RSS (VmRSS)";
    if let Some(idle) = idle {
        table.number(
            &format!("{rss_label}, idle after start"),
            "MiB",
            Better::Lower,
            kind,
            idle.resident_bytes as f64 / MIB,
        );
    }
    match target.memory() {
        Ok(memory) => {
            table.number(
                &format!("{rss_label}, peak (VmHWM)"),
                "MiB",
                Better::Lower,
                kind,
                memory.peak_resident_bytes as f64 / MIB,
            );
            table.number(
                &format!("{rss_label}, at the end"),
                "MiB",
                Better::Lower,
                kind,
                memory.resident_bytes as f64 / MIB,
            );
        }
        Err(error) => {
            table.failed(&format!("{rss_label}, peak (VmHWM)"), "MiB", Better::Lower, kind, &format!("{error:#}"))
        }
    }
    match target.cpu_seconds() {
        Ok(seconds) => table.number("server CPU time, whole run", "s", Better::Lower, kind, seconds),
        Err(error) => table.failed("server CPU time, whole run", "s", Better::Lower, kind, &format!("{error:#}")),
    }
    let disk_label = "data on disk at the end";
    match target.data_size_bytes().await {
        Ok(bytes) => table.number(disk_label, "MiB", Better::Lower, kind, bytes as f64 / MIB),
        Err(error) => table.failed(disk_label, "MiB", Better::Lower, kind, &format!("{error:#}")),
    }
    progress(&format!("{} data size measured as {}", kind.short_name(), target.data_size_method()));
}

async fn column_title(kind: TargetKind, config: &LaunchConfig) -> String {
    match kind {
        TargetKind::Etcd => match targets::etcd_version(&config.etcd_binary).await {
            Ok(version) => format!("etcd {version}"),
            Err(_) => "etcd".to_string(),
        },
        TargetKind::Sqlite => "kaasd on SQLite".to_string(),
        TargetKind::Postgres => match config.postgres.psql("SHOW server_version").await {
            Ok(version) => format!("kaasd on PostgreSQL {}", version.split_whitespace().next().unwrap_or("")),
            Err(_) => "kaasd on PostgreSQL".to_string(),
        },
    }
}

/// The CPU to pin servers to, or why they run unpinned.
async fn choose_pinning(args: &Args, machine: &MachineInfo) -> std::result::Result<usize, String> {
    if args.no_pin {
        return Err("not pinned (--no-pin)".to_string());
    }
    if machine.cpus < 2 {
        return Err(format!("not pinned: only {} CPU, nothing to leave to the load generator", machine.cpus));
    }
    let probe =
        tokio::process::Command::new("taskset").args(["-c", &args.server_cpu.to_string(), "true"]).output().await;
    match probe {
        Ok(output) if output.status.success() => Ok(args.server_cpu),
        Ok(output) => Err(format!(
            "not pinned: taskset -c {} failed: {}",
            args.server_cpu,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Err(format!("not pinned: taskset unavailable: {error}")),
    }
}

fn find_on_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|directory| directory.join(program)).find(|candidate| candidate.is_file())
}

struct MachineInfo {
    cpus: usize,
    cpu_model: String,
    memory: String,
    kernel: String,
}

impl MachineInfo {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".to_string());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB RAM", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown RAM".to_string());
        MachineInfo {
            cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            cpu_model,
            memory,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|error| format!("(cannot read {path}: {error})"))
}

fn progress(message: &str) {
    eprintln!("kaasd-bench: {message}");
}

struct RenderInput<'a> {
    args: &'a Args,
    settings: &'a Settings,
    machine: &'a MachineInfo,
    pinning: &'a std::result::Result<usize, String>,
    load_at_start: &'a str,
    load_at_end: &'a str,
    command_lines: &'a [String],
    table: &'a Table,
    elapsed: Duration,
}

fn render_section(input: RenderInput<'_>) -> String {
    let RenderInput { args, settings, machine, pinning, load_at_start, load_at_end, command_lines, table, elapsed } =
        input;
    let invocation: Vec<String> = std::env::args().collect();
    let pinning_text = match pinning {
        Ok(cpu) => format!(
            "servers pinned to CPU {cpu} with `taskset -c {cpu}`; the load generator is not pinned; \
             the PostgreSQL server (a system service) is not pinned"
        ),
        Err(why) => why.clone(),
    };
    let mut lines = vec![
        format!("Command: `{}`", invocation.join(" ")),
        String::new(),
        format!(
            "- Machine: {} CPUs (nproc), {}, {}, Linux {}",
            machine.cpus, machine.cpu_model, machine.memory, machine.kernel
        ),
        format!("- Date: {}; whole run took {:.0} s", report::utc_now_text(), elapsed.as_secs_f64()),
        format!("- Pinning: {pinning_text}"),
        format!("- Load average (1/5/15 min, runnable/total, last pid) at start: `{load_at_start}`, at end: `{load_at_end}`"),
        format!(
            "- Put, CAS and get cases: {} runs each of at most {:.1} s / {} requests, interleaved across targets; \
             the table shows the median run. Put keys: {:?}.",
            settings.repeats,
            settings.put_run_limit.as_secs_f64(),
            settings.put_run_max_requests,
            settings.key_order
        ),
        format!(
            "- List: {} values of {} B, {} full range reads (median); then {} superseded revisions written over the \
             same keys (no compaction on either side), and the same reads again.",
            settings.list_values, settings.list_value_bytes, settings.list_reads, settings.superseded_revisions
        ),
        format!(
            "- Watch: {} watchers on one prefix ({} streams per connection), {} writes/s for {:.0} s; latency is from the \
             moment the put was issued (timestamp in the value) to the event at each watcher, so it includes the put's \
             own commit; lost = not received {} s after the last put was acknowledged. The load generator decodes \
             watchers × writes events and shares the 2 CPUs, so at high fan-out it can be the bottleneck for both \
             targets alike.",
            settings.watchers,
            50,
            settings.watch_writes_per_second,
            settings.watch_run_limit.as_secs_f64(),
            settings.watch_drain_limit.as_secs()
        ),
        "- Ratio columns: kaasd ÷ etcd of the same row; read them with the row's \"higher/lower is better\".".to_string(),
    ];
    if args.quick {
        lines.push("- **--quick smoke run: sizes and run times are cut; do not quote these numbers.**".to_string());
    }
    for command_line in command_lines {
        lines.push(format!("- Server {command_line}"));
    }
    lines.push(String::new());
    lines.push(table.to_markdown());
    lines.join("\n")
}
