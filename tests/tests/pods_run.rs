//! Pods on a real node, end to end: a `kaasd controller`, a `kaasd worker` joined with a token on this machine
//! running Debian's containerd and runc, an image archive made here from Debian's busybox-static and imported with
//! `kaasd images import`, and kubectl.
//!
//! Needs root, containerd, runc, containernetworking-plugins and busybox-static (tests/run.sh installs them).
//! Without them the tests fail: they never pass by testing nothing.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/one_node.rs"]
mod one_node;

use kaasd_e2e::controller::Controller;
use one_node::{check_dependencies, Node, ONE_NODE_AT_A_TIME, POD_CIDR, TIMEOUT};

fn pod(name: &str, node: &str, restart_policy: &str, image: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  restartPolicy: \
         {restart_policy}\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: {image}\n    \
         command: [\"sh\", \"-c\", {script:?}]\n    env:\n    - name: POD_NAME\n      valueFrom: {{fieldRef: \
         {{fieldPath: metadata.name}}}}\n    - name: GREETING\n      value: hello from $(POD_NAME)\n"
    )
}

#[test]
fn pods_run_log_finish_crash_and_are_deleted() {
    let node = Node::start("pods-a");

    // A long-running pod reaches Running with an address from the node's pod CIDR, and logs through the tunnel.
    let script = "echo $GREETING; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done";
    node.apply(&pod("ticker", "pods-a", "Always", "busybox:1.36", script));
    node.wait_phase("ticker", "Running");
    assert!(node.field("ticker", ".status.podIP").starts_with("10.244.0."), "pod IP from the node's CIDR");
    assert_eq!(node.field("ticker", r#".status.conditions[?(@.type=="Ready")].status"#), "True");
    assert!(node.field("ticker", ".status.containerStatuses[0].containerID").starts_with("containerd://"));
    assert!(node.field("ticker", ".status.containerStatuses[0].imageID").starts_with("sha256:"));
    node.wait("ticker logging", || Ok(node.controller.kubectl(&["logs", "ticker"])?.contains("tick 2")));
    let logs = node.controller.kubectl(&["logs", "ticker"]).unwrap();
    assert!(logs.starts_with("hello from ticker\ntick 0\n"), "env with $(VAR) and fieldRef: {logs:?}");
    let tail = node.controller.kubectl(&["logs", "ticker", "--tail=1"]).unwrap();
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    let stamped = node.controller.kubectl(&["logs", "ticker", "--tail=1", "--timestamps"]).unwrap();
    assert!(stamped.starts_with("20") && stamped.contains("Z tick "), "{stamped:?}");

    // `kubectl logs -f` keeps streaming new lines.
    let mut follow = node
        .controller
        .kubectl_command(&["logs", "-f", "ticker", "--tail=1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f starts");
    std::thread::sleep(Duration::from_secs(4));
    let _ = follow.kill();
    let output = follow.wait_with_output().expect("kubectl logs -f output");
    let followed = String::from_utf8_lossy(&output.stdout);
    assert!(followed.lines().filter(|line| line.starts_with("tick ")).count() >= 3, "follow streams: {followed:?}");

    // restartPolicy Never, exit 0: Succeeded, and the ServiceAccount token volume was there.
    let script = "ls /var/run/secrets/kubernetes.io/serviceaccount; echo done";
    node.apply(&pod("once", "pods-a", "Never", "busybox:1.36", script));
    node.wait_phase("once", "Succeeded");
    assert_eq!(node.field("once", ".status.containerStatuses[0].state.terminated.reason"), "Completed");
    let logs = node.controller.kubectl(&["logs", "once"]).unwrap();
    assert_eq!(logs, "ca.crt\nnamespace\ntoken\ndone\n");

    // restartPolicy Never, exit 3: Failed with the exit code.
    node.apply(&pod("fails", "pods-a", "Never", "busybox:1.36", "exit 3"));
    node.wait_phase("fails", "Failed");
    assert_eq!(node.field("fails", ".status.containerStatuses[0].state.terminated.exitCode"), "3");
    assert_eq!(node.field("fails", ".status.containerStatuses[0].state.terminated.reason"), "Error");

    // A crashing container is restarted with back-off: restartCount grows, CrashLoopBackOff in between.
    node.apply(&pod("crasher", "pods-a", "Always", "busybox:1.36", "echo crashing; exit 1"));
    node.wait("crasher restarting twice", || {
        Ok(node.field("crasher", ".status.containerStatuses[0].restartCount").parse::<u32>().unwrap_or(0) >= 2)
    });
    node.wait("crasher in CrashLoopBackOff", || {
        Ok(node.field("crasher", ".status.containerStatuses[0].state.waiting.reason") == "CrashLoopBackOff")
    });
    assert_eq!(node.field("crasher", ".status.containerStatuses[0].lastState.terminated.exitCode"), "1");
    let previous = node.controller.kubectl(&["logs", "crasher", "--previous"]).unwrap();
    assert_eq!(previous, "crashing\n");

    // Probes: readiness (exec) holds Ready back until it passes; a failing liveness probe restarts the container.
    let script = "touch /tmp/alive; sleep 6; touch /tmp/ready; sleep 4; rm /tmp/alive; sleep 100000";
    let mut manifest = pod("probed", "pods-a", "Always", "busybox:1.36", script);
    manifest.push_str(
        "    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}\n    livenessProbe: {exec: \
         {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}\n",
    );
    node.apply(&manifest);
    node.wait_phase("probed", "Running");
    assert_eq!(node.field("probed", ".status.containerStatuses[0].ready"), "false", "not ready before the probe");
    node.wait("probed becoming Ready", || {
        Ok(node.field("probed", r#".status.conditions[?(@.type=="Ready")].status"#) == "True")
    });
    node.wait("probed restarted by its liveness probe", || {
        Ok(node.field("probed", ".status.containerStatuses[0].restartCount").parse::<u32>().unwrap_or(0) >= 1)
    });

    // An image that is not on the node: ErrImagePull, then ImagePullBackOff, saying how to import it.
    node.apply(&pod("absent", "pods-a", "Always", "example.invalid/nothing:1", "true"));
    node.wait("absent reporting the missing image", || {
        let reason = node.field("absent", ".status.containerStatuses[0].state.waiting.reason");
        Ok(reason == "ErrImagePull" || reason == "ImagePullBackOff")
    });
    let message = node.field("absent", ".status.containerStatuses[0].state.waiting.message");
    assert!(message.contains("kaasd images import"), "{message:?}");
    assert_eq!(node.field("absent", ".status.phase"), "Pending");

    // Deleting a running pod stops its container within the grace period and removes the Pod.
    let started = Instant::now();
    node.controller.kubectl(&["delete", "pod", "ticker", "--timeout=60s"]).expect("kubectl delete finishes");
    assert!(started.elapsed() < Duration::from_secs(30), "deletion took {:?}", started.elapsed());
    let gone = node.controller.kubectl_output(&["get", "pod", "ticker"]).unwrap();
    assert!(!gone.status.success(), "the Pod is gone");
    node.wait("ticker's containers being removed", || {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(node.containerd_socket())
            .args(["--namespace", "k8s.io", "containers", "list", "labels.io.kubernetes.pod.name==ticker"])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).lines().count() <= 1)
    });
}

#[test]
fn a_restarted_worker_adopts_running_containers() {
    let mut node = Node::start("pods-b");
    node.apply(&pod("steady", "pods-b", "Always", "busybox:1.36", "echo up; sleep 100000"));
    node.wait_phase("steady", "Running");
    let container = node.field("steady", ".status.containerStatuses[0].containerID");
    let started = node.field("steady", ".status.containerStatuses[0].state.running.startedAt");

    // SIGTERM: the worker stops its containerd, the container keeps running in its shim.
    node.worker.terminate().expect("the worker stops");
    node.worker.restart().expect("the worker starts again");
    std::thread::sleep(Duration::from_secs(5));
    node.wait_phase("steady", "Running");
    assert_eq!(node.field("steady", ".status.containerStatuses[0].containerID"), container, "the same container");
    assert_eq!(node.field("steady", ".status.containerStatuses[0].state.running.startedAt"), started);
    assert_eq!(node.field("steady", ".status.containerStatuses[0].restartCount"), "0");
    assert_eq!(node.controller.kubectl(&["logs", "steady"]).unwrap(), "up\n");

    // kill -9: the worker's containerd keeps running and the next worker uses it.
    node.worker.kill().expect("the worker is killed");
    node.worker.restart().expect("the worker starts again");
    node.wait("the worker using the containerd it left", || {
        Ok(node.worker.log().contains("containerd is already running; using it"))
    });
    node.wait_phase("steady", "Running");
    assert_eq!(node.field("steady", ".status.containerStatuses[0].containerID"), container);
    node.controller.kubectl(&["delete", "pod", "steady", "--timeout=60s"]).expect("kubectl delete finishes");
}

/// `kaasd controller --enable-worker`: one process is the whole cluster, and a pod created before the node has a
/// pod network starts once it has one.
#[test]
fn a_controller_with_its_own_worker_runs_pods() {
    let _turn = ONE_NODE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    check_dependencies();
    let port = kaasd_e2e::free_port().expect("a free port");
    let mut controller =
        Controller::start_with(vec!["--enable-worker".into(), "--agent-port".into(), port.to_string()])
            .expect("controller starts");
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_lowercase();
    let socket = controller.data_dir().join("containerd/containerd.sock");
    let wait = |what: &str, check: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + TIMEOUT;
        while !check() {
            assert!(Instant::now() < deadline, "{what} did not happen within {TIMEOUT:?}\n{}", controller.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait("the controller's own node becoming Ready", &mut || {
        controller
            .kubectl(&["get", "node", &node, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#])
            .is_ok_and(|status| status.trim() == "True")
    });
    // The archive the README's first pod uses, made by `kaasd images busybox`; this time gzip-compressed.
    let archive = controller.data_dir().join("busybox.tar");
    let made = Command::new(kaasd_e2e::kaasd_binary().expect("kaasd builds"))
        .args(["images", "busybox", "--output"])
        .arg(&archive)
        .output()
        .expect("kaasd images busybox runs");
    assert!(made.status.success(), "images busybox failed: {}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(
        String::from_utf8_lossy(&made.stdout),
        format!("wrote {} (docker.io/library/busybox:1.36) from /bin/busybox\n", archive.display())
    );
    assert!(Command::new("gzip").arg("-f").arg(&archive).status().expect("gzip runs").success());
    let archive = controller.data_dir().join("busybox.tar.gz");
    let output = Command::new(kaasd_e2e::kaasd_binary().expect("kaasd builds"))
        .args(["images", "import", "--data-dir"])
        .arg(controller.data_dir())
        .arg(&archive)
        .output()
        .expect("kaasd images import runs");
    assert!(output.status.success(), "images import failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("imported docker.io/library/busybox:1.36 from "));

    controller
        .kubectl(&[
            "run",
            "solo",
            "--image=busybox:1.36",
            "--restart=Never",
            &format!(r#"--overrides={{"spec":{{"nodeName":"{node}"}}}}"#),
            "--",
            "sh",
            "-c",
            "echo one machine",
        ])
        .expect("kubectl run");
    std::thread::sleep(Duration::from_secs(2));
    let patch = format!(r#"{{"spec":{{"podCIDR":"{POD_CIDR}","podCIDRs":["{POD_CIDR}"]}}}}"#);
    if controller.kubectl(&["get", "node", &node, "-o", "jsonpath={.spec.podCIDR}"]).unwrap_or_default().is_empty() {
        controller.kubectl(&["patch", "node", &node, "-p", &patch]).expect("podCIDR is set");
    }
    wait("solo succeeding", &mut || {
        controller.kubectl(&["get", "pod", "solo", "-o", "jsonpath={.status.phase}"]).is_ok_and(|p| p == "Succeeded")
    });
    assert_eq!(controller.kubectl(&["logs", "solo"]).unwrap(), "one machine\n");
    controller.kubectl(&["delete", "pod", "solo"]).expect("kubectl delete");

    // The whole path on one machine: a Deployment's pods are scheduled to this node, run, turn Ready, and the
    // rollout completes; deleting it removes its containers.
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sleepy}\nspec:\n  replicas: 2\n  \
        selector: {matchLabels: {app: sleepy}}\n  template:\n    metadata: {labels: {app: sleepy}}\n    spec:\n      \
        terminationGracePeriodSeconds: 1\n      containers:\n      - {name: sleepy, image: 'busybox:1.36', \
        command: [sleep, '3600'], readinessProbe: {exec: {command: ['true']}, periodSeconds: 1}}\n";
    controller.kubectl_stdin(&["apply", "-f", "-"], deployment).expect("the deployment is created");
    controller
        .kubectl(&["rollout", "status", "deployment/sleepy", "--timeout=120s"])
        .unwrap_or_else(|error| panic!("rollout: {error}\n{}", controller.log()));
    let nodes =
        controller.kubectl(&["get", "pods", "-l", "app=sleepy", "-o", "jsonpath={.items[*].spec.nodeName}"]).unwrap();
    assert_eq!(nodes.split_whitespace().collect::<Vec<_>>(), [node.as_str(), node.as_str()]);
    controller.kubectl(&["delete", "deployment", "sleepy"]).expect("kubectl delete deployment");
    wait("the deployment's pods being gone", &mut || {
        controller.kubectl(&["get", "pods", "-l", "app=sleepy", "-o", "name"]).is_ok_and(|pods| pods.trim().is_empty())
    });
    let runtime_containers = || {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io", "containers", "list", "--quiet"])
            .output()
            .expect("ctr runs");
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime_containers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(controller.stop().expect("the controller stops").success());
    assert!(
        !socket.exists()
            || Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .arg("version")
                .output()
                .is_ok_and(|output| !output.status.success()),
        "stopping the controller stops its containerd"
    );
}

/// What a kubectl user types to get into a pod: exec (with stdin, with a terminal, with an exit code), cp both ways,
/// attach through `kubectl run -i`, port-forward; and the Python client's WebSocket exec. Every byte goes API
/// server → tunnel → worker agent → containerd's stream server and back.
#[test]
fn exec_attach_cp_and_port_forward() {
    let node = Node::start("pods-c");
    node.apply(&pod("shell", "pods-c", "Always", "busybox:1.36", "sleep 100000"));
    let web = "mkdir -p /www && echo served-by-httpd > /www/index.html && exec httpd -f -p 8080 -h /www";
    node.apply(&pod("web", "pods-c", "Always", "busybox:1.36", web));
    node.wait_phase("shell", "Running");
    node.wait_phase("web", "Running");

    // exec: stdout and stderr apart, and the command's exit code becomes kubectl's.
    let output =
        node.controller.kubectl_output(&["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("err\n") && stderr.contains("command terminated with exit code 3"), "{stderr:?}");
    assert_eq!(output.status.code(), Some(3));

    // exec -i: stdin reaches the command, and its end closes the command's stdin.
    let echoed = node.controller.kubectl_stdin(&["exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"], "typed\n");
    assert_eq!(echoed.unwrap(), "typed\ndone\n");

    // exec -it under a pseudo-terminal (util-linux `script`): the command gets a terminal.
    let line = format!(
        "/usr/bin/kubectl --kubeconfig {} exec -it shell -- sh -c 'tty; echo cols=$COLUMNS'",
        node.controller.kubeconfig().display()
    );
    let output = Command::new("script").args(["-qec", &line, "/dev/null"]).output().expect("script runs");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(terminal.contains("/dev/pts/"), "a terminal in the container: {terminal:?}");

    // cp both ways, byte for byte (a megabyte with every byte value).
    let local = node.worker.data_dir().join("upload.bin");
    let contents: Vec<u8> = (0..1024 * 1024).map(|index: u32| (index % 251) as u8).collect();
    std::fs::write(&local, &contents).unwrap();
    node.controller.kubectl(&["cp", local.to_str().unwrap(), "shell:/tmp/upload.bin"]).expect("cp into the pod");
    let sum = node.controller.kubectl(&["exec", "shell", "--", "md5sum", "/tmp/upload.bin"]).unwrap();
    let expected = Command::new("md5sum").arg(&local).output().unwrap();
    let expected = String::from_utf8_lossy(&expected.stdout);
    assert_eq!(sum.split_whitespace().next(), expected.split_whitespace().next(), "the file arrived intact");
    let back = node.worker.data_dir().join("download.bin");
    node.controller.kubectl(&["cp", "shell:/tmp/upload.bin", back.to_str().unwrap()]).expect("cp out of the pod");
    assert!(std::fs::read(&back).unwrap() == contents, "the file came back intact");

    // attach: `kubectl run -i` attaches to the new pod's stdin and output, then deletes it.
    let answer = node.controller.kubectl_stdin(
        &[
            "run",
            "asker",
            "--image=busybox:1.36",
            "--image-pull-policy=Never",
            "--overrides={\"spec\":{\"nodeName\":\"pods-c\"}}",
            "-i",
            "--rm",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "read name; echo hello $name",
        ],
        "world\n",
    );
    assert!(answer.unwrap().contains("hello world"), "attach carries stdin and stdout");

    // port-forward to busybox httpd, on a port kubectl picks.
    let mut forward = node
        .controller
        .kubectl_command(&["port-forward", "pod/web", ":8080"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward starts");
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(forward.stdout.as_mut().expect("stdout is captured")),
        &mut first_line,
    )
    .unwrap();
    let port: u16 = first_line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("kubectl says where it listens: {first_line:?}"));
    for _ in 0..2 {
        let page = http_get(port, "/index.html");
        assert!(page.starts_with("HTTP/1.") && page.ends_with("served-by-httpd\n"), "{page:?}");
    }
    let _ = forward.kill();
    let _ = forward.wait();

    // The Python client's exec (WebSocket v4.channel.k8s.io, booleans spelled `True`).
    let script = "from kubernetes import client, config\nfrom kubernetes.stream import stream\n\
                  config.load_kube_config()\n\
                  print(stream(client.CoreV1Api().connect_get_namespaced_pod_exec, 'shell', 'default', \
                  command=['sh', '-c', 'echo py-$((6*7))'], stderr=True, stdin=False, stdout=True, tty=False), end='')\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .env("KUBECONFIG", node.controller.kubeconfig())
        .output()
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "py-42\n", "{}", String::from_utf8_lossy(&output.stderr));

    // A finished pod cannot be exec'd into, and says why.
    node.apply(&pod("done", "pods-c", "Never", "busybox:1.36", "true"));
    node.wait_phase("done", "Succeeded");
    let output = node.controller.kubectl_output(&["exec", "done", "--", "true"]).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("cannot exec into a container in a completed pod"), "{stderr}");

    // The node lists the images it holds, as `kubectl describe node` shows them.
    node.wait("the node reporting its images", || {
        let images = node.controller.kubectl(&["get", "node", "pods-c", "-o", "jsonpath={.status.images[*].names}"])?;
        Ok(images.contains("docker.io/library/busybox:1.36"))
    });
}

/// One HTTP/1.0 GET on 127.0.0.1:`port`; the whole answer.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port accepts");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    answer
}

/// Init containers run one after another before the app, sharing an emptyDir with it; kubectl shows their progress
/// (`Init:0/2`); a failing one fails a restartPolicy Never pod and is retried with back-off otherwise; a sidecar
/// (restartPolicy Always) keeps running next to the app.
#[test]
fn init_containers_run_first() {
    let node = Node::start("pods-d");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: staged\nspec:\n  nodeName: pods-d\n  \
                    terminationGracePeriodSeconds: 1\n  volumes:\n  - {name: work, emptyDir: {}}\n  initContainers:\n  \
                    - {name: first, image: 'busybox:1.36', command: [sh, -c, 'sleep 4; echo one > /work/log'], \
                    volumeMounts: [{name: work, mountPath: /work}]}\n  - {name: second, image: 'busybox:1.36', \
                    command: [sh, -c, 'echo two >> /work/log'], volumeMounts: [{name: work, mountPath: /work}]}\n  \
                    - {name: ticker, image: 'busybox:1.36', restartPolicy: Always, command: [sh, -c, 'while true; \
                    do date > /work/tick; sleep 1; done'], volumeMounts: [{name: work, mountPath: /work}]}\n  \
                    containers:\n  - {name: app, image: 'busybox:1.36', command: [sh, -c, 'cat /work/log; sleep \
                    100000'], volumeMounts: [{name: work, mountPath: /work}]}\n";
    node.apply(manifest);
    node.wait("kubectl showing the first init container at work", || {
        let table = node.controller.kubectl(&["get", "pod", "staged", "--no-headers"])?;
        Ok(table.split_whitespace().nth(2) == Some("Init:0/3"))
    });
    assert_eq!(node.field("staged", r#".status.conditions[?(@.type=="Initialized")].status"#), "False");
    assert_eq!(node.field("staged", ".status.containerStatuses[0].state.waiting.reason"), "PodInitializing");
    node.wait_phase("staged", "Running");
    node.wait("the app logging", || Ok(!node.controller.kubectl(&["logs", "staged", "-c", "app"])?.is_empty()));
    assert_eq!(node.controller.kubectl(&["logs", "staged", "-c", "app"]).unwrap(), "one\ntwo\n", "in order, once");
    assert_eq!(node.field("staged", ".status.initContainerStatuses[0].state.terminated.reason"), "Completed");
    assert!(!node.field("staged", ".status.initContainerStatuses[2].state.running.startedAt").is_empty());
    assert_eq!(node.field("staged", r#".status.conditions[?(@.type=="Initialized")].status"#), "True");
    let tick = node.controller.kubectl(&["exec", "staged", "-c", "app", "--", "cat", "/work/tick"]).unwrap();
    assert!(!tick.is_empty(), "the sidecar runs next to the app");

    // A failing init container: a Never pod fails without starting its app; an Always pod retries it with back-off.
    let failing = |name: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: pods-d\n  restartPolicy: \
             {policy}\n  initContainers:\n  - {{name: setup, image: 'busybox:1.36', command: [sh, -c, 'exit 2']}}\n  \
             containers:\n  - {{name: app, image: 'busybox:1.36', command: [sleep, '100000']}}\n"
        )
    };
    node.apply(&failing("init-never", "Never"));
    node.apply(&failing("init-always", "Always"));
    node.wait_phase("init-never", "Failed");
    assert_eq!(node.field("init-never", ".status.initContainerStatuses[0].state.terminated.exitCode"), "2");
    assert_eq!(node.field("init-never", ".status.containerStatuses[0].state.waiting.reason"), "PodInitializing");
    node.wait("the init container retried in back-off", || {
        let table = node.controller.kubectl(&["get", "pod", "init-always", "--no-headers"])?;
        Ok(table.split_whitespace().nth(2) == Some("Init:CrashLoopBackOff"))
    });
    assert_eq!(node.field("init-always", ".status.phase"), "Pending");
}

/// Lifecycle hooks and termination messages: postStart runs before the container counts as started, preStop runs
/// on delete within the grace period (seen through a hostPath), and the terminated state carries the message the
/// container wrote to its terminationMessagePath, or its log's end with FallbackToLogsOnError.
#[test]
fn hooks_and_termination_messages() {
    let node = Node::start("pods-e");
    let shared = node.worker.data_dir().join("hooks");
    std::fs::create_dir_all(&shared).unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hooked\nspec:\n  nodeName: pods-e\n  \
         terminationGracePeriodSeconds: 10\n  volumes:\n  - {{name: shared, hostPath: {{path: {shared}}}}}\n  \
         containers:\n  - name: main\n    image: busybox:1.36\n    command: [sh, -c, 'sleep 100000']\n    \
         volumeMounts: [{{name: shared, mountPath: /shared}}]\n    lifecycle:\n      postStart: {{exec: {{command: \
         [sh, -c, 'echo started > /shared/post-start']}}}}\n      preStop: {{exec: {{command: [sh, -c, 'sleep 1; \
         echo stopping > /shared/pre-stop']}}}}\n",
        shared = shared.display()
    );
    node.apply(&manifest);
    node.wait_phase("hooked", "Running");
    assert_eq!(std::fs::read_to_string(shared.join("post-start")).unwrap(), "started\n", "postStart ran first");
    assert!(!shared.join("pre-stop").exists());
    node.controller.kubectl(&["delete", "pod", "hooked", "--wait=true", "--timeout=60s"]).expect("delete finishes");
    assert_eq!(std::fs::read_to_string(shared.join("pre-stop")).unwrap(), "stopping\n", "preStop ran on delete");

    let message = |name: &str, policy: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: pods-e\n  restartPolicy: \
             Never\n  containers:\n  - name: main\n    image: busybox:1.36\n    terminationMessagePolicy: {policy}\n    \
             command: [sh, -c, {script:?}]\n"
        )
    };
    node.apply(&message("told", "File", "echo -n 'all done' > /dev/termination-log"));
    node.apply(&message("from-log", "FallbackToLogsOnError", "echo first; echo 'last words'; exit 4"));
    node.wait_phase("told", "Succeeded");
    node.wait_phase("from-log", "Failed");
    assert_eq!(node.field("told", ".status.containerStatuses[0].state.terminated.message"), "all done");
    assert_eq!(node.field("from-log", ".status.containerStatuses[0].state.terminated.message"), "first\nlast words\n");

    // A startup probe holds `started` and readiness back until it passes; one that never passes restarts it.
    let startup = |name: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: pods-e\n  \
             terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: \
             [sh, -c, {script:?}]\n    startupProbe: {{exec: {{command: [cat, /tmp/up]}}, periodSeconds: 1, \
             failureThreshold: 3}}\n    readinessProbe: {{exec: {{command: ['true']}}, periodSeconds: 1}}\n"
        )
    };
    node.apply(&startup("slow-start", "sleep 2; touch /tmp/up; sleep 100000"));
    node.apply(&startup("never-up", "sleep 100000"));
    node.wait_phase("slow-start", "Running");
    assert_eq!(node.field("slow-start", ".status.containerStatuses[0].started"), "false", "not started before it");
    assert_eq!(node.field("slow-start", ".status.containerStatuses[0].ready"), "false");
    node.wait("slow-start becoming Ready", || {
        Ok(node.field("slow-start", r#".status.conditions[?(@.type=="Ready")].status"#) == "True")
    });
    assert_eq!(node.field("slow-start", ".status.containerStatuses[0].started"), "true");
    assert_eq!(node.field("slow-start", ".status.containerStatuses[0].restartCount"), "0");
    node.wait("never-up restarted by its startup probe", || {
        Ok(node.field("never-up", ".status.containerStatuses[0].restartCount").parse::<u32>().unwrap_or(0) >= 1)
    });
}

/// Resources become the container's cgroup (CPU quota, memory limit), a container over its memory limit is
/// reported OOMKilled, and securityContext capabilities, user and read-only root reach the process.
#[test]
fn limits_oom_kills_and_security_context() {
    let node = Node::start("pods-f");
    let manifest =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: limited\nspec:\n  nodeName: pods-f\n  containers:\n  \
                    - name: main\n    image: busybox:1.36\n    command: [sleep, '100000']\n    resources: {limits: \
                    {cpu: 500m, memory: 64Mi}}\n    securityContext: {runAsUser: 1234, readOnlyRootFilesystem: true, \
                    capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n";
    node.apply(manifest);
    node.wait_phase("limited", "Running");
    assert_eq!(node.field("limited", ".status.qosClass"), "Guaranteed");
    let exec = |script: &str| {
        node.controller.kubectl(&["exec", "limited", "--", "sh", "-c", script]).map(|out| out.trim().to_string())
    };
    assert_eq!(exec("cat /sys/fs/cgroup/memory/memory.limit_in_bytes").unwrap(), "67108864");
    assert_eq!(exec("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us").unwrap(), "50000");
    assert_eq!(exec("id -u").unwrap(), "1234");
    // Only CAP_NET_BIND_SERVICE (bit 10) is left in the bounding set (a non-root user has no effective ones).
    assert_eq!(exec("grep CapBnd /proc/self/status").unwrap(), "CapBnd:\t0000000000000400");
    let write = node.controller.kubectl_output(&["exec", "limited", "--", "touch", "/written"]).unwrap();
    assert!(String::from_utf8_lossy(&write.stderr).contains("Read-only file system"), "{write:?}");

    let hungry = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hungry\nspec:\n  nodeName: pods-f\n  restartPolicy: \
                  Never\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sh, -c, 'x=$(head -c \
                  200000000 /dev/zero | tr \"\\\\0\" a); echo survived']\n    resources: {limits: {memory: 32Mi}}\n";
    node.apply(hungry);
    node.wait_phase("hungry", "Failed");
    assert_eq!(node.field("hungry", ".status.containerStatuses[0].state.terminated.reason"), "OOMKilled");
    assert_eq!(node.field("hungry", ".status.containerStatuses[0].state.terminated.exitCode"), "137");
}

/// kube-rs's WebSocket exec (`ws` feature, `v5.channel.k8s.io` and `v4.channel.k8s.io` offered in one header): the
/// runtime picks v4, stdin and stdout pass, and the exit status arrives on the error channel.
#[test]
fn kube_rs_exec_over_websocket() {
    let node = Node::start("pods-g");
    node.apply(&pod("shell", "pods-g", "Always", "busybox:1.36", "sleep 100000"));
    node.wait_phase("shell", "Running");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use kube::api::AttachParams;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let kubeconfig = kube::config::Kubeconfig::read_from(node.controller.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
        let params = AttachParams::default().stdin(true).stdout(true).stderr(false);
        let mut process = pods.exec("shell", ["sh", "-c", "read line; echo got $line; exit 5"], &params).await.unwrap();
        let mut stdin = process.stdin().unwrap();
        stdin.write_all(b"from kube-rs\n").await.unwrap();
        let mut stdout = process.stdout().unwrap();
        let mut output = String::new();
        stdout.read_to_string(&mut output).await.unwrap();
        assert_eq!(output, "got from kube-rs\n");
        let status = process.take_status().unwrap().await.unwrap();
        assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
        let code = status.details.and_then(|details| details.causes).and_then(|causes| causes.into_iter().next());
        assert_eq!(code.and_then(|cause| cause.message).as_deref(), Some("5"));
    });
}

/// A node's own certificate reads only the Secrets its pods use and writes only its pods (upstream's Node
/// authorizer and NodeRestriction): a stolen edge device cannot read the cluster's Secrets.
#[test]
fn a_node_reads_only_what_its_pods_use() {
    let node = Node::start("pods-h");
    for secret in ["mine", "theirs"] {
        node.controller.kubectl(&["create", "secret", "generic", secret, "--from-literal=key=value"]).unwrap();
    }
    let with_secret = |name: &str, node_name: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node_name}\n  \
             terminationGracePeriodSeconds: 1\n  volumes:\n  - {{name: s, secret: {{secretName: {secret}}}}}\n  \
             containers:\n  - {{name: main, image: 'busybox:1.36', command: [sleep, '100000'], volumeMounts: \
             [{{name: s, mountPath: /s}}]}}\n"
        )
    };
    node.apply(&with_secret("here", "pods-h", "mine"));
    node.apply(&with_secret("elsewhere", "another-node", "theirs"));
    node.wait_phase("here", "Running");

    let as_node = |arguments: &[&str]| node.kubectl_as_node(arguments);
    assert!(as_node(&["auth", "whoami"]).0, "the node is authenticated");
    let (allowed, stderr) = as_node(&["get", "secret", "mine"]);
    assert!(allowed, "its own pod's Secret: {stderr}");
    let (allowed, stderr) = as_node(&["get", "secret", "theirs"]);
    assert!(!allowed && stderr.contains("no relationship found between node 'pods-h' and this object"), "{stderr}");
    assert!(!as_node(&["get", "secrets"]).0, "no listing of Secrets");
    let status = r#"{"status":{"phase":"Failed"}}"#;
    let (allowed, stderr) = as_node(&["patch", "pod", "elsewhere", "--subresource=status", "-p", status]);
    assert!(!allowed && stderr.contains("forbidden"), "another node's pod: {stderr}");
    assert!(as_node(&["get", "pods", "-A"]).0, "reading pods stays allowed");
    let (allowed, stderr) = as_node(&["label", "node", "pods-h", "--overwrite", "checked=yes"]);
    assert!(allowed, "its own Node: {stderr}");
}

/// A pod that asks for `cpu_millis` of the node's CPU, of PriorityClass `class`, placed by the scheduler.
fn pod_of_class(name: &str, class: &str, cpu_millis: u64) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  priorityClassName: {class}\n  \
         terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: busybox:1.36\n    \
         command: [\"sleep\", \"3600\"]\n    resources:\n      requests:\n        cpu: {cpu_millis}m\n"
    )
}

#[test]
fn a_pod_of_higher_priority_preempts_pods_of_lower_priority() {
    let node = Node::start("preempt-a");
    let kubectl = |arguments: &[&str]| node.controller.kubectl(arguments).expect("kubectl");
    kubectl(&["create", "priorityclass", "low", "--value=10"]);
    kubectl(&["create", "priorityclass", "high", "--value=1000"]);
    kubectl(&["create", "priorityclass", "polite", "--value=2000", "--preemption-policy=Never"]);
    let allocatable =
        node.controller.kubectl(&["get", "node", "preempt-a", "-o", "jsonpath={.status.allocatable.cpu}"]);
    let allocatable = allocatable.expect("the node's CPU");
    let cpu_millis: u64 = match allocatable.trim().strip_suffix('m') {
        Some(millis) => millis.parse().expect("millicores"),
        None => allocatable.trim().parse::<u64>().expect("cores") * 1000,
    };
    // Each big pod takes 60 % of the node: two never fit together. The small one fits beside either.
    let big = cpu_millis * 6 / 10;
    node.apply(&pod_of_class("victim", "low", big));
    node.apply(&pod_of_class("bystander", "low", cpu_millis / 10));
    node.wait_phase("victim", "Running");
    node.wait_phase("bystander", "Running");

    // The preemptor fits only if the victim goes; the bystander can stay, so it does. A watch records every
    // version of the pods on the way (the victim may be gone before a poll would see it terminating).
    let mut watch = node
        .controller
        .kubectl_command(&["get", "pods", "--watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get --watch starts");
    std::thread::sleep(Duration::from_secs(1));
    node.apply(&pod_of_class("preemptor", "high", big));
    node.wait_phase("preemptor", "Running");
    let _ = watch.kill();
    let output = watch.wait_with_output().expect("the watch's output");
    let versions: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .expect("JSON objects from the watch");
    let versions_of = |name: &'static str| versions.iter().filter(move |pod| pod["metadata"]["name"] == name);
    let marked = versions_of("victim").any(|victim| {
        victim["metadata"]["deletionTimestamp"].is_string()
            && victim["status"]["conditions"].as_array().into_iter().flatten().any(|condition| {
                condition["type"] == "DisruptionTarget"
                    && condition["status"] == "True"
                    && condition["reason"] == "PreemptionByScheduler"
                    && condition["message"] == "default-scheduler: preempting to accommodate a higher priority pod"
            })
    });
    assert!(marked, "the victim was marked DisruptionTarget and deleted: {versions:?}");
    let nominated = versions_of("preemptor").any(|pod| pod["status"]["nominatedNodeName"] == "preempt-a");
    assert!(nominated, "the preemptor was nominated to the node first: {versions:?}");
    assert_eq!(node.field("preemptor", ".spec.nodeName"), "preempt-a");
    assert!(node.controller.kubectl(&["get", "pod", "victim"]).is_err(), "the victim is gone");
    assert_eq!(node.field("bystander", ".status.phase"), "Running", "only as many victims as needed");
    let preemptor_uid = node.field("preemptor", ".metadata.uid");
    let events = kubectl(&["get", "events", "--field-selector", "reason=Preempted"]);
    assert!(events.contains(&format!("Preempted by pod {preemptor_uid} on node preempt-a")), "{events}");

    // A pod whose class says Never waits instead, however high its priority, and says why.
    node.apply(&pod_of_class("polite", "polite", big));
    node.wait("polite's FailedScheduling event", || {
        let events =
            kubectl(&["get", "events", "--field-selector", "reason=FailedScheduling,involvedObject.name=polite"]);
        Ok(events.contains("1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."))
    });
    assert_eq!(node.field("preemptor", ".status.phase"), "Running");
    assert_eq!(node.field("polite", ".spec.nodeName"), "");
}
