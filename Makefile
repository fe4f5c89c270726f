# vault-external-secrets — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.PHONY: build lint unit e2e test demo up down crds static dockerlint bench bench-check alerts image

build:
	cargo build --bins

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Unit tests and the integration tests against a real OpenBao (tests/vault.rs, tests/no_leaks.rs).
unit:
	cargo test

# The e2e suite on a real kube-apiserver + etcd + kube-controller-manager + OpenBao.
e2e: build
	bash e2e/run.sh

# The chart's alerts: promtool check rules + promtool test rules (tests/alerts/).
alerts:
	bash e2e/alert-tests.sh

# The Dockerfile's image without a Docker engine (crane): target/image/vault-external-secrets.tar.
image:
	bash e2e/image.sh

# The Dockerfile's build stage command, and a static/size check of its result (no Docker engine here).
static:
	bash e2e/check-static.sh

dockerlint:
	hadolint Dockerfile

# The scale benchmark (figures, not a test): make bench N=10000
N ?= 1000
bench:
	N=$(N) bash e2e/bench.sh full

# Its small run in CI: asserts the deterministic counts (logins, reads per cycle, zero writes).
bench-check:
	bash e2e/bench.sh check

test: lint unit alerts image e2e bench-check dockerlint static

demo:
	bash e2e/demo.sh

up:
	bash e2e/up.sh

down:
	bash e2e/down.sh

crds:
	cargo run --bin crdgen
