//! The API server's workloads: ConfigMap creates from many clients, big lists, and watch fan-out. Each opens its
//! own connections (one per client), is bounded by a count and a time limit, and returns plain numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::api_client::{ApiConnection, Endpoint, Protocol};

/// Bytes of the one data value of every benchmark ConfigMap; the whole request body is about 410 bytes.
pub const CONFIGMAP_VALUE_BYTES: usize = 256;
/// Latencies are recorded in microseconds up to a minute.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;
/// Writers that share the steady write rate of the watch case, each on its own connection, so one slow create
/// does not hold back the next.
pub const WATCH_WRITERS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct CreateStats {
    pub created: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl CreateStats {
    pub fn per_second(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ListStats {
    pub full_median: Duration,
    pub full_bytes: usize,
    pub paged_median: Duration,
    pub pages: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct WatchStats {
    pub writes: u64,
    pub writes_per_second: f64,
    pub create_p50: Duration,
    pub create_p99: Duration,
    /// From the moment the create request was sent to the event at a watcher.
    pub sent_p50: Duration,
    pub sent_p99: Duration,
    pub sent_max: Duration,
    /// From the moment the create's response arrived to the event at a watcher; 0 when the event came first.
    pub acknowledged_p50: Duration,
    pub acknowledged_p99: Duration,
    /// Events of acknowledged creates that a watcher never received within the drain limit.
    pub lost_events: u64,
    pub duplicate_events: u64,
    /// Watch streams the server ended before the run was over.
    pub streams_ended: u64,
    pub elapsed: Duration,
}

/// A small ConfigMap: a label and one 256-byte value of varied letters (no layer can shrink it).
pub fn configmap_body(name: &str) -> Bytes {
    let seed = name.bytes().fold(0u64, |sum, byte| sum.wrapping_mul(31).wrapping_add(u64::from(byte)));
    let value: String = (0..CONFIGMAP_VALUE_BYTES as u64)
        .map(|i| (b'a' + ((i.wrapping_mul(7).wrapping_add(seed)) % 26) as u8) as char)
        .collect();
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kaasd-bench"}},
        "data": {"settings.conf": value},
    });
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}

/// Creates the namespace unless it exists.
pub async fn ensure_namespace(endpoint: &Endpoint, protocol: Protocol, namespace: &str) -> Result<()> {
    let mut connection = endpoint.connect(protocol).await?;
    let body = Bytes::from(serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    )?);
    let (status, answer) = connection.request(Method::POST, "/api/v1/namespaces", Some(body)).await?;
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!("creating namespace {namespace} answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// `clients` connections, each creating ConfigMaps one after another until `limit` passes or `max_creates` are
/// done. Names come from `sequence`, so repeated runs never collide.
pub async fn create_load(
    endpoint: &Endpoint,
    protocol: Protocol,
    clients: usize,
    namespace: &str,
    limit: Duration,
    max_creates: u64,
    sequence: &Arc<AtomicU64>,
) -> Result<CreateStats> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(endpoint.connect(protocol).await?);
    }
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    let issued = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = Vec::with_capacity(clients);
    for mut connection in connections {
        let (issued, failed, sequence, path) = (issued.clone(), failed.clone(), sequence.clone(), path.clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_creates {
                let name = format!("cm-{:08}", sequence.fetch_add(1, Ordering::Relaxed));
                let body = configmap_body(&name);
                let request_started = Instant::now();
                let (status, answer) = connection.request(Method::POST, &path, Some(body)).await?;
                record(&mut histogram, request_started.elapsed());
                if status != StatusCode::CREATED {
                    // A few failures are reported as a count; a server that only fails ends the run.
                    if failed.fetch_add(1, Ordering::Relaxed) >= 100 {
                        bail!(
                            "create answered {status}: {}",
                            String::from_utf8_lossy(&answer[..answer.len().min(300)])
                        );
                    }
                }
            }
            anyhow::Ok(histogram)
        }));
    }
    let histogram = join_histograms(workers).await?;
    let elapsed = started.elapsed();
    let failed = failed.load(Ordering::Relaxed);
    Ok(CreateStats {
        created: histogram.len().saturating_sub(failed),
        failed,
        elapsed,
        p50: quantile(&histogram, 0.50),
        p99: quantile(&histogram, 0.99),
        max: Duration::from_micros(histogram.max()),
    })
}

