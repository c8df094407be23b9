//! `kaasd datastore serve` as a process: start-up failures print one error line, SIGTERM drains and exits 0,
//! and the watch features the Kubernetes API server relies on (progress requests and notifications,
//! compaction) behave as etcd's do, seen through the etcd-client crate.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream};
use kaasd_e2e::{kaasd_binary, Datastore};

fn serve(arguments: &[&str]) -> Output {
    let binary = kaasd_binary().expect("kaasd builds");
    Command::new(binary)
        .args(["datastore", "serve"])
        .args(arguments)
        .env_remove("KAASD_DATASTORE")
        .env_remove("KAASD_LISTEN")
        .output()
        .expect("kaasd runs")
}

/// Asserts a start-up failure: status 1, nothing on stdout, exactly one line on stderr, which is returned.
fn single_error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {stderr}");
    lines[0].to_string()
}

#[test]
fn an_unknown_datastore_scheme_is_one_error_line() {
    let line = single_error_line(&serve(&["--datastore", "etcd://somewhere", "--listen", "127.0.0.1:0"]));
    assert!(line.starts_with("error: unsupported datastore url \"etcd://somewhere\""), "{line}");
}

#[test]
fn a_port_in_use_is_one_error_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = taken.local_addr().expect("an address").to_string();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let datastore = format!("sqlite://{}", directory.path().join("state.db").display());
    let line = single_error_line(&serve(&["--datastore", &datastore, "--listen", &address]));
    assert!(line.starts_with(&format!("error: cannot listen on {address}: ")), "{line}");
    assert!(line.contains("in use"), "{line}");
}

#[test]
fn sigterm_drains_and_the_data_survives_a_restart() {
    let mut datastore = Datastore::start().expect("kaasd serves");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let endpoint = datastore.endpoint();
    runtime.block_on(async {
        let mut client = Client::connect([endpoint.as_str()], None).await.expect("connects");
        client.put("kept", "across restarts", None).await.expect("put");
        // An open watch must not hold the drain up.
        let _watch = client.watch("kept", None).await.expect("watch");
        let status = tokio::task::block_in_place(|| datastore.stop()).expect("kaasd stops");
        assert!(status.success(), "exit status {status}: {}", datastore.log());
    });
    datastore.restart().expect("kaasd serves again on the same database");
    runtime.block_on(async {
        let mut client = Client::connect([endpoint.as_str()], None).await.expect("connects");
        let response = client.get("kept", None).await.expect("get");
        assert_eq!(response.kvs()[0].value(), b"across restarts");
    });
}

async fn next_message(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch response within 10 s")
        .expect("the stream works")
        .expect("the stream is open")
}

fn is_progress(response: &WatchResponse) -> bool {
    response.events().is_empty() && !response.created() && !response.canceled()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_progress_requests_and_notifications() {
    let datastore = Datastore::start_with(|options| {
        options.extra_arguments = vec!["--progress-notify-interval".into(), "300ms".into()];
    })
    .expect("kaasd serves");
    let mut client = Client::connect([datastore.endpoint()], None).await.expect("connects");
    client.put("w/a", "1", None).await.expect("put");
    let options = WatchOptions::new().with_prefix().with_progress_notify().with_prev_key();
    let mut stream = client.watch("w/", Some(options)).await.expect("watch");
    let created = next_message(&mut stream).await;
    assert!(created.created());
    assert_eq!(created.watch_id(), 0, "etcd numbers a stream's watchers from 0");

    for value in ["2", "3", "4"] {
        client.put("unwatched", value, None).await.expect("put");
    }
    stream.request_progress().await.expect("progress request");
    let progress = loop {
        let response = next_message(&mut stream).await;
        if response.watch_id() == -1 {
            break response;
        }
        assert!(is_progress(&response), "only progress notifications are expected: {response:?}");
    };
    assert!(is_progress(&progress));
    assert_eq!(progress.header().expect("a header").revision(), 4);

    let put = client.put("w/a", "5", None).await.expect("put");
    let revision = put.header().expect("a header").revision();
    let event = loop {
        let response = next_message(&mut stream).await;
        if !response.events().is_empty() {
            break response;
        }
    };
    assert_eq!(event.watch_id(), 0);
    assert_eq!(event.events()[0].event_type(), EventType::Put);
    assert_eq!(event.events()[0].prev_kv().expect("the previous value").value(), b"1");

    // With nothing to report, the watcher gets periodic notifications of the current revision.
    let notification = next_message(&mut stream).await;
    assert!(is_progress(&notification), "{notification:?}");
    assert_eq!(notification.watch_id(), 0);
    assert_eq!(notification.header().expect("a header").revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_compacted_history_is_cancelled_with_the_compaction_point() {
    let datastore = Datastore::start().expect("kaasd serves");
    let mut client = Client::connect([datastore.endpoint()], None).await.expect("connects");
    for value in ["1", "2", "3"] {
        client.put("k", value, None).await.expect("put");
    }
    client.compact(2, None).await.expect("compact");
    let mut stream = client.watch("k", Some(WatchOptions::new().with_start_revision(1))).await.expect("watch");
    assert!(next_message(&mut stream).await.created());
    let cancelled = next_message(&mut stream).await;
    assert!(cancelled.canceled());
    assert_eq!(cancelled.compact_revision(), 2);

    let error = client.get("k", Some(etcd_client::GetOptions::new().with_revision(1))).await.expect_err("compacted");
    assert!(error.to_string().contains("etcdserver: mvcc: required revision has been compacted"), "{error}");

    // A transaction's compare and nested ops through the same conversions the API server uses.
    let txn = Txn::new()
        .when([Compare::mod_revision("k", CompareOp::Equal, 3)])
        .and_then([TxnOp::put("k", "4", None), TxnOp::get("k", None)])
        .or_else([TxnOp::get("k", None)]);
    let response = client.txn(txn).await.expect("txn");
    assert!(response.succeeded());
}
