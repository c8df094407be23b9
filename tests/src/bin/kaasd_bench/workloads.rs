//! The load: every workload drives one target through etcd-client, with a bounded number of requests and a
//! time limit, and returns plain numbers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use hdrhistogram::Histogram;
use rand::Rng;

use crate::targets::MAX_MESSAGE_BYTES;

/// No single request may hang a run: a server that stops answering fails the case instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies are recorded in microseconds up to a minute.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyOrder {
    Sequential,
    Random,
}

/// Sizes and limits of every workload; `--quick` shrinks them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub repeats: usize,
    pub put_concurrency: Vec<usize>,
    pub put_run_limit: Duration,
    pub put_run_max_requests: u64,
    pub key_order: KeyOrder,
    pub key_space: u64,
    pub cas_clients: usize,
    pub cas_hot_keys: usize,
    pub get_run_limit: Duration,
    pub list_values: usize,
    pub list_value_bytes: usize,
    pub list_reads: usize,
    pub superseded_revisions: u64,
    pub watchers: usize,
    pub watch_writes_per_second: u64,
    pub watch_run_limit: Duration,
    pub watch_drain_limit: Duration,
}

pub const PUT_KEY_BYTES: usize = 8;
pub const PUT_VALUE_BYTES: usize = 256;
/// Loading and overwriting use this many clients in flight, enough to keep a group-commit writer busy.
const BULK_CONCURRENCY: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct LoadStats {
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct CasStats {
    pub updates_per_second: f64,
    pub conflict_rate: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct ListStats {
    pub median_seconds: f64,
    pub megabytes_per_second: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct WatchStats {
    pub writes: u64,
    pub achieved_writes_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Events a watcher never received within the drain limit after the last write was acknowledged.
    pub lost_events: u64,
    pub duplicate_events: u64,
    /// CPU used from the first write until the watchers are done, in cores: says whether the server or the
    /// load generator was the limit.
    pub server_cores: Option<f64>,
    pub load_generator_cores: Option<f64>,
}

/// The clients of one target: several connections, because one HTTP/2 connection serialises on one
/// socket and would cap throughput for reasons that are not the server's.
#[derive(Clone)]
pub struct Connections {
    clients: Vec<Client>,
}

impl Connections {
    pub fn new(clients: Vec<Client>) -> Result<Self> {
        if clients.is_empty() {
            bail!("a target needs at least one connection");
        }
        Ok(Connections { clients })
    }

    fn kv(&self, worker: usize) -> KvClient {
        self.clients[worker % self.clients.len()].kv_client().max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).context("creating a latency histogram")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, HISTOGRAM_MAX_MICROS);
    histogram.saturating_record(micros);
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_micros(histogram.value_at_quantile(q))
}

async fn bounded<T>(
    what: &str,
    request: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| anyhow!("{what} took longer than {REQUEST_TIMEOUT:?}"))?
        .with_context(|| what.to_string())
}

/// Values are filled with varied bytes so no layer can shrink them by compression.
fn value_of(bytes: usize, seed: u64) -> Vec<u8> {
    (0..bytes as u64).map(|i| b'a' + ((i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(17))) % 26) as u8).collect()
}

/// 8-byte keys: a one-letter prefix and seven digits.
fn put_key(number: u64) -> String {
    format!("p{:07}", number % 10_000_000)
}

/// Puts with `concurrency` clients in flight until the request budget or time limit runs out.
pub async fn put_throughput(
    connections: &Connections,
    concurrency: usize,
    settings: &Settings,
    sequence: &Arc<AtomicU64>,
) -> Result<LoadStats> {
    let issued = Arc::new(AtomicU64::new(0));
    let value = value_of(PUT_VALUE_BYTES, concurrency as u64);
    let started = Instant::now();
    let deadline = started + settings.put_run_limit;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let mut kv = connections.kv(worker);
        let issued = issued.clone();
        let sequence = sequence.clone();
        let value = value.clone();
        let settings = settings.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < settings.put_run_max_requests {
                let number = match settings.key_order {
                    KeyOrder::Sequential => sequence.fetch_add(1, Ordering::Relaxed),
                    KeyOrder::Random => rand::rng().random_range(0..settings.key_space),
                };
                let request_started = Instant::now();
                bounded("put", kv.put(put_key(number), value.clone(), None)).await?;
                record(&mut histogram, request_started.elapsed());
            }
            anyhow::Ok(histogram)
        }));
    }
    let histogram = join_histograms(workers).await?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(LoadStats {
        requests_per_second: histogram.len() as f64 / elapsed,
        p50: quantile(&histogram, 0.50),
        p99: quantile(&histogram, 0.99),
    })
}

