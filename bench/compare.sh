#!/usr/bin/env bash
# Side-by-side benchmark of Reprise and etcd on this machine; writes BENCHMARKS.md.
# Installs etcd from Debian if it is missing, builds Reprise in release mode, then runs
# `reprise bench compare` (scratch clusters for both systems on 127.0.0.1, the matrix
# alternating the two in rounds per cell, memory after loading keys, failover trials, elections counted
# in a 10-minute idle run). Every process it starts is stopped by pid when it ends.
# Extra arguments go to `reprise bench compare`, e.g.
# `bench/compare.sh --duration-s 10 --memory-keys 1000000 --idle-s 600`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The comparison starts its own clusters: an exported REPRISE_ENDPOINTS (which `reprise`
# reads as --endpoints) must not point it at another one.
unset REPRISE_ENDPOINTS

if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd (Debian's etcd-server)"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "etcd is not installed, and installing it needs root: run this script as root, or install Debian's etcd-server first" >&2
            exit 1
        fi
        sudo_cmd="sudo"
    fi
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
    # The package may start a system etcd on the default ports; the benchmark uses its own.
    $sudo_cmd systemctl disable --now etcd 2>/dev/null || true
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install a Rust toolchain (rustup.rs, or Debian's cargo) and a C compiler (build-essential)" >&2
    exit 1
fi

echo "== building reprise (release)"
cargo build --release -j2 -p reprise-ops

echo "== running the comparison"
exec target/release/reprise bench compare --out BENCHMARKS.md "$@"
