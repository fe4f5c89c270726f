#!/usr/bin/env bash
# `make image`: the Dockerfile's image without a Docker engine. Reads the Dockerfile (one source):
# runs its build stage's `cargo build`, puts the binary where its COPY does, and sets its USER,
# EXPOSE, ENTRYPOINT and LABELs with crane (built from the Go module proxy by e2e/build.sh)
# against a registry crane serves on loopback for the duration. Writes a docker-loadable
# tarball, target/image/vault-external-secrets.tar (`docker load -i` / `crane push`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"
dockerfile=$root/Dockerfile
out=${IMAGE_OUT:-$root/target/image/vault-external-secrets.tar}
bin=$("$root/e2e/build.sh")

field() { sed -n "s/^$1 //p" "$dockerfile" | tail -1; }
build_cmd=$(dockerfile_build_cmd)
read -r copy_src copy_dst < <(sed -n 's#^COPY --from=build /src/\(target/[^ ]*\) \(/[^ ]*\)$#\1 \2#p' "$dockerfile")
user=$(field USER)
expose=$(field EXPOSE)
case "$expose" in */*) ;; *) expose="$expose/tcp" ;; esac  # as Docker records it
entrypoint=$(field ENTRYPOINT | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)))')
version=$(sed -n 's/^ARG VERSION=//p' "$dockerfile")
[ -n "$build_cmd" ] && [ -n "$copy_dst" ] && [ -n "$user" ] && [ -n "$entrypoint" ] \
  || { echo "image: could not read the build command, COPY, USER or ENTRYPOINT from $dockerfile" >&2; exit 1; }
labels=()
while IFS= read -r l; do labels+=(-l "$l"); done < <(python3 - "$dockerfile" "$version" <<'PY'
import re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
for line in text.splitlines():
    if line.startswith("LABEL "):
        for kv in shlex.split(line[len("LABEL "):]):
            print(kv.replace("${VERSION}", sys.argv[2]))
PY
)

echo ">> $build_cmd"
eval "$build_cmd"
binary="${CARGO_TARGET_DIR:-$root/target}/${copy_src#target/}"

work=$(mktemp -d)
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The one layer: the binary alone, root-owned, mode 0755, timestamps fixed (reproducible).
mkdir -p "$work/rootfs$(dirname "$copy_dst")"
install -m 0755 "$binary" "$work/rootfs$copy_dst"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -C "$work/rootfs" \
  -cf "$work/layer.tar" "${copy_dst#/}"

port=$(free_port)
"$bin/crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
wait_for 30 "crane registry" curl -sf "http://127.0.0.1:$port/v2/"
ref=127.0.0.1:$port/vault-external-secrets:$version
"$bin/crane" append --platform linux/amd64 -f "$work/layer.tar" -t "$ref" >/dev/null
mkdir -p "$(dirname "$out")"
"$bin/crane" mutate "$ref" --set-platform linux/amd64 --user "$user" \
  --entrypoint "$entrypoint" --exposed-ports "$expose" "${labels[@]}" \
  -t "vault-external-secrets:$version" -o "$out" >/dev/null
echo ">> image: $out ($(stat -c %s "$out") bytes), vault-external-secrets:$version, user $user, entrypoint $entrypoint"