async fn join_histograms(workers: Vec<tokio::task::JoinHandle<Result<Histogram<u64>>>>) -> Result<Histogram<u64>> {
    let mut total = new_histogram()?;
    for worker in workers {
        let histogram = worker.await.context("load worker panicked")??;
        total.add(&histogram).context("merging histograms")?;
    }
    Ok(total)
}

/// Optimistic updates as Kubernetes does them: Txn(If ModRevision == seen Then Put Else Get), with
/// `cas_clients` clients fighting over `cas_hot_keys` keys.
pub async fn cas_contention(connections: &Connections, settings: &Settings, run: usize) -> Result<CasStats> {
    let hot_keys: Vec<String> = (0..settings.cas_hot_keys).map(|k| format!("cas/hot{k}")).collect();
    let mut kv = connections.kv(0);
    for key in &hot_keys {
        bounded("seeding a hot key", kv.put(key.as_str(), value_of(PUT_VALUE_BYTES, 0), None)).await?;
    }
    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + settings.put_run_limit;
    let mut workers = Vec::new();
    for worker in 0..settings.cas_clients {
        let mut kv = connections.kv(worker);
        let hot_keys = hot_keys.clone();
        let (successes, conflicts, issued) = (successes.clone(), conflicts.clone(), issued.clone());
        let max_requests = settings.put_run_max_requests;
        let value = value_of(PUT_VALUE_BYTES, (run * 1000 + worker) as u64);
        workers.push(tokio::spawn(async move {
            // What this client last saw of each key, as an informer cache would.
            let mut seen_revision = Vec::with_capacity(hot_keys.len());
            for key in &hot_keys {
                let response = bounded("reading a hot key", kv.get(key.as_str(), None)).await?;
                let kv_pair = response.kvs().first().ok_or_else(|| anyhow!("hot key {key} vanished"))?;
                seen_revision.push(kv_pair.mod_revision());
            }
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
                let slot = rand::rng().random_range(0..hot_keys.len());
                let key = hot_keys[slot].as_str();
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, seen_revision[slot])])
                    .and_then([TxnOp::put(key, value.clone(), None)])
                    .or_else([TxnOp::get(key, None)]);
                let response = bounded("CAS txn", kv.txn(txn)).await?;
                if response.succeeded() {
                    successes.fetch_add(1, Ordering::Relaxed);
                    seen_revision[slot] =
                        response.header().ok_or_else(|| anyhow!("txn response without header"))?.revision();
                } else {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    let current = response.op_responses().into_iter().find_map(|op| match op {
                        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
                        _ => None,
                    });
                    seen_revision[slot] =
                        current.ok_or_else(|| anyhow!("failed CAS returned no current value for {key}"))?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await.context("CAS worker panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let successes = successes.load(Ordering::Relaxed) as f64;
    let conflicts = conflicts.load(Ordering::Relaxed) as f64;
    Ok(CasStats {
        updates_per_second: successes / elapsed,
        conflict_rate: if successes + conflicts > 0.0 { conflicts / (successes + conflicts) } else { 0.0 },
    })
}

/// One client reading one key back to back: the latency of a point read.
pub async fn get_latency(connections: &Connections, settings: &Settings) -> Result<LoadStats> {
    let mut kv = connections.kv(0);
    let key = "get/one";
    bounded("seeding the read key", kv.put(key, value_of(PUT_VALUE_BYTES, 1), None)).await?;
    let mut histogram = new_histogram()?;
    let started = Instant::now();
    let deadline = started + settings.get_run_limit;
    let mut requests = 0;
    while Instant::now() < deadline && requests < settings.put_run_max_requests {
        let request_started = Instant::now();
        let response = bounded("get", kv.get(key, None)).await?;
        record(&mut histogram, request_started.elapsed());
        if response.kvs().len() != 1 {
            bail!("get of {key} returned {} values, expected 1", response.kvs().len());
        }
        requests += 1;
    }
    Ok(LoadStats {
        requests_per_second: requests as f64 / started.elapsed().as_secs_f64(),
        p50: quantile(&histogram, 0.50),
        p99: quantile(&histogram, 0.99),
    })
}

pub const LIST_PREFIX: &str = "list/";

fn list_key(index: usize) -> String {
    format!("{LIST_PREFIX}{index:08}")
}

/// Writes `total_puts` puts round-robin over the list keys with many clients in flight; with more puts than
/// keys this leaves superseded revisions behind. Returns puts per second.
pub async fn write_list_keys(
    connections: &Connections,
    settings: &Settings,
    total_puts: u64,
    round: u64,
) -> Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..BULK_CONCURRENCY {
        let mut kv = connections.kv(worker);
        let next = next.clone();
        let (key_count, value_bytes) = (settings.list_values as u64, settings.list_value_bytes);
        workers.push(tokio::spawn(async move {
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= total_puts {
                    return anyhow::Ok(());
                }
                let value = value_of(value_bytes, round + number / key_count);
                bounded("put of a list value", kv.put(list_key((number % key_count) as usize), value, None)).await?;
            }
        }));
    }
    for worker in workers {
        worker.await.context("write worker panicked")??;
    }
    Ok(total_puts as f64 / started.elapsed().as_secs_f64())
}

/// Reads the whole list prefix in one range request, `list_reads` times; the median stands.
pub async fn list_all(connections: &Connections, settings: &Settings) -> Result<ListStats> {
    let mut kv = connections.kv(0);
    let mut seconds = Vec::with_capacity(settings.list_reads);
    let mut bytes = 0;
    for _ in 0..settings.list_reads.max(1) {
        let started = Instant::now();
        let response = bounded("full range read", kv.get(LIST_PREFIX, Some(GetOptions::new().with_prefix()))).await?;
        seconds.push(started.elapsed().as_secs_f64());
        if response.kvs().len() != settings.list_values {
            bail!("range read returned {} values, expected {}", response.kvs().len(), settings.list_values);
        }
        bytes = response.kvs().iter().map(|kv| kv.key().len() + kv.value().len()).sum::<usize>();
    }
    let median_seconds = median(&mut seconds);
    Ok(ListStats { median_seconds, megabytes_per_second: bytes as f64 / 1e6 / median_seconds })
}

pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

pub const WATCH_PREFIX: &str = "watch/";
/// Watch values are small: the timestamp is what matters, and big values would make the load generator,
/// which decodes watchers × writes events, the bottleneck sooner.
const WATCH_VALUE_BYTES: usize = 64;
/// Watch streams per connection, under the 100-stream limit some HTTP/2 servers default to.
const WATCH_STREAMS_PER_CONNECTION: usize = 50;

/// Nanoseconds since the first call; the writer and the watchers share this clock, being one process.
fn clock_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `watchers` watchers on one prefix while one writer puts at a fixed rate. Each value carries its sequence
/// number and the time its put was issued; each watcher measures issue-to-event latency and checks it saw
/// every sequence number exactly once.
pub async fn watch_fanout(target: &crate::targets::RunningTarget, settings: &Settings) -> Result<WatchStats> {
    let writes = (settings.watch_writes_per_second as f64 * settings.watch_run_limit.as_secs_f64()).round() as u64;
    let connection_count = settings.watchers.div_ceil(WATCH_STREAMS_PER_CONNECTION).max(1);
    let mut watch_connections = Vec::with_capacity(connection_count);
    for _ in 0..connection_count {
        watch_connections.push(target.connect().await?);
    }
    let writer = target.connect().await?;
    let mut writer_kv = writer.kv_client();
    let start_revision = bounded("reading the current revision", writer_kv.get(WATCH_PREFIX, None))
        .await?
        .header()
        .ok_or_else(|| anyhow!("range response without header"))?
        .revision()
        + 1;

    let stop = Arc::new(AtomicBool::new(false));
    let finished_watchers = Arc::new(AtomicUsize::new(0));
    let mut watcher_tasks = Vec::with_capacity(settings.watchers);
    for watcher in 0..settings.watchers {
        let mut watch_client =
            watch_connections[watcher % connection_count].watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES);
        let options = WatchOptions::new().with_prefix().with_start_revision(start_revision);
        let mut stream = bounded("creating a watch", watch_client.watch(WATCH_PREFIX, Some(options))).await?;
        // Wait for the created response so every watcher exists before the first write.
        let created = bounded("waiting for watch creation", stream.message())
            .await?
            .ok_or_else(|| anyhow!("watch stream closed before it was created"))?;
        if !created.created() || created.canceled() {
            bail!("watch creation was answered with {created:?}");
        }
        let (stop, finished_watchers) = (stop.clone(), finished_watchers.clone());
        watcher_tasks.push(tokio::spawn(async move {
            let mut seen = vec![false; writes as usize];
            let (mut distinct, mut duplicates) = (0u64, 0u64);
            let mut histogram = new_histogram()?;
            while distinct < writes && !stop.load(Ordering::Relaxed) {
                // Short waits so the stop flag is noticed when events never come.
                let message = match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Err(_) => continue,
                    Ok(message) => message.context("watch stream failed")?,
                };
                let Some(response) = message else { bail!("watch stream ended") };
                if response.canceled() {
                    bail!("watch was canceled: {}", response.cancel_reason());
                }
                let received_at = clock_nanos();
                for event in response.events() {
                    if event.event_type() != EventType::Put {
                        continue;
                    }
                    let Some(kv) = event.kv() else { continue };
                    let (sequence, issued_at) = decode_watch_value(kv.value())?;
                    match seen.get_mut(sequence as usize) {
                        Some(seen_before @ false) => {
                            *seen_before = true;
                            distinct += 1;
                        }
                        Some(true) => duplicates += 1,
                        None => bail!("event with sequence {sequence} beyond the {writes} written"),
                    }
                    record(&mut histogram, Duration::from_nanos(received_at.saturating_sub(issued_at)));
                }
            }
            finished_watchers.fetch_add(1, Ordering::Relaxed);
            // Keep the stream (and its request half) open until here, so the server never sees it end early.
            drop(stream);
            anyhow::Ok((histogram, writes - distinct, duplicates))
        }));
    }

    // Many puts in flight, each issued on its own schedule, so one slow commit does not lower the rate.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(BULK_CONCURRENCY));
    let write_started = Instant::now();
    let server_cpu_before = target.cpu_seconds().ok();
    let own_cpu_before = crate::targets::process_cpu_seconds("/proc/self/stat").ok();
    let mut puts = Vec::with_capacity(writes as usize);
    let interval = Duration::from_secs_f64(1.0 / settings.watch_writes_per_second.max(1) as f64);
    for sequence in 0..writes {
        tokio::time::sleep_until((write_started + interval * sequence as u32).into()).await;
        let permit = in_flight.clone().acquire_owned().await.context("put semaphore closed")?;
        let mut kv = writer_kv.clone();
        puts.push(tokio::spawn(async move {
            let value = encode_watch_value(sequence, clock_nanos());
            let key = format!("{WATCH_PREFIX}{:03}", sequence % 100);
            let result = bounded("watched put", kv.put(key, value, None)).await;
            drop(permit);
            result.map(drop)
        }));
    }
    for put in puts {
        put.await.context("put task panicked")??;
    }
    let write_seconds = write_started.elapsed().as_secs_f64();

    let drain_deadline = Instant::now() + settings.watch_drain_limit;
    while finished_watchers.load(Ordering::Relaxed) < settings.watchers && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let busy_seconds = write_started.elapsed().as_secs_f64();
    let server_cores =
        server_cpu_before.zip(target.cpu_seconds().ok()).map(|(before, after)| (after - before) / busy_seconds);
    let load_generator_cores = own_cpu_before
        .zip(crate::targets::process_cpu_seconds("/proc/self/stat").ok())
        .map(|(before, after)| (after - before) / busy_seconds);
    let mut histogram = new_histogram()?;
    let (mut lost_events, mut duplicate_events) = (0, 0);
    for task in watcher_tasks {
        let (watcher_histogram, lost, duplicates) = task.await.context("watcher panicked")??;
        histogram.add(&watcher_histogram).context("merging histograms")?;
        lost_events += lost;
        duplicate_events += duplicates;
    }
    Ok(WatchStats {
        writes,
        achieved_writes_per_second: writes as f64 / write_seconds,
        p50: quantile(&histogram, 0.50),
        p99: quantile(&histogram, 0.99),
        max: Duration::from_micros(histogram.max()),
        lost_events,
        duplicate_events,
        server_cores,
        load_generator_cores,
    })
}

