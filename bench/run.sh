#!/usr/bin/env bash
# bench/run.sh — reproduce the bench/README.md figures on one machine.
#
#   bench/run.sh table            # every figure of the results table (JSON + text in $MB_BENCH_DIR)
#   bench/run.sh scenario NAME    # one bench/scenarios/NAME.json against a fresh gateway + mock
#   bench/run.sh cache            # the prompt-cache figure: promptCache auto against off
#   bench/run.sh up               # just start mockllm + gateway (Ctrl-C stops them)
#   bench/run.sh tracing          # tracing off vs on (sampling 1.0) into a real collector, interleaved
#
# Layout (DESIGN.md): the gateway is pinned to core 0 (taskset -c 0, so Go
# sets GOMAXPROCS=1), the mock and the load generator share core 1. Binaries
# are built once into $MB_BENCH_DIR/bin. Env: MB_BENCH_DIR (default
# /tmp/moonborn-bench), HOLD_STREAMS (default 10000), DUR (default 10s),
# REPS (default 3), FIGS (default "500 2000 2000-noaccess 2000-sqlite floor-2000 stream-500 stream-paced 5000";
# also 2000-local and 2000-fleet, fleet mode against one node, which need
# Redis at MB_REDIS (127.0.0.1:6379) and PostgreSQL at MB_PG_DSN),
# NO_HOLD=1 (skip the open-streams figure), NO_BUILD=1 (reuse the binaries
# in $MB_BENCH_DIR/bin), MB_PORT_BASE (default 18080: the gateway listens on
# it, the mock on +1, a second mock on +2, the admin listener on +10; the
# configs of bench/scenarios are copied to $MB_BENCH_DIR/scenarios with
# their ports moved, so two runs on different bases do not clash).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export MB_BENCH_DIR=${MB_BENCH_DIR:-/tmp/moonborn-bench}
BIN=$MB_BENCH_DIR/bin
OUT=$MB_BENCH_DIR/results
DUR=${DUR:-10s}
HOLD_STREAMS=${HOLD_STREAMS:-10000}
PORT_BASE=${MB_PORT_BASE:-18080}
P_GW=$PORT_BASE P_MOCK=$((PORT_BASE + 1)) P_MOCK2=$((PORT_BASE + 2)) P_ADMIN=$((PORT_BASE + 10))
GW=http://127.0.0.1:$P_GW
MOCK=http://127.0.0.1:$P_MOCK
mkdir -p "$BIN" "$OUT"
# The scenario files and gateway configs, with 18080/18081/18082/18090
# moved to this run's ports.
SC=$MB_BENCH_DIR/scenarios
mkdir -p "$SC"
for f in "$ROOT"/bench/scenarios/*; do
  sed "s/127\.0\.0\.1:18080/127.0.0.1:$P_GW/g; s/127\.0\.0\.1:18081/127.0.0.1:$P_MOCK/g; s/127\.0\.0\.1:18082/127.0.0.1:$P_MOCK2/g; s/127\.0\.0\.1:18090/127.0.0.1:$P_ADMIN/g" "$f" >"$SC/$(basename "$f")"
done

GW_CORE=0 LOAD_CORE=1
if [ "$(nproc)" -lt 2 ]; then GW_CORE=0 LOAD_CORE=0; fi

build() {
  [ -n "${NO_BUILD:-}" ] && return 0 # NO_BUILD=1: use the binaries already in $BIN
  (cd "$ROOT" && go build -o "$BIN/gateway" ./cmd/gateway && go build -o "$BIN/mockllm" ./cmd/mockllm && go build -o "$BIN/bench" ./cmd/bench && go build -o "$BIN/floorproxy" ./bench/floorproxy)
}

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

# Streams: each open stream holds a bench socket, two gateway sockets and a
# mock socket, so raise the soft fd limit as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_mock() { # port [flags]
  local port=$1; shift
  taskset -c $LOAD_CORE "$BIN/mockllm" -listen 127.0.0.1:"$port" "$@" >"$MB_BENCH_DIR/mock-$port.log" 2>&1 &
  MOCK_PID=${MOCK_PID:-$!}; PIDS+=($!); wait_port "$port"
}
start_gateway() { # config
  taskset -c $GW_CORE "$BIN/gateway" -config "$1" >"$MB_BENCH_DIR/gateway.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID); wait_port $P_GW
}
bench() { taskset -c $LOAD_CORE "$BIN/bench" -url $GW -direct $MOCK/v1 -mock-control $MOCK -mock-pid "$MOCK_PID" "$@"; }
# The floor (figure floor-2000): bench/floorproxy, a do-nothing fasthttp
# proxy to the same mock, in the gateway's place (core 0, the gateway's port).
start_floor() {
  taskset -c $GW_CORE "$BIN/floorproxy" -listen 127.0.0.1:$P_GW -upstream $MOCK/v1/chat/completions >"$MB_BENCH_DIR/floor.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID); wait_port $P_GW
}
stop_gateway() { kill "$GW_PID" 2>/dev/null || echo "gateway $GW_PID had exited (see $MB_BENCH_DIR/gateway.log)" >&2; wait "$GW_PID" 2>/dev/null || true; }
mock_config() { curl -sf -X PUT -H 'Content-Type: application/json' -d "$1" $MOCK/_mock/config >/dev/null; }

header() {
  echo "date: $(date -u +%FT%TZ)  $(go version)  cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)  fd limit: $(ulimit -n)"
}

case "${1:-table}" in
up)
  build; start_mock $P_MOCK; start_gateway "$SC/gateway.yaml"
  echo "mockllm $MOCK (pid ${PIDS[0]}), gateway $GW (pid $GW_PID); Ctrl-C to stop"; wait ;;
scenario)
  name=${2:?scenario name}; sc="$SC/$name.json"
  cfg=$(sed -n 's/.*"gatewayConfig": *"\([^"]*\)".*/\1/p' "$sc"); cfg=${cfg:-gateway.yaml}
  build; start_mock $P_MOCK
  if [ "$name" = mixed-workspaces ]; then start_mock $P_MOCK2; fi
  start_gateway "$SC/$cfg"
  header
  bench -scenario "$sc" -gateway-pid "$GW_PID" -json -plot "$OUT/$name.html" >"$OUT/$name.json"
  echo "JSON: $OUT/$name.json  plot: $OUT/$name.html" ;;
