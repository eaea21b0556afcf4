#!/usr/bin/env bash
# Memory soak of configuration E (issue 5: "gateway memory under load under 150 MB, flat over a
# 10-minute run"): the shared harness drives one gateway process for SOAK_ROUNDS (5) back-to-back
# runs of SOAK_DURATION (115s; the harness stops any wrk run at 120 s) at 64 connections, about
# 10 minutes of load, while the gateway records its RSS and heap every 10 s; then the first and
# last minute are compared. From the project root, after `npm run build`:
#   bash bench/soak.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=$(mktemp /tmp/portcullis-soak-XXXXXX.jsonl)
# Memory is the measure here, not speed: runs are kept even on a busy host (no quiet wait, no re-runs).
DURATION=${SOAK_DURATION:-115s} SYSTEMS=E ROUNDS=${SOAK_ROUNDS:-5} PAUSE=0 QUIET_WAIT=0 OTHER_MAX=400 RETRIES=0 GATEWAY_NAME=portcullis BENCH_RSS_LOG="$LOG" \
  GATEWAY_CMD="bash $ROOT/bench/proxy-gateway.sh" bash "$ROOT/../shared/bench/proxy/run-all.sh"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const load = rows.filter((r) => r.s >= 10); // after start-up
const avg = (xs, k) => Math.round(xs.reduce((a, r) => a + r[k], 0) / Math.max(xs.length, 1));
const first = load.slice(0, 6), last = load.slice(-6);
console.log(`soak: ${rows.length} samples over ${rows.at(-1)?.s ?? 0} s`);
console.log(`RSS MB: first minute ${avg(first, "rssMb")}, last minute ${avg(last, "rssMb")}, max ${Math.max(...load.map((r) => r.rssMb))}`);
console.log(`heap MB: first minute ${avg(first, "heapMb")}, last minute ${avg(last, "heapMb")}, max ${Math.max(...load.map((r) => r.heapMb))}`);
' "$LOG"
echo "samples: $LOG"
