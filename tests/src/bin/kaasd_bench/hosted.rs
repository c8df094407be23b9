//! `kaasd-bench hosted`: hosted control planes per GiB. Starts N `kaasd controller --hosted` processes (as a pod
//! runs them: unprivileged, nothing on disk), each a cluster of its own in its own database on one PostgreSQL
//! server, and reads each one's resident memory idle and after it stored `--objects` ConfigMaps; then times new
//! replicas of the first cluster from spawn to ready (the serving line, printed once /readyz is ok) against its
//! existing database.
//!
//! The anchors, k0smotron and Kamaji, need a Kubernetes cluster and images from a registry, neither of which this
//! machine has: their published figures (research/mothership.md) stand beside the measured ones.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use kaasd_e2e::controller::{Controller, Hosted};
use kaasd_e2e::databases::ServerDatabase;

const MIB: f64 = 1024.0 * 1024.0;
/// Time a started control plane gets before its idle memory is read: its controllers list everything after start.
const SETTLE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct HostedArgs {
    /// Hosted control planes started side by side, each its own cluster and database.
    #[arg(long, default_value_t = 10)]
    controllers: usize,
    /// ConfigMaps created in each cluster before the second memory reading.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Timed starts of a new replica against the first cluster's database; the median is reported.
    #[arg(long, default_value_t = 5)]
    starts: usize,
}

fn resident_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn configmaps(count: usize) -> String {
    let items: Vec<String> = (0..count)
        .map(|number| {
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"bench-{number}\"}},\
                 \"data\":{{\"key\":\"{}\"}}}}",
                "v".repeat(200)
            )
        })
        .collect();
    format!("{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{}]}}", items.join(","))
}

pub fn run(args: HostedArgs) -> Result<()> {
    if args.controllers == 0 {
        bail!("--controllers must be at least 1");
    }
    let mut databases = Vec::new();
    for number in 0..args.controllers {
        let database = ServerDatabase::not_yet_created("postgres", &format!("bench_hosted_{number}"))
            .context("PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is needed")?;
        databases.push(database);
    }
    let mut controllers = Vec::new();
    let mut first_starts = Vec::new();
    for database in &databases {
        let hosted = Hosted { datastore: database.url.clone(), secret_key: Hosted::new_secret_key() };
        let controller = Controller::start_hosted(hosted, Vec::new())?;
        first_starts.push(controller.started_in().as_secs_f64() * 1e3);
        controllers.push(controller);
    }
    eprintln!("started {} hosted control planes; settling", controllers.len());
    std::thread::sleep(SETTLE);
    let mut idle = Vec::new();
    for controller in &controllers {
        idle.push(resident_bytes(controller.pid().context("running")?)? as f64 / MIB);
    }
    let list = configmaps(args.objects);
    for controller in &controllers {
        controller.kubectl_stdin(&["create", "-f", "-", "-o", "name"], &list)?;
    }
    std::thread::sleep(SETTLE);
    let mut loaded = Vec::new();
    for controller in &controllers {
        loaded.push(resident_bytes(controller.pid().context("running")?)? as f64 / MIB);
    }
    let mut replica_starts = Vec::new();
    for _ in 0..args.starts.max(1) {
        let mut replica = controllers[0].start_another_replica()?;
        replica_starts.push(replica.started_in().as_secs_f64() * 1e3);
        replica.stop()?;
    }

    let idle_max = idle.iter().copied().fold(0.0, f64::max);
    let loaded_max = loaded.iter().copied().fold(0.0, f64::max);
    let idle_median = median(&mut idle);
    let loaded_median = median(&mut loaded);
    let first_start = median(&mut first_starts);
    let replica_start = median(&mut replica_starts);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("| measure | kaasd --hosted (measured) | k0smotron (published) | Kamaji (published) |");
    println!("|---|---|---|---|");
    println!(
        "| RSS per control plane, idle (median of {n}; max) | {idle_median:.1} MiB; {idle_max:.1} MiB | 210–560 MiB \
         | ~1,100 MiB per replica |",
        n = controllers.len()
    );
    println!(
        "| RSS per control plane after {} ConfigMaps (median; max) | {loaded_median:.1} MiB; {loaded_max:.1} MiB | | |",
        args.objects
    );
    println!("| control planes per GiB, idle (1024 / median) | {:.0} | 2–5 | < 1 |", 1024.0 / idle_median);
    println!("| first start on an empty database, spawn to ready (median) | {first_start:.0} ms | | |");
    println!(
        "| new replica against the existing database, spawn to ready (median of {}) | {replica_start:.0} ms | | |",
        replica_starts.len()
    );
    println!("\nload average at the end: {}", load.trim());
    Ok(())
}