table)
  # Each figure is taken REPS times (default 3), each time on a fresh
  # gateway, so one overloaded run cannot leave its heap or backlog to the
  # next; the README reports the median run and the spread.
  build; start_mock $P_MOCK
  header | tee "$OUT/env.txt"
  # The same config with the per-request access line off, to price it
  # (figure 2000-noaccess): gateway.yaml keeps the defaults (info, access on).
  sed 's/^  level: info$/  level: info\n  access: false/' "$SC/gateway.yaml" >"$MB_BENCH_DIR/gateway-noaccess.yaml"
  grep -q '^  access: false$' "$MB_BENCH_DIR/gateway-noaccess.yaml" || { echo "could not derive gateway-noaccess.yaml" >&2; exit 1; }
  # And with the default ledger store, SQLite (figure 2000-sqlite).
  sed "s#^  driver: jsonl\$#  driver: sqlite#; s#^  path: .*usage.jsonl\$#  path: $MB_BENCH_DIR/usage.db\n  spoolPath: $MB_BENCH_DIR/usage-spool.jsonl#" \
    "$SC/gateway.yaml" >"$MB_BENCH_DIR/gateway-sqlite.yaml"
  grep -q '^  driver: sqlite$' "$MB_BENCH_DIR/gateway-sqlite.yaml" || { echo "could not derive gateway-sqlite.yaml" >&2; exit 1; }
  # Fleet mode against one node (figures 2000-local, 2000-fleet): the
  # SQLite config with limits that do work on every request (generous, so
  # nothing is refused), on local buckets; then the same limits on the
  # machine's Redis (MB_REDIS, a key prefix of this run's own) with the
  # ledger in PostgreSQL (MB_PG_DSN, a schema of this run's own, dropped
  # at the end).
  limits="limits:\n  backend: local\n  redis:\n    addr: ${MB_REDIS:-127.0.0.1:6379}\n    keyPrefix: \"mbbench:$$:\"\n  default:\n    requestsPerMinute: 6000000\n    tokensPerMinute: 1000000000\n    monthlyTokens: 10000000000"
  { cat "$MB_BENCH_DIR/gateway-sqlite.yaml"; printf "$limits\n"; } >"$MB_BENCH_DIR/gateway-local.yaml"
  PG_DSN=${MB_PG_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
  PG_SCHEMA=mbbench_$$
  case " ${FIGS:-} " in *" 2000-fleet "*)
    psql -q "$PG_DSN" -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null
    trap 'cleanup; psql -q "$PG_DSN" -c "DROP SCHEMA $PG_SCHEMA CASCADE" >/dev/null 2>&1; redis-cli -u "redis://${MB_REDIS:-127.0.0.1:6379}" --scan --pattern "mbbench:$$:*" | xargs -r redis-cli -u "redis://${MB_REDIS:-127.0.0.1:6379}" del >/dev/null' EXIT ;;
  esac
  sep='\&'; case $PG_DSN in *\?*) ;; *) sep='?' ;; esac # \& for sed
  sed "s#^  backend: local\$#  backend: redis#; s#^  driver: sqlite\$#  driver: postgres\n  dsn: \"$PG_DSN${sep}search_path=$PG_SCHEMA\"#; /^  path: .*usage.db\$/d" \
    "$MB_BENCH_DIR/gateway-local.yaml" >"$MB_BENCH_DIR/gateway-fleet.yaml"
  grep -q '^  backend: redis$' "$MB_BENCH_DIR/gateway-fleet.yaml" && grep -q '^  driver: postgres$' "$MB_BENCH_DIR/gateway-fleet.yaml" ||
    { echo "could not derive gateway-fleet.yaml" >&2; exit 1; }
  # Bench self-check: direct only at 5,000 req/s; its own CPU is in benchCPU.
  bench -target direct -rate 5000 -d "$DUR" -max-tokens 20 -json >"$OUT/direct-5000.json"
  for rep in $(seq "${REPS:-3}"); do
    for fig in ${FIGS:-500 2000 2000-noaccess 2000-sqlite floor-2000 stream-500 stream-paced 5000}; do
      cfg="$SC/gateway.yaml"
      case $fig in
      stream-500) args=(-stream -rate 500) ;;
      # Chunks 1 ms apart, as real models send them (issue 17's figure).
      stream-paced) args=(-stream -rate 500); mock_config '{"outputTokens":20,"tokenDelay":"1ms"}' ;;
      2000-noaccess) args=(-rate 2000) cfg="$MB_BENCH_DIR/gateway-noaccess.yaml" ;;
      2000-sqlite) args=(-rate 2000) cfg="$MB_BENCH_DIR/gateway-sqlite.yaml"; rm -f "$MB_BENCH_DIR"/usage.db* ;;
      floor-2000) args=(-rate 2000) cfg=floor ;;
      2000-local) args=(-rate 2000) cfg="$MB_BENCH_DIR/gateway-local.yaml"; rm -f "$MB_BENCH_DIR"/usage.db* ;;
      2000-fleet) args=(-rate 2000) cfg="$MB_BENCH_DIR/gateway-fleet.yaml" ;;
      *) args=(-rate "$fig") ;;
      esac
      if [ "$cfg" = floor ]; then start_floor; else start_gateway "$cfg"; fi
      bench -compare "${args[@]}" -d "$DUR" -max-tokens 20 -gateway-pid "$GW_PID" -json -plot "$OUT/$fig-$rep.html" >"$OUT/$fig-$rep.json"
      stop_gateway
      [ "$fig" = stream-paced ] && mock_config '{"outputTokens":20}' || true
    done
  done
  [ -n "${NO_HOLD:-}" ] && { echo "results in $OUT"; exit 0; }
  # RSS per open stream, in a fresh gateway warmed briefly: the mock sends
  # one token, then waits a minute.
  start_gateway "$SC/gateway.yaml"
  bench -target gateway -rate 500 -d 2s -warmup 0 -quiet >/dev/null 2>&1
  mock_config '{"outputTokens":20,"tokenDelay":"60s"}'
  bench -hold "$HOLD_STREAMS" -hold-for 3s -timeout 60s -gateway-pid "$GW_PID" -json >"$OUT/hold.json" || true
  mock_config '{"outputTokens":20}'
  echo "results in $OUT" ;;
