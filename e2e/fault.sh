#!/usr/bin/env bash
# Faults for the disruptive e2e tests, on the components e2e/up.sh started (by their pid):
#   fault.sh pause NAME | resume NAME   SIGSTOP / SIGCONT (e.g. etcd: the apiserver hangs)
#   fault.sh kill NAME                  SIGKILL, and wait until it is gone
#   fault.sh restart-openbao            start OpenBao again on its port, configured anew
set -euo pipefail
source "$(dirname "$0")/lib.sh"
pid_of() { awk -v n="$1" '$2==n{p=$1} END{print p}' "$E2E_DIR/pids"; }
case "$1" in
  pause) kill -STOP "$(pid_of "$2")" ;;
  resume) kill -CONT "$(pid_of "$2")" ;;
  kill)
    pid=$(pid_of "$2")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    ;;
  restart-openbao)
    port=$(sed -n 's|^export BAO_ADDR=http://127.0.0.1:||p' "$E2E_DIR/env")
    bash "$root/e2e/openbao.sh" "$port" >/dev/null
    ;;
  *) echo "usage: fault.sh pause|resume|kill NAME | restart-openbao" >&2; exit 2 ;;
esac
