//! `kaasd-bench pod-network`: pod → pod TCP throughput and round-trip latency over the worker's routes, against
//! host → host over the same links, in one run.
//!
//! It starts the three-node pod lab (`kaasd_e2e::pod_lab`: `lan-a` and `lan-b` on one LAN, `far-c` behind a
//! router), puts this very binary in an image, and runs `kaasd-bench tcp-sink` in pods and, as the baseline, in the
//! nodes' own network namespaces. `kaasd-bench tcp-source` then measures from `lan-a`'s pod (through `kubectl exec`)
//! and from `lan-a`'s host: to `lan-b` (host-gw for pods) and to `far-c` (VXLAN for pods). Rounds alternate
//! between the pod and host paths so background load hits both alike; medians are reported.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kaasd_e2e::images::binary_image;
use kaasd_e2e::pod_lab::PodLab;

const POD_PORT: u16 = 5001;
const HOST_PORT: u16 = 5002;
const IMAGE: &str = "kaasd.local/bench:1";

#[derive(clap::Args, Debug)]
pub struct PodNetworkArgs {
    /// Rounds per path; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of streaming per throughput measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Request/response exchanges per latency measurement.
    #[arg(long, default_value_t = 2000)]
    exchanges: usize,
}

#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    #[arg(long)]
    port: u16,
}

#[derive(clap::Args, Debug)]
pub struct SourceArgs {
    /// ADDRESS:PORT of a `tcp-sink`.
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2000)]
    exchanges: usize,
}

/// Accepts connections for ever: one whose first byte is `T` is read to its end and dropped (throughput), one
/// whose first byte is `L` gets every byte back at once (latency).
pub fn sink(args: SinkArgs) -> Result<()> {
    let listener =
        TcpListener::bind(("0.0.0.0", args.port)).with_context(|| format!("cannot listen on {}", args.port))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut mode = [0u8; 1];
            if stream.read_exact(&mut mode).is_err() {
                return;
            }
            let _ = stream.set_nodelay(true);
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(read) if mode[0] == b'L' => {
                        if stream.write_all(&buffer[..read]).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        });
    }
    Ok(())
}

/// Streams to a sink for `--seconds` (until the sink has read everything), then times `--exchanges` one-byte
/// round trips; prints `GBITS P50_MICROS P99_MICROS`.
pub fn source(args: SourceArgs) -> Result<()> {
    let mut stream = TcpStream::connect(&args.to).with_context(|| format!("cannot connect to {}", args.to))?;
    stream.write_all(b"T")?;
    let buffer = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed().as_secs_f64() < args.seconds {
        stream.write_all(&buffer)?;
        sent += buffer.len() as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    // The sink closes once it has read the last byte: only then has everything crossed the network.
    let _ = stream.read(&mut [0u8; 1]);
    let gbits = sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;

    let mut stream = TcpStream::connect(&args.to)?;
    stream.set_nodelay(true)?;
    stream.write_all(b"L")?;
    let mut micros = Vec::with_capacity(args.exchanges);
    let mut byte = [0u8; 1];
    for _ in 0..args.exchanges {
        let sent_at = Instant::now();
        stream.write_all(b"x")?;
        stream.read_exact(&mut byte)?;
        micros.push(sent_at.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    let quantile = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!("{gbits:.3} {:.0} {:.0}", quantile(0.5), quantile(0.99));
    Ok(())
}

struct Measurement {
    gbits: f64,
    p50: f64,
    p99: f64,
}

fn parse(output: std::process::Output, what: &str) -> Result<Measurement> {
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<f64> = text.split_whitespace().filter_map(|word| word.parse().ok()).collect();
    let [gbits, p50, p99] = numbers[..] else { bail!("{what} printed {text:?}") };
    Ok(Measurement { gbits, p50, p99 })
}

/// A `tcp-sink` in a node's network namespace (the host baseline); killed on drop.
struct HostSink(Child);

impl Drop for HostSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: PodNetworkArgs) -> Result<()> {
    let me = std::env::current_exe().context("cannot find this binary")?;
    eprintln!("starting the three-node lab…");
    let lab = PodLab::start()?;
    let image = binary_image(IMAGE, &me)?.build();
    for node in ["lan-a", "lan-b", "far-c"] {
        lab.import(node, &image)?;
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"sink-{node}"}},"spec":{{"nodeName":"{node}",
             "terminationGracePeriodSeconds":1,"containers":[{{"name":"main","image":"{IMAGE}","imagePullPolicy":"Never",
             "args":["tcp-sink","--port","{POD_PORT}"]}}]}}}}"#
        );
        lab.run_pod(&manifest)?;
    }
    let mut sinks = Vec::new();
    for node in ["lan-b", "far-c"] {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.namespace(node)))
            .arg("--")
            .arg(&me)
            .args(["tcp-sink", "--port", &HOST_PORT.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start a host sink")?;
        sinks.push(HostSink(child));
    }
    std::thread::sleep(Duration::from_millis(500));
    let hosts = [("lan-b", lab.lab.edge_address(1)), ("far-c", lab.lab.routed_edge_address(0))];
    let source_args = |to: String| {
        vec![
            "tcp-source".to_string(),
            "--to".into(),
            to,
            "--seconds".into(),
            args.seconds.to_string(),
            "--exchanges".into(),
            args.exchanges.to_string(),
        ]
    };
    let mut rows = Vec::new();
    for (node, host_address) in hosts {
        let pod_address = lab.pod_field(&format!("sink-{node}"), ".status.podIP");
        let mut pod = Vec::new();
        let mut host = Vec::new();
        for round in 0..args.rounds {
            eprintln!("lan-a → {node}, round {}…", round + 1);
            let mut exec = vec!["exec".to_string(), "sink-lan-a".into(), "--".into(), "/bin/kaasd-bench".into()];
            exec.extend(source_args(format!("{pod_address}:{POD_PORT}")));
            let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
            pod.push(parse(lab.controller.kubectl_output(&exec)?, "the pod source")?);
            let output = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", lab.namespace("lan-a")))
                .arg("--")
                .arg(&me)
                .args(source_args(format!("{host_address}:{HOST_PORT}")))
                .output()?;
            host.push(parse(output, "the host source")?);
        }
        rows.push((node, pod, host));
    }
    drop(sinks);
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("| path | pod → pod Gbit/s | host → host Gbit/s | ratio | pod RTT p50 / p99 µs | host RTT p50 / p99 µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (node, pod, host) in rows {
        let mode = if node == "lan-b" { "host-gw (same LAN)" } else { "VXLAN (across a router)" };
        let pod_gbits = median(&mut pod.iter().map(|m| m.gbits).collect());
        let host_gbits = median(&mut host.iter().map(|m| m.gbits).collect());
        println!(
            "| lan-a → {node}: {mode} | {pod_gbits:.2} | {host_gbits:.2} | {:.2}× | {:.0} / {:.0} | {:.0} / {:.0} |",
            pod_gbits / host_gbits,
            median(&mut pod.iter().map(|m| m.p50).collect()),
            median(&mut pod.iter().map(|m| m.p99).collect()),
            median(&mut host.iter().map(|m| m.p50).collect()),
            median(&mut host.iter().map(|m| m.p99).collect()),
        );
    }
    Ok(())
}
