#!/usr/bin/env bash
# Runs kaasd's whole test suite on a Debian machine, installing and starting what the tests need first:
# protoc (only for the `etcd-client` crate the tests use as an independent etcd client; kaasd itself builds without
# it, which the static build checks), etcd's etcdctl (the etcd-compatibility tests), PostgreSQL and MariaDB (the
# shared-database tests), the Python kubernetes client and pytest (the Python client tests), iproute2 and nftables
# (the NAT lab of the join-and-tunnel tests). Needs root, for the installs and the network namespaces; the Rust
# toolchain itself must already be there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto) are a recommendation, not a dependency, of protobuf-compiler.
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v mysql >/dev/null || missing+=(mariadb-client)
command -v python3 >/dev/null || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The join-and-tunnel tests build a NAT in network namespaces (ip netns, veth, an nftables masquerade).
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
# The pod tests run real containers: kaasd worker starts Debian's containerd with runc and the CNI plugins, and the
# test image is made from Debian's static busybox.
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
# The Services test runs an outside resolver for cluster DNS to forward to: Debian's dnsmasq, without its service.
[ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
# The packaging tests: the static binaries are checked with readelf and file, the aarch64 one runs under qemu-user,
# and the generated units are checked with systemd-analyze. Installing the systemd package does not make it this
# machine's init (that is systemd-sysv), and policy-rc.d below keeps it from starting anything.
command -v readelf >/dev/null || missing+=(binutils)
command -v file >/dev/null || missing+=(file)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# OpenRC runs the installed OpenRC service in a private mount namespace; installing it does not make it the init.
[ -x /sbin/openrc-run ] || missing+=(openrc)
command -v setpriv >/dev/null || missing+=(util-linux)
# The Python conformance tests make certificates for their webhook server and CertificateSigningRequests.
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Keep packages from starting their services (containerd's system-wide daemon among them): kaasd worker runs
  # its own containerd with its own socket and root.
  policy_rc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_rc=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod +x "$policy_rc"
  fi
  installed=true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || installed=false
  if [ -n "$policy_rc" ]; then rm -f "$policy_rc"; fi
  $installed || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

# The Python client tests use the official kubernetes client and pytest. Debian's own Python refuses pip installs
# outside a virtual environment (PEP 668) unless told to; a Python from pyenv or a venv takes them as they are.
if ! python3 -c 'import kubernetes, pytest' 2>/dev/null; then
  say "installing the Python kubernetes client and pytest"
  python3 -m pip install -q -r tests/python/requirements.txt 2>/dev/null ||
    python3 -m pip install -q --break-system-packages -r tests/python/requirements.txt
fi

# The API server tests drive the real kubectl; Debian does not package a current one.
if ! [ -x /usr/bin/kubectl ]; then
  echo "error: /usr/bin/kubectl not found: the API server tests drive the real kubectl (1.32 or newer); install it from pkgs.k8s.io" >&2
  exit 1
fi

postgres_ready() { psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }
if ! postgres_ready; then
  say "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
  if ! postgres_ready; then
    # A fresh Debian cluster asks loopback clients for a password; the tests use trust auth on loopback.
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
fi
postgres_ready || { echo "error: PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is not reachable" >&2; exit 1; }

mariadb_ready() { mysql -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; }
if ! mariadb_ready; then
  say "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 1 30); do mysql -u root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
  if ! mariadb_ready; then
    # A fresh Debian MariaDB lets root in only through the unix socket; the tests connect over TCP.
    mysql -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
  fi
fi
mariadb_ready || { echo "error: MariaDB on 127.0.0.1:3306 (root, no password) is not reachable" >&2; exit 1; }

say "checking formatting"
cargo fmt --all -- --check

# One build of every crate and test, in the profile and with the features `cargo test` below uses, so nothing is
# compiled twice. The end-to-end tests run the kaasd binary it makes. (Left to themselves they build it with a
# nested `cargo build -p kaasd`, whose features differ and which would compile the controller once more.)
say "building the workspace and its tests"
cargo build --workspace --all-targets --release --quiet
export KAASD_BINARY="${CARGO_TARGET_DIR:-$PWD/target}/release/kaasd"

# The release artifacts (static musl binaries for x86_64 and aarch64, tarballs, SHA256SUMS, kaasd's OCI image),
# built as a release is, for the packaging tests to check and run (the aarch64 one under qemu-user, the image in
# a private containerd). The README's first command must work on a machine with nothing but the Rust toolchain, so
# nothing in kaasd's own build may run protoc: PROTOC pointing nowhere makes any build script that tries fail here,
# even where protoc is installed. This build compiles kaasd alone, with its own features, from scratch, as the
# README's `cargo run --release` does.
say "building the static release binaries (packaging/build-static.sh), with no protoc"
PROTOC=/nonexistent/protoc packaging/build-static.sh
say "building kaasd's image (packaging/build-image.sh)"
packaging/build-image.sh
export KAASD_DIST_DIR="$PWD/dist"

say "checking lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "running the tests"
# Release mode: the end-to-end tests run real servers under load, and the suite's time budget is tight.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary, the last often an empty crate's).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
