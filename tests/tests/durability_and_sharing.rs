//! Real `kaasd datastore serve` processes under failure: kill -9 in the middle of a write load loses no
//! acknowledged write, and two processes on one PostgreSQL or MariaDB database serve one store, each seeing
//! the other's writes in its watches, gapless and in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use kaasd_e2e::databases::ServerDatabase;
use kaasd_e2e::{Datastore, KaasdOptions, KaasdProcess};

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect to kaasd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_under_write_load_loses_no_acknowledged_write() {
    let mut datastore = Datastore::start().expect("kaasd starts");
    let endpoint = datastore.endpoint();
    let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..16 {
        let (endpoint, acknowledged) = (endpoint.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let mut client = connect(&endpoint).await;
            for i in 0.. {
                let (key, value) = (format!("/crash/{writer}/{}", i % 50), format!("{writer}-{i}"));
                match client.put(key.clone(), value.clone(), None).await {
                    Ok(_) => drop(acknowledged.lock().unwrap().insert(key, value)),
                    // The server is gone: whatever was not acknowledged may or may not be there.
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the load run, then kill the server in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    datastore.kill().expect("kill -9");
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = acknowledged.lock().unwrap().clone();
    assert!(expected.len() >= 500, "the load ran: {} keys acknowledged", expected.len());

    datastore.restart().expect("kaasd starts again on the same database");
    let mut client = connect(&endpoint).await;
    let stored = client.get("/crash/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let stored: BTreeMap<String, String> = stored
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()))
        .collect();
    for (key, value) in &expected {
        let found = stored.get(key).unwrap_or_else(|| panic!("acknowledged key {key} is missing after kill -9"));
        // A later write to the same key may have reached the disk without its acknowledgement reaching us.
        let (writer, round) = parse_value(value);
        let (found_writer, found_round) = parse_value(found);
        assert!(found_writer == writer && found_round >= round, "{key}: acknowledged {value}, found {found}");
    }
    // Revisions stayed gapless: the history replays from revision 1 without holes.
    let revision = client.get("/crash/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    let current = revision.header().unwrap().revision();
    let mut stream =
        client.watch("/crash/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
    let mut next = 1;
    while next <= current {
        let response = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap().unwrap();
        for event in response.events() {
            assert_eq!(event.kv().unwrap().mod_revision(), next, "revision {next} missing from the history");
            next += 1;
        }
    }
}

fn parse_value(value: &str) -> (u32, u64) {
    let (writer, round) = value.split_once('-').expect("value is writer-round");
    (writer.parse().unwrap(), round.parse().unwrap())
}

/// Two processes, one database: writes through both, watches on both; every watcher sees every revision once,
/// in order, whichever process wrote it.
async fn two_processes_share_one_store(kind: &str) {
    let Some(database) = ServerDatabase::create(kind) else { return };
    let first = KaasdProcess::start(KaasdOptions::new(&database.url)).expect("first kaasd starts");
    let second = KaasdProcess::start(KaasdOptions::new(&database.url)).expect("second kaasd starts");
    let endpoints = [first.endpoint(), second.endpoint()];

    let mut streams = Vec::new();
    for endpoint in &endpoints {
        let mut client = connect(endpoint).await;
        let mut stream = client.watch("/shared/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        // The watch starts at the revision current when it is created: wait for that before writing.
        let created = stream.message().await.unwrap().unwrap();
        assert!(created.created(), "the first watch response announces the watcher");
        streams.push((client, stream));
    }
    let per_writer = 150;
    let mut writers = Vec::new();
    for (index, endpoint) in endpoints.iter().cycle().take(4).enumerate() {
        let endpoint = endpoint.clone();
        writers.push(tokio::spawn(async move {
            let mut client = connect(&endpoint).await;
            for i in 0..per_writer {
                client.put(format!("/shared/{index}/{}", i % 10), i.to_string(), None).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = 4 * per_writer;
    for (which, (_client, stream)) in streams.iter_mut().enumerate() {
        let mut next = 1;
        while next <= total {
            let response = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .unwrap_or_else(|_| panic!("process {which}: timed out waiting for revision {next}"))
                .unwrap()
                .unwrap();
            for event in response.events() {
                assert_eq!(event.event_type(), EventType::Put);
                assert_eq!(event.kv().unwrap().mod_revision(), next, "process {which}: revisions gapless, in order");
                next += 1;
            }
        }
    }
    // A write acknowledged by one process is visible to a read on the other at once.
    let mut one = connect(&endpoints[0]).await;
    let mut other = connect(&endpoints[1]).await;
    let written = one.put("/shared/fresh", "1", None).await.unwrap();
    let read = other.get("/shared/fresh", None).await.unwrap();
    assert_eq!(read.kvs()[0].mod_revision(), written.header().unwrap().revision());
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_store() {
    two_processes_share_one_store("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_mariadb_store() {
    two_processes_share_one_store("mariadb").await;
}