tracing)
  # Tracing's cost (README "Tracing cost"): the same config with tracing
  # off and on at sampling 1.0, exporting to a real OpenTelemetry
  # Collector (internal/otelcol, debug exporter, on the load core),
  # interleaved off/on REPS times at 2,000 req/s; compare the gateway CPU
  # per request of the pairs.
  build
  [ -n "${NO_BUILD:-}" ] || (cd "$ROOT/internal/otelcol" && go build -o "$BIN/otelcol" .)
  start_mock 18081
  cat >"$MB_BENCH_DIR/otelcol.yaml" <<'YAML'
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:18318
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
YAML
  taskset -c $LOAD_CORE "$BIN/otelcol" --config "file:$MB_BENCH_DIR/otelcol.yaml" >"$MB_BENCH_DIR/otelcol.log" 2>&1 &
  PIDS+=($!); wait_port 18318
  cp "$ROOT/bench/scenarios/gateway.yaml" "$MB_BENCH_DIR/gateway-tracing-off.yaml"
  { cat "$ROOT/bench/scenarios/gateway.yaml"; printf 'tracing:\n  enabled: true\n  endpoint: http://127.0.0.1:18318/v1/traces\n  samplingRatio: 1.0\n'; } >"$MB_BENCH_DIR/gateway-tracing-on.yaml"
  header | tee "$OUT/env-tracing.txt"
  for rep in $(seq "${REPS:-3}"); do
    for fig in ${TRACE_FIGS:-off on}; do
      start_gateway "$MB_BENCH_DIR/gateway-tracing-$fig.yaml"
      bench -compare -rate "${RATE:-2000}" -d "$DUR" -max-tokens 20 -gateway-pid "$GW_PID" -json >"$OUT/tracing-$fig-$rep.json"
      stop_gateway
    done
  done
  echo "results in $OUT (tracing-off-N.json, tracing-on-N.json)" ;;
