#!/usr/bin/env bash
# Builds kaasd as fully static (musl) Linux binaries and release tarballs, for x86_64 and aarch64:
#
#   packaging/build-static.sh                 # both architectures, into dist/
#   packaging/build-static.sh --arch aarch64  # one (repeat --arch for several)
#
# Output in dist/: kaasd-<version>-linux-<arch> (the binary), kaasd-<version>-linux-<arch>.tar.gz (binary, systemd
# units, OpenRC scripts, a README per role, the LICENSE) and SHA256SUMS.
#
# What it needs it installs: the rustup targets, and zig (PyPI's `ziglang`) with cargo-zigbuild (also from PyPI,
# prebuilt), which cross-compile the C parts (ring, SQLite) and link them with musl for both
# architectures with one toolchain. The binaries are built with the `dist` profile (Cargo.toml says how they are
# kept small), with the commit in `kaasd --version` (KAASD_GIT_COMMIT, else `unknown` outside git).
# Tarballs are reproducible: fixed order, owner and times (the commit's time, or SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

# Pinned so a rebuild uses the same linker and C compiler.
ZIGLANG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
MAX_BYTES=$((40 * 1024 * 1024))

arches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || fail "--arch needs x86_64 or aarch64"; arches+=("$2"); shift 2 ;;
    --arch=*) arches+=("${1#--arch=}"); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (expected --arch x86_64|aarch64)" ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
for arch in "${arches[@]}"; do
  case "$arch" in
    x86_64|aarch64) ;;
    armv7|arm) fail "$arch is not offered: its Rust standard library cannot be installed here (see docs/install.md)" ;;
    *) fail "unknown architecture $arch: use x86_64 or aarch64" ;;
  esac
done

command -v cargo >/dev/null || fail "cargo not found: install a Rust toolchain (rustup) first"
command -v rustup >/dev/null || fail "rustup not found: the musl targets are added with rustup"
command -v python3 >/dev/null || fail "python3 not found: zig and cargo-zigbuild come from PyPI"

installed_targets=$(rustup target list --installed)
for arch in "${arches[@]}"; do
  if ! grep -qx "$arch-unknown-linux-musl" <<<"$installed_targets"; then
    say "adding the Rust target $arch-unknown-linux-musl"
    rustup target add "$arch-unknown-linux-musl"
  fi
done

pip_install() {
  # Debian's own Python refuses pip installs outside a virtual environment (PEP 668) unless told to.
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -m ziglang version >/dev/null 2>&1 || ! command -v cargo-zigbuild >/dev/null; then
  say "installing zig $ZIGLANG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION from PyPI"
  pip_install "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
  hash -r
fi
command -v cargo-zigbuild >/dev/null ||
  fail "cargo-zigbuild is not on PATH after installing it: add pip's script directory (python3 -m site --user-base)/bin to PATH"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || fail "cannot read the version from Cargo.toml"
if [ -z "${KAASD_GIT_COMMIT:-}" ]; then
  KAASD_GIT_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
fi
export KAASD_GIT_COMMIT
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p dist
# One cargo run for every architecture: the last step of each (thin LTO of the kaasd binary) runs on one core for
# minutes, and run side by side the two use both cores of a small machine.
target_flags=()
for arch in "${arches[@]}"; do target_flags+=(--target "$arch-unknown-linux-musl"); done
say "building kaasd $version for ${arches[*]} (commit $KAASD_GIT_COMMIT)"
start=$(date +%s)
cargo zigbuild --locked --quiet --profile dist -p kaasd "${target_flags[@]}"
say "built in $(($(date +%s) - start)) s"

for arch in "${arches[@]}"; do
  triple="$arch-unknown-linux-musl"
  name="kaasd-$version-linux-$arch"
  cp "$target_dir/$triple/dist/kaasd" "dist/$name"

  # Fully static: no program interpreter, no dynamic section (a static-pie binary would have one).
  if LC_ALL=C readelf -d "dist/$name" | grep -q 'There is no dynamic section'; then :; else
    fail "dist/$name is dynamically linked: $(file -b "dist/$name")"
  fi
  bytes=$(stat -c %s "dist/$name")
  [ "$bytes" -lt "$MAX_BYTES" ] || fail "dist/$name is $bytes bytes, over the 40 MiB limit"
  say "$name: $bytes bytes, $(file -b "dist/$name" | cut -d, -f1-2)"

  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/$name/systemd" "$stage/$name/openrc"
  install -m 0755 "dist/$name" "$stage/$name/kaasd"
  install -m 0644 packaging/systemd/*.service "$stage/$name/systemd/"
  install -m 0755 packaging/openrc/kaasd-* "$stage/$name/openrc/"
  install -m 0644 packaging/README-controller.md packaging/README-worker.md "$stage/$name/"
  install -m 0644 LICENSE "$stage/$name/"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -cf - "$name" | gzip -n -9 >"dist/$name.tar.gz"
  rm -rf "$stage"
  trap - EXIT
done

say "writing dist/SHA256SUMS"
(cd dist && sha256sum kaasd-"$version"-linux-* | grep -v SHA256SUMS >SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS)
cat dist/SHA256SUMS
