#!/usr/bin/env bash
# Builds kaasd's own OCI image from the static release binaries, without Docker or a registry:
#
#   packaging/build-static.sh && packaging/build-image.sh
#
# Output: dist/kaasd-<version>-image.tar, one archive that `ctr images import`, `kaasd images import` and
# `docker load` all take, holding the image docker.io/kaasd/kaasd:<version> for linux/amd64 and linux/arm64 (an
# OCI image index; `docker load` reads the amd64 image through the archive's manifest.json). The image is one layer:
# /usr/local/bin/kaasd and an /etc/passwd naming the user it runs as, 65532 (not root). Its entrypoint is kaasd,
# and its default command `controller --hosted` (a hosted control plane: see docs/hosted.md).
#
# The archive is reproducible: fixed file order, owners and times (the commit's time, or SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

for tool in tar gzip sha256sum stat; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || fail "cannot read the version from Cargo.toml"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
name="docker.io/kaasd/kaasd:$version"
archive="dist/kaasd-$version-image.tar"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
mkdir -p "$layout/blobs/sha256"

# Stores stdin as a blob; prints its digest (sha256:…) and size.
blob() {
  local file="$work/blob"
  cat >"$file"
  local sum
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  mv "$file" "$layout/blobs/sha256/$sum"
  echo "sha256:$sum $(stat -c %s "$layout/blobs/sha256/$sum")"
}

manifests=()
docker_config="" docker_layer=""
for arch in x86_64 aarch64; do
  binary="dist/kaasd-$version-linux-$arch"
  [ -f "$binary" ] || fail "$binary is missing: run packaging/build-static.sh first"
  case "$arch" in x86_64) platform=amd64 ;; aarch64) platform=arm64 ;; esac

  root="$work/root-$platform"
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
  install -m 0755 "$binary" "$root/usr/local/bin/kaasd"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nkaasd:x:65532:65532:kaasd:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nkaasd:x:65532:\n' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  chmod 1777 "$root/tmp"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$work/layer.tar" etc tmp usr
  diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  read -r layer_digest layer_size < <(gzip -n -9 <"$work/layer.tar" | blob)

  read -r config_digest config_size < <(printf '%s' "{\"architecture\":\"$platform\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"User\":\"65532:65532\",\"Entrypoint\":[\"/usr/local/bin/kaasd\"],\"Cmd\":[\"controller\",\"--hosted\"],\
\"Env\":[\"PATH=/usr/local/bin:/usr/bin:/bin\"],\"WorkingDir\":\"/\",\"ExposedPorts\":{\"6443/tcp\":{}},\
\"Labels\":{\"org.opencontainers.image.title\":\"kaasd\",\"org.opencontainers.image.version\":\"$version\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"packaging/build-image.sh\"}]}" | blob)

  read -r manifest_digest manifest_size < <(printf '%s' "{\"schemaVersion\":2,\
\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer_digest\",\"size\":$layer_size}]}" | blob)
  manifests+=("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest_digest\",\
\"size\":$manifest_size,\"platform\":{\"architecture\":\"$platform\",\"os\":\"linux\"}}")
  if [ "$platform" = amd64 ]; then
    docker_config="blobs/sha256/${config_digest#sha256:}"
    docker_layer="blobs/sha256/${layer_digest#sha256:}"
  fi
  say "linux/$platform: layer $layer_size bytes (gzip), manifest $manifest_digest"
done

joined=$(IFS=,; echo "${manifests[*]}")
read -r index_digest index_size < <(printf '%s' "{\"schemaVersion\":2,\
\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[$joined]}" | blob)

# The layout's entry point names the image for containerd and Docker; manifest.json is what `docker load` reads
# when it does not read OCI layouts.
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[\
{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"$index_digest\",\"size\":$index_size,\
\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"$version\"}}]}" \
  >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '%s' "[{\"Config\":\"$docker_config\",\"RepoTags\":[\"$name\"],\"Layers\":[\"$docker_layer\"]}]" \
  >"$layout/manifest.json"

mkdir -p dist
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$layout" -cf "$archive" oci-layout index.json manifest.json blobs
say "$archive: $name ($(stat -c %s "$archive") bytes), index $index_digest"
