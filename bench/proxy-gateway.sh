#!/usr/bin/env bash
# Configuration E of ../shared/bench/proxy/run-all.sh: starts the Portcullis gateway in the
# foreground from the harness's BENCH_* variables (bench/proxy-gateway.ts). From the project root:
#   GATEWAY_CMD="bash $PWD/bench/proxy-gateway.sh" GATEWAY_NAME=portcullis ../shared/bench/proxy/run-all.sh
# or `npm run bench:proxy`, which does exactly that.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PORTCULLIS_LOG_LEVEL=${PORTCULLIS_LOG_LEVEL:-warn}
# BENCH_NODE_FLAGS: extra node flags, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the gateway.
# shellcheck disable=SC2086
exec node ${BENCH_NODE_FLAGS:-} "$ROOT/dist/bench/proxy-gateway.js"
