#!/usr/bin/env bash
# Stops exactly the processes e2e/up.sh (and the demo) started, by the pids they recorded.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
pids="$E2E_DIR/pids"
[ -f "$pids" ] || exit 0
# Newest first: the controller before OpenBao, the apiserver before etcd.
tac "$pids" | while read -r pid name; do
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    echo "stopped $name ($pid)"
  fi
done
rm -f "$pids"
