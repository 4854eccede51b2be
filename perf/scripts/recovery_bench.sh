#!/usr/bin/env bash
# Crash-recovery timing: fills a broker store to $1 GiB of commit log (allocated) with
# batched 4 KiB sends, kill -9s the broker and times the restart until it serves again.
#   perf/scripts/recovery_bench.sh 10     (needs $1 GiB + 2 GiB free; DATA=dir to relocate)
set -u
cd "$(dirname "$0")/../.."
cargo build --release -q -p nameserver -p node -p perf --bins
GIB=$1
BIN=${CARGO_TARGET_DIR:-./target}/release
D=${DATA:-./recovery-bench-data}
rm -rf $D; mkdir -p $D
$BIN/nameserver --listen 127.0.0.1:49876 > $D/ns.log 2>&1 &
NS=$!
start_broker() {
  $BIN/broker --namesrv 127.0.0.1:49876 --listen 127.0.0.1:50911 --store-dir $D/store > $D/b.out 2> $D/b.err &
  B=$!
}
start_broker
for _ in $(seq 100); do grep -q "ready on" $D/b.out 2>/dev/null && break; sleep 0.1; done
while :; do
  used=$(du -s --block-size=1G $D/store/shard-*/commitlog 2>/dev/null | awk '{s+=$1} END {print s+0}')
  [ "$used" -ge "$GIB" ] && break
  $BIN/rmq_bench produce --namesrv 127.0.0.1:49876 --topic Fill --size 4096 --batch 32 --connections 2 --inflight 8 --secs 5 > /dev/null 2>&1
done
# Actual bytes written (not preallocated): sum of commit-log max offsets via runtime info is simpler: report du
echo "store commit logs: $(du -sh $D/store | cut -f1) allocated"
sleep 1
kill -9 $B; wait $B 2>/dev/null
t0=$(date +%s.%N)
start_broker
for _ in $(seq 6000); do grep -q "ready on" $D/b.out 2>/dev/null && break; sleep 0.01; done
t1=$(date +%s.%N)
echo "restart to ready after kill -9 with ${GIB} GiB: $(echo "$t1 - $t0" | bc) s"
grep -o "replayed_records: [0-9]*\|log_end[^ ]*=[0-9]*" $D/b.err | tr -d "\033" | head -8
kill -TERM $B; wait $B 2>/dev/null
kill -TERM $NS; wait $NS 2>/dev/null
rm -rf $D
