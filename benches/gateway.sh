#!/usr/bin/env bash
# Measures the federation gateway (`mockops daemon --gateway`) with wrk, every ratio from this
# one run on this machine:
#   (a) mock serving: the gateway's `mock_v3` vs `prism mock` (Prism 5) on the same spec
#       (examples/repo-layout/specs/payments/openapi.yaml) and the same request
#       (GET /charges/ch_1): requests/s, p50/p99, the throughput ratio (target: >= 20x Prism's
#       throughput and a lower p99);
#   (b) `real` proxying: wrk -> gateway -> upstream vs wrk -> the same upstream directly: the
#       latency added at p50/p99 and the share of direct throughput (targets: < 1 ms added at p50,
#       >= 80% of direct throughput), once under the same load as (a) and once with a single
#       connection (the latency the hop adds when nothing queues), and once more against an
#       upstream that takes 5 ms per request (as a service doing real work does: the same mock
#       behind a fixed 5 ms `chaos_driven` latency), where the hop's cost is not hidden by,
#       nor inflated by, three processes sharing the machine's cores for CPU-only work;
#   (c) resident memory (VmRSS from /proc) of the daemon, whose repository is the example config
#       (examples/repo-layout, federation e-commerce-platform) plus the bench federation: idle
#       once routes serve, and the highest sample taken every 0.2 s while (a) and (b) run;
#   (d) the drift path: the same `real` run against a second daemon with `--drift-sample 0`
#       (no capture, no validation), so the cost of observing every proxied exchange shows.
#       By default every proxied exchange is observed and validated, so (b) includes it.
# The upstream of (b) is a second mockops daemon whose gateway serves the same spec's mock
# directly: a fast, multi-threaded loopback server, so the proxy is not measured against a
# server slower than itself (which would hide the hop's cost).
# Every wrk run uses the same threads, connections and duration, after a warm-up of its own.
# It prints a table and pass/fail per target and exits 0 either way (a measurement, not a test).
#
#   benches/gateway.sh                      # build release, install Prism 5 into .bench/, run
#   PRISM=/path/to/prism benches/gateway.sh  # use that Prism instead of installing one
#   MOCKOPS_BIN=/path/to/mockops benches/gateway.sh  # measure that binary (no build)
#   THREADS=2 CONNECTIONS=50 DURATION=10 WARMUP=3 (defaults)
#
# Needs wrk (Debian/Ubuntu: `apt-get install wrk`), node/npm (for Prism) and python3 (free ports);
# with nginx installed (`apt-get install nginx-light`), (b) is also measured through nginx, the
# peer proxy, so the cost of a hop on this machine is known.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/.bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
SPEC=$ROOT/examples/repo-layout/specs/payments/openapi.yaml
OP=/charges/ch_1

command -v wrk >/dev/null || { echo "wrk is required (Debian/Ubuntu: apt-get install wrk)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is required (to pick free ports)" >&2; exit 2; }
command -v git >/dev/null && command -v curl >/dev/null || { echo "git and curl are required" >&2; exit 2; }

if [ -n "${MOCKOPS_BIN:-}" ]; then
    BIN=$MOCKOPS_BIN
else
    echo "building mockops (release)..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin mockops)
    BIN=$TARGET_DIR/release/mockops
fi

PRISM=${PRISM:-$BENCH_DIR/node_modules/.bin/prism}
if [ ! -x "$PRISM" ]; then
    command -v npm >/dev/null || { echo "npm is required to install Prism (or set PRISM=)" >&2; exit 2; }
    echo "installing @stoplight/prism-cli@5 into $BENCH_DIR..." >&2
    mkdir -p "$BENCH_DIR"
    # `npm init` would take the directory's name, and `.bench` is not a valid package name.
    [ -f "$BENCH_DIR/package.json" ] || echo '{"name": "mockops-bench", "private": true}' >"$BENCH_DIR/package.json"
    (cd "$BENCH_DIR" && npm install --silent @stoplight/prism-cli@5 >/dev/null)
fi
PRISM_VERSION=$("$PRISM" --version 2>/dev/null || echo "?")

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# commit_repo DIR: a Git repository of DIR's files, committed on main.
commit_repo() {
    git -C "$1" init -q -b main
    git -C "$1" add -A
    git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -q -m "bench config"
}

