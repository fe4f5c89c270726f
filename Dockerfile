# Multi-stage: a fully static musl binary, then an empty image with only that binary.
# The build stage runs the same command CI runs (`make static`), which checks that the binary
# is static and its size.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/fixtures ./tests/fixtures
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin vault-external-secrets

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="vault-external-secrets" \
      org.opencontainers.image.description="Syncs Vault / OpenBao secrets into Kubernetes Secrets (kubernetes-external-secrets compatible)" \
      org.opencontainers.image.source="https://github.com/vault-external-secrets/vault-external-secrets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/vault-external-secrets /vault-external-secrets
# Non-root, numeric (runAsNonRoot can verify it); no shell or libc needed at runtime.
USER 65532:65532
EXPOSE 3001
ENTRYPOINT ["/vault-external-secrets"]
