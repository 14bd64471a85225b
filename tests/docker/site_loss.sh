#!/usr/bin/env bash
# Site loss in Docker: the FROM-scratch image, three sites as three Docker networks plus a
# WAN (deploy/compose). Writes go on while the leader's whole site is killed
# (`docker kill`); the two other sites must elect a leader and acknowledge writes; the
# site comes back (`docker start`) and catches up; every acknowledged write is read back
# linearizably and every node reaches the same applied index. Everything it starts, it
# removes (compose down, even on failure). Run by .ci/run when a Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/../.."

export REPRISE_IMAGE="${REPRISE_IMAGE:-reprise:ci}"
project="reprise-ci-$$"
compose=(docker-compose -p "$project" -f deploy/compose/docker-compose.yml)
wan="${project}_wan"

deploy/docker/build.sh

cleanup() {
    echo "== cleanup: compose down"
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT

cli() {
    docker run --rm --network "$wan" "$REPRISE_IMAGE" \
        --endpoints n1:7400,n2:7400,n3:7400 "$@"
}

# Retries `$@` until it succeeds or `$1` seconds pass.
retry_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "FAILED: '$*' did not succeed in time" >&2
            "$@" || true
            return 1
        fi
        sleep 0.2
    done
}

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "== compose up ($project)"
"${compose[@]}" up -d
init() {
    docker run --rm --network "$wan" \
        -v "$PWD/deploy/compose/node-1.toml:/etc/reprise/node.toml:ro" \
        "$REPRISE_IMAGE" cluster init --config /etc/reprise/node.toml
}
retry_for 60 init
retry_for 30 cli kv put warmup 1

writes=0
# Each put is retried until acknowledged: an outcome may be unknown across a leader
# change, and putting the same value again is harmless to what is checked.
write_range() {
    for i in $(seq "$1" "$2"); do
        retry_for 30 cli --timeout-ms 15000 kv put "key-$i" "value-$i"
        writes=$((writes + 1))
    done
}
write_range 1 20

status="$(cli -o json cluster status)"
leader="$(echo "$status" | json_field 'd["leader"]')"
site="$(echo "$status" | json_field '[m["site"] for m in d["members"] if m["id"]==d["leader"]][0]')"
container="${project}_n${leader}_1"
echo "== leader is node $leader in $site: docker kill $container (whole site)"
start_ns=$(date +%s%N)
docker kill "$container" >/dev/null
retry_for 30 cli --timeout-ms 2000 kv put after-fault 1
rto_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "   first acknowledged write ${rto_ms} ms after the kill (RTO, including container start of the client)"
write_range 21 40

echo "== $site comes back: docker start $container"
docker start "$container" >/dev/null
converged() {
    cli -o json cluster status | python3 -c '
import json, sys
d = json.load(sys.stdin)
idx = {m["applied_index"] for m in d["members"]}
sys.exit(0 if all(m["reachable"] for m in d["members"]) and len(idx) == 1 else 1)'
}
retry_for 60 converged

echo "== reading back every acknowledged write"
for i in $(seq 1 40); do
    got="$(cli kv get "key-$i")"
    if [[ "$got" != "value-$i" ]]; then
        echo "FAILED: key-$i holds '$got', expected 'value-$i' (acknowledged write lost)" >&2
        exit 1
    fi
done
echo "docker site-loss scenario PASSED: $writes acknowledged writes, all present; RTO ${rto_ms} ms; 3 nodes converged"