# wait_200 URL: until URL answers 200 (30 s at most).
wait_200() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    echo "$1 never answered 200" >&2
    return 1
}

# The upstream for (b): a second daemon whose gateway serves the payments mock at /up/pay.
UP_REPO=$TMP/up-repo
mkdir -p "$UP_REPO/services" "$UP_REPO/federations" "$UP_REPO/specs"
cp "$SPEC" "$UP_REPO/specs/payments.yaml"
cat >"$UP_REPO/services/pay.yaml" <<EOF
name: pay
workspace_id: ws-pay
spec: specs/payments.yaml
base_path: /pay
reality_level: mock_v3
EOF
cat >"$UP_REPO/services/pay-5ms.yaml" <<EOF
name: pay-5ms
workspace_id: ws-pay-5ms
spec: specs/payments.yaml
base_path: /pay-5ms
reality_level: chaos_driven
chaos: {latency_ms: 5, error_rate: 0, drop_rate: 0}
EOF
printf 'name: up\nservices:\n  - name: pay\n  - name: pay-5ms\n' >"$UP_REPO/federations/up.yaml"
commit_repo "$UP_REPO"
UP_API=$(free_port)
UP_GW=$(free_port)
"$BIN" daemon --repo "$UP_REPO" --state-dir "$TMP/up-state" --listen "127.0.0.1:$UP_API" \
    --gateway "127.0.0.1:$UP_GW" >"$TMP/up.log" 2>&1 &
PIDS+=($!)
UP_URL=http://127.0.0.1:$UP_GW/up/pay
UP_5MS_URL=http://127.0.0.1:$UP_GW/up/pay-5ms

# The daemon under test: the example config plus the `bench` federation (`mock` mocked over the
# payments spec, `real` proxying to the upstream above).
REPO=$TMP/repo
cp -r "$ROOT/examples/repo-layout" "$REPO"
cp "$SPEC" "$REPO/specs/bench-payments.yaml"
cat >"$REPO/services/bench-mock.yaml" <<EOF
name: bench-mock
workspace_id: ws-bench-mock
spec: specs/bench-payments.yaml
base_path: /mock
reality_level: mock_v3
EOF
cat >"$REPO/services/bench-real.yaml" <<EOF
name: bench-real
workspace_id: ws-bench-real
spec: specs/bench-payments.yaml
upstream: $UP_URL
base_path: /real
reality_level: real
EOF
cat >"$REPO/services/bench-real-5ms.yaml" <<EOF
name: bench-real-5ms
workspace_id: ws-bench-real-5ms
spec: specs/bench-payments.yaml
upstream: $UP_5MS_URL
base_path: /real-5ms
reality_level: real
EOF
printf 'name: bench\nservices:\n  - name: bench-mock\n  - name: bench-real\n  - name: bench-real-5ms\n' >"$REPO/federations/bench.yaml"
commit_repo "$REPO"
API=$(free_port)
GW=$(free_port)
"$BIN" daemon --repo "$REPO" --state-dir "$TMP/state" --listen "127.0.0.1:$API" \
    --gateway "127.0.0.1:$GW" --allow-outbound 127.0.0.1 >"$TMP/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
# The same configuration with drift observation off (`--drift-sample 0`), for (d).
API_NODRIFT=$(free_port)
GW_NODRIFT=$(free_port)
"$BIN" daemon --repo "$REPO" --state-dir "$TMP/state-nodrift" --listen "127.0.0.1:$API_NODRIFT" \
    --gateway "127.0.0.1:$GW_NODRIFT" --allow-outbound 127.0.0.1 --drift-sample 0 >"$TMP/nodrift.log" 2>&1 &
PIDS+=($!)

