#!/usr/bin/env bash
# Writes the chart's PrometheusRule as a Prometheus rule file (its `spec`), for promtool and the
# e2e Prometheus: e2e/alert-rules.sh OUT [helm --set ...]. One source: the chart's template.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=$1
shift
bin=$("$root/e2e/build.sh")
"$bin/helm" template vault-external-secrets "$root/helm/vault-external-secrets" \
  --kube-version 1.35.4 --set prometheusRule.enabled=true "$@" \
  --show-only templates/prometheusrule.yaml \
  | sed -n '/^spec:$/,$p' | tail -n +2 | sed 's/^  //' > "$out"
grep -q '^groups:$' "$out" || { echo "alert-rules: no groups rendered into $out" >&2; exit 1; }
