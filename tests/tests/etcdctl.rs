//! Debian's etcdctl 3.4 against a real `kaasd datastore serve`: the commands people and scripts use, checked
//! on the text etcdctl prints.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaasd_e2e::Datastore;

const ETCDCTL: &str = "/usr/bin/etcdctl";
const WAIT: Duration = Duration::from_secs(15);

struct Etcdctl {
    endpoint: String,
}

impl Etcdctl {
    fn new(datastore: &Datastore) -> Self {
        Self { endpoint: datastore.endpoint() }
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(ETCDCTL);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--command-timeout=10s")
            .args(arguments);
        command
    }

    fn run(&self, arguments: &[&str], input: &str) -> Output {
        let mut child = self
            .command(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl starts");
        child.stdin.take().expect("stdin is piped").write_all(input.as_bytes()).expect("etcdctl reads its input");
        child.wait_with_output().expect("etcdctl finishes")
    }

    /// Runs a command that must succeed and returns what it printed on stdout.
    fn ok(&self, arguments: &[&str]) -> String {
        self.ok_with_input(arguments, "")
    }

    fn ok_with_input(&self, arguments: &[&str], input: &str) -> String {
        let output = self.run(arguments, input);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "etcdctl {arguments:?} failed: {stderr}{stdout}");
        stdout
    }

    /// Runs a command that must fail and returns what it printed on stderr.
    fn fails(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments, "");
        assert!(
            !output.status.success(),
            "etcdctl {arguments:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts `etcdctl watch ...` in the background.
    fn watch(&self, arguments: &[&str]) -> BackgroundWatch {
        let mut child = self
            .command(&[&["watch"], arguments].concat())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl watch starts");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        BackgroundWatch { child, lines, seen: Vec::new() }
    }
}

/// A running `etcdctl watch`, killed when dropped.
struct BackgroundWatch {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl BackgroundWatch {
    /// Waits until the watch printed at least `count` lines in all and returns them all.
    fn lines(&mut self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        while self.seen.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("watch printed only {:?}, expected {count} lines", self.seen),
            }
        }
        self.seen.clone()
    }

    /// Waits for etcdctl to exit by itself.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("etcdctl can be waited for") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "etcdctl watch did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BackgroundWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn start() -> (Datastore, Etcdctl) {
    let datastore = Datastore::start().expect("kaasd serves");
    let etcdctl = Etcdctl::new(&datastore);
    (datastore, etcdctl)
}

/// The id etcdctl prints in "lease 694d7a4b1c1d2e0f granted with TTL(60s)".
fn granted_lease(output: &str) -> String {
    let words: Vec<&str> = output.split_whitespace().collect();
    assert_eq!(words.get(2), Some(&"granted"), "unexpected grant output {output:?}");
    words[1].to_string()
}

