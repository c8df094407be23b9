//! The official Python `kubernetes` client against a real `kaasd controller`: runs the pytest suite in
//! tests/python with `KUBECONFIG` pointing at a fresh controller.
//!
//! The packages come from tests/python/requirements.txt (tests/run.sh installs them). Without them this test
//! fails rather than skips, so a CI run can never pass by quietly testing nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kaasd_e2e::controller::Controller;

/// The suite takes about two minutes (its conformance entries wait for controllers, one test after another); a
/// hung watch must not hang the whole test run.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(360);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn require_python_packages() {
    let check = Command::new("python3").args(["-c", "import kubernetes, pytest"]).output();
    let problem = match check {
        Ok(output) if output.status.success() => return,
        // The last line of the traceback names the missing module.
        Ok(output) => String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_string(),
        Err(error) => format!("cannot run python3: {error}"),
    };
    panic!(
        "the Python client tests need the kubernetes and pytest packages ({problem}); install them with \
         `python3 -m pip install -r tests/python/requirements.txt` (tests/run.sh does)"
    );
}

#[test]
fn the_python_kubernetes_client_suite_passes() {
    require_python_packages();
    let controller = Controller::start().expect("kaasd controller starts");
    let root = workspace_root();
    let output_dir = tempfile::tempdir().expect("a directory for pytest's output");
    let output_path = output_dir.path().join("pytest.log");
    let output = std::fs::File::create(&output_path).expect("pytest's output file");
    let mut pytest = Command::new("python3")
        // No cache directory and no bytecode: the source tree stays as it was.
        .args(["-m", "pytest", "tests/python", "-q", "-p", "no:cacheprovider", "--tb=short"])
        .current_dir(&root)
        .env("KUBECONFIG", controller.kubeconfig())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("a second handle on the output file"))
        .stderr(output)
        .spawn()
        .expect("python3 -m pytest starts");

    let deadline = Instant::now() + PYTEST_TIMEOUT;
    let status = loop {
        if let Some(status) = pytest.try_wait().expect("pytest can be waited for") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = pytest.kill();
            let _ = pytest.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
    println!("{printed}");
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "the Python client suite failed ({status}); pytest's report is above; controller log (tail):\n{}",
            tail(&controller.log(), 40)
        ),
        None => panic!("the Python client suite did not finish within {PYTEST_TIMEOUT:?}; pytest's report is above"),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<_> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