/// Lists the namespace's ConfigMaps `runs` times in one request and `runs` times in pages of `page_size`
/// (following `continue`), timing each until the last byte; checks that every list returned `expected` items.
/// (A namespace also holds the `kube-root-ca.crt` ConfigMap the controller publishes: see [`count_configmaps`].)
pub async fn list_times(
    endpoint: &Endpoint,
    protocol: Protocol,
    namespace: &str,
    runs: usize,
    page_size: usize,
    expected: usize,
) -> Result<ListStats> {
    let mut connection = endpoint.connect(protocol).await?;
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    let mut full_times = Vec::with_capacity(runs);
    let mut full_bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let body = connection.expect(StatusCode::OK, Method::GET, &path, None).await?;
        full_times.push(started.elapsed());
        full_bytes = body.len();
        check_item_count(&[body], expected)?;
    }
    let mut paged_times = Vec::with_capacity(runs);
    let mut pages = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut bodies = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page_path = match &token {
                Some(token) => format!("{path}?limit={page_size}&continue={token}"),
                None => format!("{path}?limit={page_size}"),
            };
            let body = connection.expect(StatusCode::OK, Method::GET, &page_path, None).await?;
            token = continue_token(&body);
            bodies.push(body);
            if token.is_none() {
                break;
            }
            if bodies.len() > expected / page_size.max(1) + 10 {
                bail!("paging did not end after {} pages", bodies.len());
            }
        }
        paged_times.push(started.elapsed());
        pages = bodies.len();
        check_item_count(&bodies, expected)?;
    }
    Ok(ListStats {
        full_median: median_duration(&mut full_times),
        full_bytes,
        paged_median: median_duration(&mut paged_times),
        pages,
    })
}

/// ConfigMaps in the namespace right now.
pub async fn count_configmaps(endpoint: &Endpoint, protocol: Protocol, namespace: &str) -> Result<usize> {
    let mut connection = endpoint.connect(protocol).await?;
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    let body = connection.expect(StatusCode::OK, Method::GET, &path, None).await?;
    let list: Value = serde_json::from_slice(&body).context("decoding a list response")?;
    list["items"].as_array().map(Vec::len).ok_or_else(|| anyhow!("list response without items"))
}

/// The `continue` token of a list page, found without parsing the page (parsing would add the client's JSON
/// decoding to the timed list): serde_json writes `metadata` after `items`, and no item carries this key.
fn continue_token(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"continue\":\"";
    let start = body.windows(KEY.len()).rposition(|window| window == KEY)? + KEY.len();
    let length = body[start..].iter().position(|&byte| byte == b'"')?;
    let token = std::str::from_utf8(&body[start..start + length]).ok()?;
    (!token.is_empty()).then(|| token.to_string())
}

fn check_item_count(bodies: &[Bytes], expected: usize) -> Result<()> {
    let mut items = 0;
    for body in bodies {
        let list: Value = serde_json::from_slice(body).context("decoding a list response")?;
        items += list["items"].as_array().map(Vec::len).ok_or_else(|| anyhow!("list response without items"))?;
    }
    if items != expected {
        bail!("the list returned {items} items, expected {expected}");
    }
    Ok(())
}

