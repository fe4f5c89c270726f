#!/usr/bin/env bash
# `make e2e`: brings the world up, runs the e2e suite against it, always tears it down.
# The disruptive tests (apiserver restart, sealed OpenBao) run last and one at a time.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
trap 'bash "$root/e2e/down.sh" >/dev/null 2>&1 || true' EXIT
bash "$root/e2e/up.sh"
source "$E2E_DIR/env"
cargo test --test e2e --test e2e_chart --test e2e_trust --test e2e_eso --test e2e_audit --test e2e_rollout --test e2e_cli --test e2e_image -- --ignored --nocapture --test-threads="${E2E_THREADS:-3}" "$@"
cargo test --test e2e_disruptive --test e2e_eso_crds --test e2e_prometheus -- --ignored --test-threads=1 "$@"