fn encode_watch_value(sequence: u64, issued_at_nanos: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(WATCH_VALUE_BYTES);
    value.extend_from_slice(&sequence.to_le_bytes());
    value.extend_from_slice(&issued_at_nanos.to_le_bytes());
    value.resize(WATCH_VALUE_BYTES, b'w');
    value
}

fn decode_watch_value(value: &[u8]) -> Result<(u64, u64)> {
    let field = |range: std::ops::Range<usize>| -> Result<u64> {
        let bytes: [u8; 8] = value
            .get(range)
            .and_then(|slice| slice.try_into().ok())
            .ok_or_else(|| anyhow!("watched value of {} bytes is too short", value.len()))?;
        Ok(u64::from_le_bytes(bytes))
    };
    Ok((field(0..8)?, field(8..16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_values_round_trip() -> Result<()> {
        let value = encode_watch_value(42, 1_234_567);
        assert_eq!(value.len(), WATCH_VALUE_BYTES);
        assert_eq!(decode_watch_value(&value)?, (42, 1_234_567));
        assert!(decode_watch_value(b"short").is_err());
        Ok(())
    }

    #[test]
    fn put_keys_are_eight_bytes() {
        assert_eq!(put_key(0).len(), PUT_KEY_BYTES);
        assert_eq!(put_key(123_456_789).len(), PUT_KEY_BYTES);
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert!(median(&mut []).is_nan());
    }
}