/// `watchers` watches on the namespace's ConfigMaps, each on its own connection, while creates go in at
/// `writes_per_second` for `duration`; then waits up to `drain` for every watcher to see every acknowledged create.
pub async fn watch_delivery(
    endpoint: &Endpoint,
    protocol: Protocol,
    namespace: &str,
    watchers: usize,
    writes_per_second: u64,
    duration: Duration,
    drain: Duration,
) -> Result<WatchStats> {
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    let mut connection = endpoint.connect(protocol).await?;
    let list = connection.expect(StatusCode::OK, Method::GET, &format!("{path}?limit=1"), None).await?;
    let list: Value = serde_json::from_slice(&list).context("decoding the list")?;
    let resource_version = list["metadata"]["resourceVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("the list has no resourceVersion"))?
        .to_string();

    // Every watch is open (response head received, so the server registered it) before the first write.
    let watch_path = format!("{path}?watch=true&resourceVersion={resource_version}");
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut connection = endpoint.connect(protocol).await?;
        let response = connection.send(Method::GET, &watch_path, None).await?;
        if response.status() != StatusCode::OK {
            bail!("watch answered {}", response.status());
        }
        streams.push((connection, response.into_body()));
    }
    let (stop_sender, stop) = tokio::sync::watch::channel::<Option<(u64, Instant)>>(None);
    let mut watcher_tasks = Vec::with_capacity(watchers);
    for (connection, body) in streams {
        let stop = stop.clone();
        watcher_tasks.push(tokio::spawn(receive_events(connection, body, stop)));
    }

    let total = (writes_per_second as f64 * duration.as_secs_f64()).round().max(1.0) as u64;
    let mut writers = Vec::with_capacity(WATCH_WRITERS);
    let started = Instant::now();
    for writer in 0..WATCH_WRITERS as u64 {
        let mut connection = endpoint.connect(protocol).await?;
        let path = path.clone();
        writers.push(tokio::spawn(async move {
            let mut writes = Vec::new();
            for sequence in (writer..total).step_by(WATCH_WRITERS) {
                let due = started + Duration::from_secs_f64(sequence as f64 / writes_per_second as f64);
                tokio::time::sleep_until(due.into()).await;
                let name = format!("w-{sequence:08}");
                let sent = Instant::now();
                let (status, answer) = connection.request(Method::POST, &path, Some(configmap_body(&name))).await?;
                if status != StatusCode::CREATED {
                    bail!("create during the watch answered {status}: {}", String::from_utf8_lossy(&answer));
                }
                writes.push((sequence, sent, Instant::now()));
            }
            anyhow::Ok(writes)
        }));
    }
    let mut writes: Vec<Option<(Instant, Instant)>> = vec![None; total as usize];
    let mut writer_error = None;
    for writer in writers {
        match writer.await.context("watch writer panicked")? {
            Ok(done) => {
                for (sequence, sent, acknowledged) in done {
                    writes[sequence as usize] = Some((sent, acknowledged));
                }
            }
            Err(error) => writer_error = Some(error),
        }
    }
    let writes_elapsed = started.elapsed();
    let acknowledged = writes.iter().filter(|write| write.is_some()).count() as u64;
    stop_sender.send_replace(Some((acknowledged, Instant::now() + drain)));
    if let Some(error) = writer_error {
        return Err(error);
    }

    let mut create_latency = new_histogram()?;
    for (sent, acknowledged) in writes.iter().flatten() {
        record(&mut create_latency, *acknowledged - *sent);
    }
    let mut from_sent = new_histogram()?;
    let mut from_acknowledged = new_histogram()?;
    let (mut lost, mut duplicates, mut streams_ended) = (0, 0, 0);
    for task in watcher_tasks {
        let received = task.await.context("watcher panicked")??;
        streams_ended += u64::from(received.ended_early);
        duplicates += received.duplicates;
        for (sequence, write) in writes.iter().enumerate() {
            let Some((sent, acknowledged)) = write else { continue };
            match received.arrivals.get(sequence).copied().flatten() {
                Some(arrived) => {
                    record(&mut from_sent, arrived.saturating_duration_since(*sent));
                    from_acknowledged.saturating_record(
                        (arrived.saturating_duration_since(*acknowledged).as_micros() as u64).min(HISTOGRAM_MAX_MICROS),
                    );
                }
                None => lost += 1,
            }
        }
    }
    Ok(WatchStats {
        writes: acknowledged,
        writes_per_second: acknowledged as f64 / writes_elapsed.as_secs_f64(),
        create_p50: quantile(&create_latency, 0.50),
        create_p99: quantile(&create_latency, 0.99),
        sent_p50: quantile(&from_sent, 0.50),
        sent_p99: quantile(&from_sent, 0.99),
        sent_max: Duration::from_micros(from_sent.max()),
        acknowledged_p50: quantile(&from_acknowledged, 0.50),
        acknowledged_p99: quantile(&from_acknowledged, 0.99),
        lost_events: lost,
        duplicate_events: duplicates,
        streams_ended,
        elapsed: started.elapsed(),
    })
}

/// What one watcher saw: the arrival time of each write's ADDED event, by write sequence number.
struct Received {
    arrivals: Vec<Option<Instant>>,
    duplicates: u64,
    ended_early: bool,
}

