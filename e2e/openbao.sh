#!/usr/bin/env bash
# Starts the e2e OpenBao on port $1 and configures it as in the seed walkthrough: a dev server
# (in memory, root token `root`) with a file audit device, KV v1 at secret/, KV v2 at kv/, the
# readonly policy, and Kubernetes auth at kubernetes/ validating JWTs against the e2e apiserver
# (role k8s-role). Used by up.sh, and by the fault test that kills OpenBao and starts it again
# (a dev server keeps nothing, so a restart configures it anew).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
port=$1
bao=$(bao_bin)
pki=$E2E_DIR/pki
API_PORT=$(cat "$E2E_DIR/apiserver.port")

echo ">> OpenBao on http://127.0.0.1:$port"
cat > "$E2E_DIR/openbao-audit.hcl" <<HCL
audit "file" "file" {
  options {
    file_path = "$E2E_DIR/logs/openbao-audit.log"
  }
}
HCL
if [ -f "$E2E_DIR/audit-events.addr" ]; then
  cat >> "$E2E_DIR/openbao-audit.hcl" <<HCL
audit "socket" "events" {
  options {
    address = "$(cat "$E2E_DIR/audit-events.addr")"
    socket_type = "udp"
  }
}
HCL
fi
start openbao "$bao" server -dev -dev-kv-v1 -dev-root-token-id=root \
  -dev-listen-address="127.0.0.1:$port" -config="$E2E_DIR/openbao-audit.hcl"
export BAO_ADDR=http://127.0.0.1:$port BAO_TOKEN=root
wait_for 30 openbao curl -sf "$BAO_ADDR/v1/sys/health"
b() { "$bao" "$@" >/dev/null; }
b secrets enable -path=kv -version=2 kv
# A new v2 mount refuses requests while it upgrades itself in the background.
wait_for 30 "kv v2 mount" curl -sf -H "X-Vault-Token: root" "$BAO_ADDR/v1/kv/config"
b policy write readonly - <<'HCL'
path "secret/*" { capabilities = ["read", "list"] }
path "kv/*" { capabilities = ["read", "list"] }
HCL
b auth enable kubernetes
b write auth/kubernetes/config kubernetes_host="https://127.0.0.1:$API_PORT" \
  kubernetes_ca_cert=@"$pki/ca.crt" token_reviewer_jwt=@"$E2E_DIR/reviewer.jwt"
b write auth/kubernetes/role/k8s-role bound_service_account_names=vault-external-secrets \
  bound_service_account_namespaces=vault-external-secrets policies=readonly ttl=1h
