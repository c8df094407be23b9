//! Stopping and restarting `kaasd controller` as systemd or a shell loop does: SIGTERM, then a new process on the
//! same data directory right away. An idle controller exits within a second; open watches (kubectl -w, a raw
//! watch) end cleanly instead of holding the drain open; a process started while the old one still drains waits
//! for the SQLite file instead of failing, and finds every object.

use std::io::Read;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;

/// The drain limit asked of an idle controller is 1 s; the tests allow twice that, since they share the machine
/// with other tests, and the old behaviour (a drain held open by watches) took more than 5 s.
const IDLE_EXIT_LIMIT: Duration = Duration::from_secs(2);

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<(ExitStatus, Duration)> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("the process can be waited for") {
            return Some((status, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn create_config_maps(controller: &Controller, count: usize) {
    let manifests: Vec<String> = (0..count)
        .map(|index| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kept-{index}}}\ndata: {{n: \"{index}\"}}\n")
        })
        .collect();
    controller.kubectl_stdin(&["apply", "-f", "-"], &manifests.join("---\n")).expect("kubectl apply creates them");
}

fn config_map_names(controller: &Controller) -> Vec<String> {
    let names = controller.kubectl(&["get", "configmaps", "-o", "name"]).expect("kubectl get configmaps");
    let mut names: Vec<String> =
        names.lines().filter(|line| line.starts_with("configmap/kept-")).map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn an_idle_controller_stops_at_once_and_a_restart_half_a_second_later_keeps_everything() {
    let mut controller = Controller::start().expect("kaasd controller starts");
    create_config_maps(&controller, 20);
    let before = config_map_names(&controller);
    assert_eq!(before.len(), 20);
    // Let the in-process controllers settle into their idle watches.
    std::thread::sleep(Duration::from_secs(1));

    let mut old = controller.terminate().expect("SIGTERM is sent");
    std::thread::sleep(Duration::from_millis(500));
    controller.start_again().expect("a controller started 0.5 s after SIGTERM on the same data directory serves");
    let (status, took) = wait_for_exit(&mut old, Duration::from_secs(30)).expect("the old controller exits");
    assert!(status.success(), "the drained controller exits 0, got {status}; log:\n{}", controller.log());
    assert!(
        took < IDLE_EXIT_LIMIT,
        "an idle controller took {took:?} to exit after SIGTERM; log:\n{}",
        controller.log()
    );
    assert_eq!(config_map_names(&controller), before, "every object is there after the restart");

    // And a plain stop with nothing else running.
    let mut old = controller.terminate().expect("SIGTERM is sent");
    let (status, took) = wait_for_exit(&mut old, Duration::from_secs(30)).expect("the controller exits");
    assert!(status.success(), "{status}");
    assert!(
        took < IDLE_EXIT_LIMIT,
        "an idle controller took {took:?} to exit after SIGTERM; log:\n{}",
        controller.log()
    );
}

#[test]
fn open_watches_end_cleanly_and_do_not_hold_the_drain() {
    let mut controller = Controller::start().expect("kaasd controller starts");
    create_config_maps(&controller, 5);
    let mut kubectl_watch = controller
        .kubectl_command(&["get", "configmaps", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get --watch starts");
    let mut raw_watch = controller
        .kubectl_command(&["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a raw watch starts");
    // Both watches are open once a change reaches them.
    std::thread::sleep(Duration::from_secs(1));
    controller.kubectl(&["create", "configmap", "during-watch"]).expect("a change while watching");
    std::thread::sleep(Duration::from_millis(500));

    let mut old = controller.terminate().expect("SIGTERM is sent");
    std::thread::sleep(Duration::from_millis(500));
    controller.start_again().expect("a controller started 0.5 s after SIGTERM serves");
    let (status, took) = wait_for_exit(&mut old, Duration::from_secs(30)).expect("the old controller exits");
    assert!(status.success(), "{status}");
    assert!(
        took < IDLE_EXIT_LIMIT,
        "with open watches the controller took {took:?} to exit; log:\n{}",
        controller.log()
    );

    // The watch streams ended (the raw one with a complete stream of events), rather than being cut mid-event.
    let (raw_status, _) = wait_for_exit(&mut raw_watch, Duration::from_secs(10)).expect("the raw watch ends");
    let mut raw_events = String::new();
    raw_watch.stdout.take().unwrap().read_to_string(&mut raw_events).unwrap();
    assert!(raw_status.success(), "the raw watch ends without an error: {raw_status}");
    assert!(raw_events.contains("\"during-watch\""), "the raw watch saw the change:\n{raw_events}");
    for line in raw_events.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|error| panic!("a cut event {line:?}: {error}"));
    }
    let kubectl_ended = wait_for_exit(&mut kubectl_watch, Duration::from_secs(10));
    let mut printed = String::new();
    kubectl_watch.stdout.take().unwrap().read_to_string(&mut printed).ok();
    if kubectl_ended.is_none() {
        let _ = kubectl_watch.kill();
    }
    assert!(printed.contains("during-watch"), "kubectl -w saw the change:\n{printed}");

    let mut names = config_map_names(&controller);
    names.retain(|name| name.starts_with("configmap/kept-"));
    assert_eq!(names.len(), 5, "every object is there after the restart");
    assert!(controller.kubectl(&["get", "configmap", "during-watch"]).is_ok());
}