/// Reads newline-delimited watch events until every acknowledged write arrived or the drain deadline passed.
async fn receive_events(
    connection: ApiConnection,
    mut body: hyper::body::Incoming,
    stop: tokio::sync::watch::Receiver<Option<(u64, Instant)>>,
) -> Result<Received> {
    let mut received = Received { arrivals: Vec::new(), duplicates: 0, ended_early: false };
    let mut distinct = 0u64;
    let mut buffer = BytesMut::new();
    loop {
        if let Some((expected, deadline)) = *stop.borrow() {
            if distinct >= expected || Instant::now() > deadline {
                break;
            }
        }
        let frame = match tokio::time::timeout(Duration::from_millis(50), body.frame()).await {
            Err(_) => continue,
            Ok(None) => {
                received.ended_early = true;
                break;
            }
            Ok(Some(frame)) => frame.context("reading the watch stream")?,
        };
        let arrived = Instant::now();
        let Ok(data) = frame.into_data() else { continue };
        buffer.extend_from_slice(&data);
        while let Some(newline) = buffer.iter().position(|&byte| byte == b'\n') {
            let line = buffer.split_to(newline + 1);
            let Some(sequence) = event_sequence(&line[..newline])? else { continue };
            let sequence = sequence as usize;
            if received.arrivals.len() <= sequence {
                received.arrivals.resize(sequence + 1, None);
            }
            if received.arrivals[sequence].replace(arrived).is_some() {
                received.duplicates += 1;
            } else {
                distinct += 1;
            }
        }
    }
    drop(connection);
    Ok(received)
}

/// The write sequence number of an ADDED event for a `w-NNNNNNNN` ConfigMap; None for other events.
fn event_sequence(line: &[u8]) -> Result<Option<u64>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event: Value = serde_json::from_slice(line).context("decoding a watch event")?;
    match event["type"].as_str() {
        Some("ADDED") => {}
        Some("ERROR") => bail!("the watch sent an error: {}", event["object"]),
        _ => return Ok(None),
    }
    let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default();
    Ok(name.strip_prefix("w-").and_then(|digits| digits.parse().ok()))
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).context("creating a latency histogram")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).clamp(1, HISTOGRAM_MAX_MICROS));
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_micros(histogram.value_at_quantile(q))
}

async fn join_histograms(workers: Vec<tokio::task::JoinHandle<Result<Histogram<u64>>>>) -> Result<Histogram<u64>> {
    let mut total = new_histogram()?;
    let mut first_error = None;
    for worker in workers {
        match worker.await.context("load worker panicked")? {
            Ok(histogram) => total.add(&histogram).context("merging histograms")?,
            Err(error) => first_error = first_error.or(Some(error)),
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(total),
    }
}

pub fn median_duration(values: &mut [Duration]) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_is_found_after_the_items() {
        let page = br#"{"apiVersion":"v1","items":[{"metadata":{"name":"a"}}],"kind":"ConfigMapList","metadata":{"continue":"eyJ2IjoxfQ","resourceVersion":"7"}}"#;
        assert_eq!(continue_token(page).as_deref(), Some("eyJ2IjoxfQ"));
        let last = br#"{"items":[],"metadata":{"resourceVersion":"7"}}"#;
        assert_eq!(continue_token(last), None);
        let empty = br#"{"items":[],"metadata":{"continue":"","resourceVersion":"7"}}"#;
        assert_eq!(continue_token(empty), None);
    }

    #[test]
    fn watch_events_map_to_write_numbers() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"w-00000042"}}}"#;
        assert_eq!(event_sequence(added).unwrap(), Some(42));
        let modified = br#"{"type":"MODIFIED","object":{"metadata":{"name":"w-00000042"}}}"#;
        assert_eq!(event_sequence(modified).unwrap(), None);
        let error = br#"{"type":"ERROR","object":{"code":410}}"#;
        assert!(event_sequence(error).is_err());
        assert_eq!(event_sequence(b"  ").unwrap(), None);
    }

    #[test]
    fn configmaps_are_small_and_valid() {
        let body = configmap_body("cm-00000001");
        let object: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(object["metadata"]["name"], "cm-00000001");
        assert!(body.len() > 350 && body.len() < 450, "{} bytes", body.len());
    }
}
