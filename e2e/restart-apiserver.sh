#!/usr/bin/env bash
# Kills the e2e kube-apiserver (SIGKILL), waits DOWN seconds, starts it again with the same
# arguments and waits until it is ready. Used by the watch-recovery e2e test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
down=${1:-5}
pid=$(awk '$2=="kube-apiserver"{p=$1} END{print p}' "$E2E_DIR/pids")
kill -KILL "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
sleep "$down"
eval "start kube-apiserver $(cat "$E2E_DIR/kube-apiserver.cmd")"
port=$(cat "$E2E_DIR/apiserver.port")
pki=$E2E_DIR/pki
wait_for 120 kube-apiserver curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$port/readyz"
