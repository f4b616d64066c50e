#!/usr/bin/env bash
# Where a router's cost comes from (BENCHMARKS.md, "A router in the path"): the dispatcher's
# queue hops, or the two WASM calls. Applies router-ceiling.patch (a benchmark-only switch,
# VUMI_BENCH_DECISION=native: the keyword router's decision taken natively, for free, instead of
# calling the component), runs the throughput benchmark's paths one process each, interleaved,
# prints the medians, and takes the patch out again. Not part of the test suite: an experiment,
# kept so its figures can be re-made.
#
# Run from the repository root: bash host/benches/experiments/router-ceiling.sh [rounds] [messages]
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-5}
messages=${2:-100000}
patch=$PWD/host/benches/experiments/router-ceiling.patch

git apply "$patch"
trap 'git apply -R "$patch"' EXIT
cargo bench -p vumi-host --bench throughput --no-run 2>/dev/null
bin=$(ls -t target/release/deps/throughput-* | grep -v '\.d$' | head -1)

declare -A runs
# name|profile|decision: echo app rows, then survey app rows (ratios to their own direct row).
rows=("direct|direct|" "wasm-at-publish|router|wasm" "native-at-publish|router|native"
      "wasm-queued|router-queued|wasm" "native-queued|router-queued|native"
      "survey-direct|survey-direct|" "survey-wasm-at-publish|survey-router|wasm"
      "survey-native-at-publish|survey-router|native" "survey-wasm-queued|survey-router-queued|wasm"
      "survey-native-queued|survey-router-queued|native")
cd host
for _ in $(seq "$rounds"); do
    for row in "${rows[@]}"; do
        IFS='|' read -r name path decision <<<"$row"
        r=$(VUMI_BENCH_PROFILE=$path VUMI_BENCH_DECISION=$decision VUMI_BENCH_MESSAGES=$messages \
            "../$bin" --bench | awk '{print $2}')
        runs[$name]+="$r "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "rounds: $rounds, messages per run: $messages (median messages/s; ratio to the same app's direct row)"
for row in "${rows[@]}"; do
    name=${row%%|*}
    base=direct
    [[ $name == survey-* ]] && base=survey-direct
    m=$(echo "${runs[$name]}" | median)
    d=$(echo "${runs[$base]}" | median)
    awk -v n="$name" -v m="$m" -v d="$d" 'BEGIN {printf "| %s | %.0f | %.2f |\n", n, m, m / d}'
done
