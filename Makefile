# vault-external-secrets — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.PHONY: build lint unit e2e test demo up down crds

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

test: lint unit e2e

demo:
	bash e2e/demo.sh

up:
	bash e2e/up.sh

down:
	bash e2e/down.sh

crds:
	cargo run --bin crdgen
