#!/usr/bin/env bash
# Builds the FROM-scratch image `${REPRISE_IMAGE:-reprise:local}`: a statically linked
# release binary (crt-static, explicit target so build scripts stay dynamic), stripped,
# plus /etc/nsswitch.conf. Needs only cargo, strip and a Docker engine; pulls nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
image="${REPRISE_IMAGE:-reprise:local}"
target=x86_64-unknown-linux-gnu

echo "== static release build ($target, crt-static)"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$target" -j2 --bin reprise

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
strip -o "$context/reprise" "target/$target/release/reprise"
cp deploy/docker/Dockerfile deploy/docker/nsswitch.conf "$context/"
echo "== docker build $image"
docker build -q -t "$image" "$context" >/dev/null
docker run --rm "$image" --version
