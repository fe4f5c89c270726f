#!/usr/bin/env bash
# `make bench N=10000`: the scale benchmark on a fresh e2e world with the release build; prints
# its figures and appends them to docs/benchmarks.md.
# `make bench-check`: the small CI run (N=200, debug build) that asserts the counts only.
# Both run the KES API and then the ESO API (APIS="kes eso"), one controller each; the full run
# then ESO with templates (TEMPLATE=0 skips) and audit-stream events (AUDIT=0 skips). PATHS sets
# the distinct Vault paths (2,000 by default; from 20,000 objects, one per 5 objects: 10,000 at
# 50,000, as issue 15 specifies that run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
mode=${1:-full}
n=${N:-1000}
trap 'bash "$root/e2e/down.sh" >/dev/null 2>&1 || true' EXIT
target="${CARGO_TARGET_DIR:-$root/target}"
if [ "$mode" = check ]; then
  cargo build --bin vault-external-secrets --example bench
  AUDIT_EVENTS=0 bash "$root/e2e/up.sh"
  source "$E2E_DIR/env"
  for api in kes eso; do
    "$target/debug/examples/bench" --controller "$target/debug/vault-external-secrets" --api "$api" \
      --n "${N:-200}" --paths 50 --poll-ms 10000 --cycles 3 --changes 20 --check
  done
  # Templated: the same counts, and no template rendered in a steady cycle.
  "$target/debug/examples/bench" --controller "$target/debug/vault-external-secrets" --api eso \
    --template --n "${N:-200}" --paths 50 --poll-ms 10000 --cycles 3 --changes 20 --check
else
  # Measure the binary the image ships (static musl, mimalloc) when this machine can build it.
  if rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-musl$' &&
    command -v musl-gcc >/dev/null; then
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin vault-external-secrets
    controller="$target/x86_64-unknown-linux-musl/release/vault-external-secrets"
  else
    echo "bench: no musl target or musl-gcc: measuring the glibc build, not the image's binary" >&2
    cargo build --release --bin vault-external-secrets
    controller="$target/release/vault-external-secrets"
  fi
  cargo build --release --example bench
  # 50,000 objects and their baselines write a few GiB of revisions between compactions: the
  # bench's world only gets a larger etcd quota (the default is 2 GiB).
  paths=2000
  if [ "$n" -ge 20000 ]; then
    export ETCD_QUOTA_BYTES=$((8 * 1024 * 1024 * 1024))
    paths=$((n / 5))
  fi
  # The bench's worlds run without the watch cache's consistency checks (up.sh). No
  # audit-stream listener in these runs, so no socket audit device in their world either.
  export WATCH_CACHE_CHECKS=false
  AUDIT_EVENTS=0 bash "$root/e2e/up.sh"
  source "$E2E_DIR/env"
  mkdir -p docs
  for api in ${APIS-kes eso}; do
    "$target/release/examples/bench" --controller "$controller" --api "$api" \
      --n "$n" --paths "${PATHS:-$paths}" --poll-ms "${POLL_MS:-30000}" --cycles 3 --changes 100 \
      --record docs/benchmarks.md
  done
  # 1,000+ templated ESO objects, to compare their CPU per steady cycle with the run above
  # (TEMPLATE=0 skips it).
  if [ "${TEMPLATE:-1}" = 1 ]; then
    "$target/release/examples/bench" --controller "$controller" --api eso --template \
      --n "$n" --poll-ms "${POLL_MS:-30000}" --cycles 3 --changes 100 --record docs/benchmarks.md
  fi
  # Change events from OpenBao's audit stream, polling every 5 minutes (AUDIT=0 skips it), in a
  # world of its own whose OpenBao has the socket audit device the controller listens to.
  if [ "${AUDIT:-1}" = 1 ]; then
    bash "$root/e2e/up.sh"
    source "$E2E_DIR/env"
    "$target/release/examples/bench" --controller "$controller" --api kes --audit \
      --n "$n" --poll-ms 300000 --cycles 1 --changes 100 --record docs/benchmarks.md
  fi
fi