cache)
  # The prompt-cache figure (bench/README.md, Prompt caching): psn_long, a
  # ~3,000-token persona prompt, on an Anthropic-priced model served by
  # mockllm's Anthropic protocol, whose prompt cache works like
  # Anthropic's; 1,000 requests with promptCache off, then auto, each on a
  # fresh gateway and ledger; the ledger's totals read back from the usage API.
  build; start_mock $P_MOCK
  mkdir -p "$MB_BENCH_DIR/personas"
  words=$(for i in $(seq 3000); do printf 'rule%d ' $((i % 97)); done)
  printf 'id: psn_long\nworkspace: wsp_demo\nname: Long\nsystemPrompt: "%s"\ndefaultModel: claude-bench\nmaxOutputTokens: 20\n' "$words" \
    >"$MB_BENCH_DIR/personas/long.yaml"
  header | tee "$OUT/prompt-cache-env.txt"
  for mode in off auto; do
    rm -f "$MB_BENCH_DIR/usage-cache-$mode.db"*
    MB_PROMPT_CACHE=$mode start_gateway "$SC/gateway-cache.yaml"
    bench -scenario "$SC/prompt-cache.json" -gateway-pid "$GW_PID" -json >"$OUT/prompt-cache-$mode.json"
    sleep 0.5 # the ledger's flush interval
    curl -sf -H "Authorization: Bearer bench-admin-token" \
      "http://127.0.0.1:$P_ADMIN/admin/workspaces/wsp_demo/usage" >"$OUT/prompt-cache-$mode-usage.json"
    stop_gateway
  done
  python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
t = {m: json.load(open(f"{out}/prompt-cache-{m}-usage.json"))["total"] for m in ("off", "auto")}
for m in ("off", "auto"):
    r = t[m]
    print(f"{m:4}: {r['requests']} requests, input {r['inputTokens']} (cache read {r['cacheReadTokens']}, "
          f"written {r['cacheWrite5mTokens'] + r['cacheWrite1hTokens']}), output {r['outputTokens']}, "
          f"cost {r['costUsdMicros']} µUSD = {r['costUsdMicros'] * 1000 / max(r['requests'], 1) / 1e6:.4f} USD per 1,000 requests, "
          f"saved {r['cacheSavingsUsdMicros']} µUSD")
off, auto = t["off"]["costUsdMicros"], t["auto"]["costUsdMicros"]
print(f"auto costs {auto / off:.3f}x off: {100 * (1 - auto / off):.1f}% less")
PY
  ;;
*) echo "usage: $0 table | scenario NAME | cache | up | tracing" >&2; exit 2 ;;
esac
