#!/usr/bin/env bash
# `make demo`: the seed walkthrough on a local control plane. Brings up kube-apiserver, etcd,
# kube-controller-manager and OpenBao (building what is missing), starts the controller with
# its own ServiceAccount's credentials, applies the seed's ExternalSecret verbatim, waits for
# the Secret and prints it decoded next to `kubectl get externalsecrets.kubernetes-client.io`. Runs until Ctrl-C, then cleans up;
# DEMO_ONCE=1 exits after printing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
trap 'echo; echo ">> cleaning up"; bash "$root/e2e/down.sh"' EXIT

echo ">> building the controller"
cargo build --bin vault-external-secrets
bash "$root/e2e/up.sh"
source "$E2E_DIR/env"

echo ">> writing the seed's secret to OpenBao: secret/Rabbitmq (KV v1)"
"$BAO_BIN" kv put secret/Rabbitmq username=rabbitmq password=demo-only-password >/dev/null

port=$(free_port)
echo ">> starting the controller (metrics on http://127.0.0.1:$port/metrics, log: $E2E_DIR/logs/controller.log)"
KUBECONFIG=$CONTROLLER_KUBECONFIG METRICS_PORT=$port POLLER_INTERVAL_MILLISECONDS=10000 LOG_LEVEL=info \
  start controller "${CARGO_TARGET_DIR:-$root/target}/debug/vault-external-secrets"

echo ">> kubectl apply -f tests/fixtures/seed-externalsecret.yaml"
sed -n '/^apiVersion/,$p' tests/fixtures/seed-externalsecret.yaml
kubectl apply -f tests/fixtures/seed-externalsecret.yaml
wait_for 60 "Secret rabbitmq" kubectl get secret rabbitmq
wait_for 30 "status SUCCESS" sh -c 'kubectl get externalsecrets.kubernetes-client.io rabbitmq -o jsonpath="{.status.status}" | grep -q SUCCESS'

echo
echo "\$ kubectl get externalsecrets.kubernetes-client.io"
kubectl get externalsecrets.kubernetes-client.io
echo
echo "\$ kubectl get secrets rabbitmq"
kubectl get secrets rabbitmq
echo
echo "Secret rabbitmq, decoded:"
kubectl get secret rabbitmq -o go-template='{{range $k, $v := .data}}  {{$k}}: {{$v | base64decode}}{{"\n"}}{{end}}'
echo
if [ "${DEMO_ONCE:-}" = 1 ]; then
  exit 0
fi
echo ">> running. In another shell: source $E2E_DIR/env; then kubectl / bao as you like"
echo ">> (e.g. bao kv put secret/Rabbitmq username=changed, and watch the Secret follow). Ctrl-C to stop."
while kill -0 "$(awk '$2=="controller"{print $1}' "$E2E_DIR/pids")" 2>/dev/null; do sleep 2; done
echo "controller exited; see $E2E_DIR/logs/controller.log"
