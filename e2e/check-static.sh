#!/usr/bin/env bash
# `make static`: the Dockerfile's build command, then checks that the binary is fully static
# (so it runs in a FROM scratch image) and small enough for an image under 25 MB.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
build_cmd=$(dockerfile_build_cmd)
[ -n "$build_cmd" ] || { echo "no RUN cargo build in the Dockerfile" >&2; exit 1; }
echo ">> $build_cmd"
eval "$build_cmd"
bin="${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-musl/release/vault-external-secrets"
desc=$(file -b "$bin")
echo "$desc"
case "$desc" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "not a static binary" >&2; exit 1 ;;
esac
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "ldd lists shared libraries" >&2; ldd "$bin" >&2; exit 1
fi
size=$(stat -c %s "$bin")
echo "static binary: $size bytes ($(( size / 1024 / 1024 )) MiB); the image is this file alone (FROM scratch)"
if [ "$size" -ge $(( 25 * 1000 * 1000 )) ]; then
  echo "binary too large for a 25 MB image" >&2; exit 1
fi
