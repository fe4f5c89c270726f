#!/usr/bin/env bash
# `make alerts`: the chart's alerts through promtool: `check rules` (syntax, PromQL) and
# `test rules` (tests/alerts/alerts.test.yaml: each alert fires when it should, and only then).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bin=$("$root/e2e/build.sh")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bash "$root/e2e/alert-rules.sh" "$dir/alerts.rules.yaml"
cp "$root/tests/alerts/alerts.test.yaml" "$dir/"
"$bin/promtool" check rules "$dir/alerts.rules.yaml"
"$bin/promtool" test rules "$dir/alerts.test.yaml"