#[test]
fn put_get_and_delete() {
    let (_datastore, etcdctl) = start();
    assert_eq!(etcdctl.ok(&["put", "fruit/apple", "red"]), "OK\n");
    assert_eq!(etcdctl.ok(&["put", "fruit/banana", "yellow"]), "OK\n");
    assert_eq!(etcdctl.ok(&["put", "fruit/cherry", "dark red"]), "OK\n");
    assert_eq!(etcdctl.ok(&["put", "fruit/apple", "green"]), "OK\n");
    assert_eq!(etcdctl.ok(&["put", "vegetable/leek", "white"]), "OK\n");

    assert_eq!(etcdctl.ok(&["get", "fruit/apple"]), "fruit/apple\ngreen\n");
    assert_eq!(etcdctl.ok(&["get", "fruit/none"]), "");
    assert_eq!(etcdctl.ok(&["get", "fruit/apple", "--consistency=s"]), "fruit/apple\ngreen\n");
    assert_eq!(
        lines(&etcdctl.ok(&["get", "fruit/", "--prefix"])),
        ["fruit/apple", "green", "fruit/banana", "yellow", "fruit/cherry", "dark red"]
    );
    // Revision 1 was the first put of the apple.
    assert_eq!(etcdctl.ok(&["get", "fruit/apple", "--rev=1"]), "fruit/apple\nred\n");
    assert_eq!(
        lines(&etcdctl.ok(&["get", "fruit/", "--prefix", "--rev=2"])),
        ["fruit/apple", "red", "fruit/banana", "yellow"]
    );
    assert_eq!(
        lines(&etcdctl.ok(&["get", "fruit/", "--prefix", "--limit=2"])),
        ["fruit/apple", "green", "fruit/banana", "yellow"]
    );
    assert_eq!(
        lines(&etcdctl.ok(&["get", "", "--prefix", "--keys-only"])),
        ["fruit/apple", "", "fruit/banana", "", "fruit/cherry", "", "vegetable/leek", ""]
    );
    assert_eq!(
        lines(&etcdctl.ok(&["get", "fruit/", "--prefix", "--print-value-only"])),
        ["green", "yellow", "dark red"]
    );
    assert_eq!(
        lines(&etcdctl.ok(&["get", "fruit/", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--keys-only"])),
        ["fruit/banana", "", "fruit/apple", "", "fruit/cherry", ""]
    );
    let limited = etcdctl.ok(&["get", "fruit/", "--prefix", "--limit=1", "-w", "json"]);
    assert!(limited.contains(r#""more":true,"count":3"#), "{limited}");

    assert_eq!(etcdctl.ok(&["del", "vegetable/leek"]), "1\n");
    assert_eq!(etcdctl.ok(&["del", "vegetable/leek"]), "0\n");
    assert_eq!(
        lines(&etcdctl.ok(&["del", "fruit/", "--prefix", "--prev-kv"])),
        ["3", "fruit/apple", "green", "fruit/banana", "yellow", "fruit/cherry", "dark red"]
    );
    assert_eq!(etcdctl.ok(&["get", "", "--prefix"]), "");
}

#[test]
fn transactions_take_either_branch() {
    let (_datastore, etcdctl) = start();
    etcdctl.ok(&["put", "config/mode", "blue"]);
    let script =
        "value(\"config/mode\") = \"blue\"\n\nput config/mode green\nget config/mode\n\nput config/mode failed\n\n";
    assert_eq!(lines(&etcdctl.ok_with_input(&["txn"], script)), ["SUCCESS", "", "OK", "", "config/mode", "green"]);
    // The mode is green now, so the same compare fails and the failure branch runs.
    assert_eq!(lines(&etcdctl.ok_with_input(&["txn"], script)), ["FAILURE", "", "OK"]);
    assert_eq!(etcdctl.ok(&["get", "config/mode"]), "config/mode\nfailed\n");

    let versions =
        "version(\"config/mode\") > \"2\"\nmod(\"config/mode\") < \"100\"\ncreate(\"config/absent\") = \"0\"\n\n\
                    del config/mode\nput config/absent here\n\nget config/mode\n\n";
    assert_eq!(lines(&etcdctl.ok_with_input(&["txn"], versions)), ["SUCCESS", "", "1", "", "OK"]);
    assert_eq!(etcdctl.ok(&["get", "config/", "--prefix"]), "config/absent\nhere\n");

    let duplicate = "\nput config/x 1\nput config/x 2\n\n\n";
    let output = etcdctl.run(&["txn"], duplicate);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("etcdserver: duplicate key given in txn request"));
}

#[test]
fn watches_deliver_live_and_past_events() {
    let (_datastore, etcdctl) = start();
    etcdctl.ok(&["put", "pets/cat", "sleeps"]);
    etcdctl.ok(&["put", "other", "ignored"]);
    // From revision 3 on, so the watch sees every write below even if it connects late.
    let mut live = etcdctl.watch(&["--prefix", "pets/", "--rev=3", "--prev-kv"]);
    etcdctl.ok(&["put", "pets/cat", "purrs"]);
    etcdctl.ok(&["put", "pets/dog", "barks"]);
    etcdctl.ok(&["put", "other", "still ignored"]);
    etcdctl.ok(&["del", "pets/cat"]);
    assert_eq!(
        live.lines(13),
        [
            "PUT", "pets/cat", "sleeps", "pets/cat", "purrs", // a put with the value before it
            "PUT", "pets/dog", "barks", // a new key has no previous value
            "DELETE", "pets/cat", "purrs", "pets/cat", "",
        ]
    );

    let mut history = etcdctl.watch(&["pets/", "--prefix", "--rev=1"]);
    assert_eq!(
        history.lines(12),
        ["PUT", "pets/cat", "sleeps", "PUT", "pets/cat", "purrs", "PUT", "pets/dog", "barks", "DELETE", "pets/cat", ""]
    );

    let mut single_key = etcdctl.watch(&["pets/dog", "--rev=1"]);
    assert_eq!(single_key.lines(3), ["PUT", "pets/dog", "barks"]);
}

#[test]
fn leases_keep_expire_and_revoke_their_keys() {
    let (_datastore, etcdctl) = start();
    let lease = granted_lease(&etcdctl.ok(&["lease", "grant", "600"]));
    assert_eq!(etcdctl.ok(&["put", "session/alice", "online", &format!("--lease={lease}")]), "OK\n");
    let time_to_live = etcdctl.ok(&["lease", "timetolive", "--keys", &lease]);
    assert!(time_to_live.starts_with(&format!("lease {lease} granted with TTL(600s), remaining(")), "{time_to_live}");
    assert!(time_to_live.ends_with("attached keys([session/alice])\n"), "{time_to_live}");
    assert_eq!(
        etcdctl.ok(&["lease", "keep-alive", "--once", &lease]),
        format!("lease {lease} keepalived with TTL(600)\n")
    );
    assert_eq!(etcdctl.ok(&["lease", "list"]), format!("found 1 leases\n{lease}\n"));
    assert_eq!(etcdctl.ok(&["lease", "revoke", &lease]), format!("lease {lease} revoked\n"));
    assert_eq!(etcdctl.ok(&["get", "session/alice"]), "");
    assert_eq!(etcdctl.ok(&["lease", "timetolive", &lease]), format!("lease {lease} already expired\n"));
    assert!(etcdctl.fails(&["lease", "revoke", &lease]).contains("etcdserver: requested lease not found"));
    assert!(etcdctl
        .fails(&["put", "session/bob", "x", "--lease=1234"])
        .contains("etcdserver: requested lease not found"));

    // A short lease that is not kept alive expires and takes its key along.
    let short = granted_lease(&etcdctl.ok(&["lease", "grant", "2"]));
    etcdctl.ok(&["put", "session/carol", "online", &format!("--lease={short}")]);
    assert_eq!(etcdctl.ok(&["get", "session/carol", "--print-value-only"]), "online\n");
    let deadline = Instant::now() + WAIT;
    while !etcdctl.ok(&["get", "session/carol"]).is_empty() {
        assert!(Instant::now() < deadline, "the key of an expired lease is still there");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(etcdctl.ok(&["lease", "list"]), "found 0 leases\n");
}

#[test]
fn compaction_discards_history() {
    let (_datastore, etcdctl) = start();
    for value in ["one", "two", "three", "four"] {
        etcdctl.ok(&["put", "counter", value]);
    }
    assert_eq!(etcdctl.ok(&["get", "counter", "--rev=1", "--print-value-only"]), "one\n");
    assert_eq!(etcdctl.ok(&["compact", "3"]), "compacted revision 3\n");
    let error = etcdctl.fails(&["get", "counter", "--rev=1"]);
    assert!(error.contains("Error: etcdserver: mvcc: required revision has been compacted"), "{error}");
    // The compaction point itself stays readable, as in etcd.
    assert_eq!(etcdctl.ok(&["get", "counter", "--rev=3", "--print-value-only"]), "three\n");
    assert_eq!(etcdctl.ok(&["get", "counter", "--print-value-only"]), "four\n");
    let error = etcdctl.fails(&["get", "counter", "--rev=99"]);
    assert!(error.contains("etcdserver: mvcc: required revision is a future revision"), "{error}");
    let error = etcdctl.fails(&["compact", "2"]);
    assert!(error.contains("etcdserver: mvcc: required revision has been compacted"), "{error}");

    let mut watch = etcdctl.watch(&["counter", "--rev=1"]);
    assert_eq!(watch.lines(1), ["watch was canceled (etcdserver: mvcc: required revision has been compacted)"]);
    assert_ne!(watch.exit_code(), Some(0));
}

#[test]
fn endpoint_status_health_and_members() {
    let (datastore, etcdctl) = start();
    etcdctl.ok(&["put", "a", "1"]);
    let endpoint = datastore.endpoint();
    let status = etcdctl.ok(&["endpoint", "status"]);
    let fields: Vec<&str> = status.trim_end_matches('\n').split(", ").collect();
    // ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, IS LEARNER, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX, ERRORS
    assert_eq!(fields.len(), 10, "{status}");
    assert_eq!(fields[0], endpoint);
    // etcdctl prints the id in hex without leading zeros.
    assert!(u64::from_str_radix(fields[1], 16).is_ok_and(|id| id != 0), "a member id in hex: {status}");
    assert_eq!(&fields[2..3], ["3.5.13"]);
    assert!(fields[3].ends_with("kB") || fields[3].ends_with("MB"), "{status}");
    assert_eq!(&fields[4..9], ["true", "false", "1", "1", "1"]);

    let output = etcdctl.run(&["endpoint", "health"], "");
    assert!(output.status.success());
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        printed.starts_with(&format!("{endpoint} is healthy: successfully committed proposal: took = ")),
        "{printed}"
    );

    let members = etcdctl.ok(&["member", "list"]);
    assert!(members.ends_with(&format!(", started, kaasd, , http://{endpoint}, false\n")), "{members}");
    assert!(members.starts_with(fields[1]), "the member id matches the status: {members}");

    let error = etcdctl.fails(&["defrag"]);
    assert!(error.contains("kaasd does not support defragment"), "{error}");
}