# The peer for (b): nginx as a reverse proxy to the same upstream (keep-alive pool, no access
# log), when it is installed: the cost of a proxy hop on this machine, measured by a proxy
# users already trust, next to the gateway's.
NGINX_URL=
NGINX_5MS_URL=
if command -v nginx >/dev/null; then
    NGX_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream up { server 127.0.0.1:$UP_GW; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
    nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" >/dev/null 2>&1 &
    PIDS+=($!)
    NGINX_URL=http://127.0.0.1:$NGX_PORT/up/pay$OP
    NGINX_5MS_URL=http://127.0.0.1:$NGX_PORT/up/pay-5ms$OP
fi

PRISM_PORT=$(free_port)
"$PRISM" mock -h 127.0.0.1 -p "$PRISM_PORT" "$SPEC" >/dev/null 2>"$TMP/prism.log" &
PIDS+=($!)

GW_MOCK=http://127.0.0.1:$GW/bench/mock$OP
GW_REAL=http://127.0.0.1:$GW/bench/real$OP
GW_REAL_5MS=http://127.0.0.1:$GW/bench/real-5ms$OP
DIRECT_5MS=$UP_5MS_URL$OP
GW_REAL_NODRIFT=http://127.0.0.1:$GW_NODRIFT/bench/real$OP
GW_EXAMPLE=http://127.0.0.1:$GW/e-commerce-platform/payments$OP
DIRECT=$UP_URL$OP
PRISM_URL=http://127.0.0.1:$PRISM_PORT$OP
for u in "$UP_URL$OP" "$GW_MOCK" "$GW_REAL" "$DIRECT_5MS" "$GW_REAL_5MS" "$GW_REAL_NODRIFT" "$GW_EXAMPLE" "$PRISM_URL" $NGINX_URL; do
    wait_200 "$u" || { tail -n 20 "$TMP"/*.log >&2; exit 1; }
done

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON/status"; }
sleep 1
IDLE_RSS=$(rss_kb)

# Samples the daemon's VmRSS every 0.2 s into $TMP/rss while the load runs.
(while kill -0 "$DAEMON" 2>/dev/null; do rss_kb >>"$TMP/rss"; sleep 0.2; done) &
PIDS+=($!)

# to_ms VALUE: wrk's 1.23ms / 456.00us / 1.02s as milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

# run NAME URL [CONNECTIONS THREADS]: warm-up, then the measured run; prints
# "NAME rps p50_ms p99_ms non2xx".
run() {
    local name=$1 url=$2 c=${3:-$CONNECTIONS} t=${4:-$THREADS}
    wrk -t "$t" -c "$c" -d "${WARMUP}s" "$url" >/dev/null
    wrk -t "$t" -c "$c" -d "${DURATION}s" --latency "$url" >"$TMP/wrk-$name"
    local rps p50 p99 bad
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk-$name")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$TMP/wrk-$name")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$TMP/wrk-$name")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$TMP/wrk-$name")
    echo "$name $rps $p50 $p99 ${bad:-0}"
}

echo "wrk $(wrk --version 2>&1 | head -n 1 | awk '{ print $2 }'), $THREADS threads, $CONNECTIONS connections, ${DURATION} s per run after ${WARMUP} s warm-up; $(nproc) cores; prism $PRISM_VERSION" >&2
R=$TMP/results
{
    run mockops-mock "$GW_MOCK"
    run prism-mock "$PRISM_URL"
    run direct "$DIRECT"
    run via-gateway "$GW_REAL"
    run direct-c1 "$DIRECT" 1 1
    run via-gateway-c1 "$GW_REAL" 1 1
    run direct-5ms "$DIRECT_5MS"
    run via-gateway-5ms "$GW_REAL_5MS"
    run via-gateway-nodrift "$GW_REAL_NODRIFT"
    if [ -n "$NGINX_URL" ]; then
        run via-nginx "$NGINX_URL"
        run via-nginx-c1 "$NGINX_URL" 1 1
        run via-nginx-5ms "$NGINX_5MS_URL"
    fi
} >"$R"
LOAD_RSS=$(sort -g "$TMP/rss" | tail -n 1)
HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON/status")

echo
printf '%-16s %-44s %11s %9s %9s %7s\n' run target req/s p50_ms p99_ms non2xx
while read -r name rps p50 p99 bad; do
    case $name in
        mockops-mock) what="gateway mock_v3 /bench/mock$OP" ;;
        prism-mock) what="prism mock (static) $OP" ;;
        direct) what="upstream directly /up/pay$OP" ;;
        via-gateway) what="gateway real /bench/real$OP -> upstream" ;;
        direct-c1) what="upstream directly, 1 connection" ;;
        via-gateway-c1) what="gateway real -> upstream, 1 connection" ;;
        direct-5ms) what="5 ms upstream directly /up/pay-5ms$OP" ;;
        via-gateway-5ms) what="gateway real -> 5 ms upstream" ;;
        via-gateway-nodrift) what="gateway real, --drift-sample 0" ;;
        via-nginx) what="nginx proxy_pass -> upstream" ;;
        via-nginx-c1) what="nginx proxy_pass -> upstream, 1 connection" ;;
        via-nginx-5ms) what="nginx proxy_pass -> 5 ms upstream" ;;
    esac
    printf '%-16s %-44s %11.0f %9.3f %9.3f %7s\n' "$name" "$what" "$rps" "$p50" "$p99" "$bad"
done <"$R"

get() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$R"; }
echo
awk -v mr="$(get mockops-mock 2)" -v pr="$(get prism-mock 2)" -v m99="$(get mockops-mock 4)" -v p99="$(get prism-mock 4)" 'BEGIN {
    ratio = (pr > 0 ? mr / pr : 0)
    printf "(a) mock serving: %.1fx Prism'"'"'s throughput (target >= 20x: %s); p99 %.3f ms vs %.3f ms (target lower: %s)\n",
        ratio, (ratio >= 20 ? "PASS" : "FAIL"), m99, p99, (m99 < p99 ? "PASS" : "FAIL")
}'
for suffix in "" -c1 -5ms; do
    case $suffix in
        "") label="$CONNECTIONS connections" ;;
        -c1) label="1 connection" ;;
        -5ms) label="$CONNECTIONS connections, 5 ms upstream" ;;
    esac
    awk -v label="$label" \
        -v dr="$(get "direct$suffix" 2)" -v vr="$(get "via-gateway$suffix" 2)" \
        -v d50="$(get "direct$suffix" 3)" -v v50="$(get "via-gateway$suffix" 3)" \
        -v d99="$(get "direct$suffix" 4)" -v v99="$(get "via-gateway$suffix" 4)" 'BEGIN {
        share = (dr > 0 ? 100 * vr / dr : 0)
        printf "(b) real proxying, %s: +%.3f ms at p50 (target < 1 ms: %s), +%.3f ms at p99; %.0f%% of direct throughput (target >= 80%%: %s)\n",
            label, v50 - d50, (v50 - d50 < 1 ? "PASS" : "FAIL"), v99 - d99, share, (share >= 80 ? "PASS" : "FAIL")
    }'
done
if [ -n "$NGINX_URL" ]; then
    for suffix in "" -c1 -5ms; do
        case $suffix in
            "") label="$CONNECTIONS connections" ;;
            -c1) label="1 connection" ;;
            -5ms) label="$CONNECTIONS connections, 5 ms upstream" ;;
        esac
        awk -v label="$label" \
            -v dr="$(get "direct$suffix" 2)" -v nr="$(get "via-nginx$suffix" 2)" -v vr="$(get "via-gateway$suffix" 2)" \
            -v d50="$(get "direct$suffix" 3)" -v n50="$(get "via-nginx$suffix" 3)" 'BEGIN {
            printf "(b) peer, %s: nginx +%.3f ms at p50, %.0f%% of direct throughput; the gateway does %.0f%% of nginx'"'"'s throughput\n",
                label, n50 - d50, (dr > 0 ? 100 * nr / dr : 0), (nr > 0 ? 100 * vr / nr : 0)
        }'
    done
fi
awk -v on50="$(get via-gateway 3)" -v off50="$(get via-gateway-nodrift 3)" \
    -v on99="$(get via-gateway 4)" -v off99="$(get via-gateway-nodrift 4)" \
    -v onr="$(get via-gateway 2)" -v offr="$(get via-gateway-nodrift 2)" 'BEGIN {
    printf "(d) drift observation of proxied exchanges (capture + asynchronous validation) vs --drift-sample 0, %s connections: %+.3f ms at p50, %+.3f ms at p99, %.0f%% of the throughput\n",
        '"$CONNECTIONS"', on50 - off50, on99 - off99, (offr > 0 ? 100 * onr / offr : 0)
}'
awk -v i="$IDLE_RSS" -v l="$LOAD_RSS" -v h="$HWM" 'BEGIN {
    printf "(c) daemon resident memory (example config + bench federation): %.1f MB idle, %.1f MB highest sample under load (VmHWM %.1f MB)\n",
        i / 1024, l / 1024, h / 1024
}'
for log in daemon nodrift up; do
    if grep -q -i 'panick' "$TMP/$log.log"; then echo "the $log daemon panicked:" >&2; grep -i -A3 panick "$TMP/$log.log" >&2; fi
done
exit 0
