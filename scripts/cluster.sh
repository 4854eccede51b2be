#!/usr/bin/env bash
# Starts a single-node cluster on defaults, in the foreground: the nameserver on
# 127.0.0.1:9876 and one broker on 127.0.0.1:10911 (store in ./store, one shard per
# core, async flush, topics auto-created). Ctrl-C (or SIGTERM) stops both cleanly.
# Extra arguments go to the broker, e.g. `scripts/cluster.sh --set flush=sync`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p nameserver -p node --bins

./target/release/nameserver --listen 127.0.0.1:9876 &
ns=$!
broker_pid=
stop() {
    [ -n "$broker_pid" ] && kill -TERM "$broker_pid" 2>/dev/null && wait "$broker_pid" || true
    kill -TERM "$ns" 2>/dev/null && wait "$ns" || true
}
trap stop EXIT INT TERM

./target/release/broker --namesrv 127.0.0.1:9876 --listen 0.0.0.0:10911 "$@" &
broker_pid=$!
wait "$broker_pid"
