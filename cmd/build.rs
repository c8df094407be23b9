//! Puts the git commit and the target triple into the binary, for `kaasd --version`.
//!
//! The commit comes from `KAASD_GIT_COMMIT` when set (a release build from a source tarball), else from git; a
//! build without either says `unknown` rather than failing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KAASD_GIT_COMMIT");
    let commit = match std::env::var("KAASD_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=KAASD_GIT_COMMIT={commit}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=KAASD_TARGET={target}");
}

/// The abbreviated commit of HEAD, and a rebuild whenever HEAD moves.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names the branch; the branch's ref (loose or packed) names the commit. Only files that exist are watched:
    // cargo treats a missing one as always changed.
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from).unwrap_or_else(|| git_dir.clone());
    let common_dir = if common_dir.is_absolute() { common_dir } else { manifest_dir().join(common_dir) };
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(reference));
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}

fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git").args(arguments).current_dir(manifest_dir()).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(".").to_path_buf())
}
