#!/usr/bin/env bash
# Where a router's cost comes from (BENCHMARKS.md, "A router in the path"): the dispatcher's two
# queue hops, or the two WASM calls. Applies router-ceiling.patch (benchmark-only switches: a
# routing decision taken natively, routing done inside `publish` instead of through the
# dispatcher's queues), runs every combination interleaved, prints the medians, and takes the
# patch out again. Not part of the test suite: an experiment, kept so its figures can be re-made.
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
# name|profile|decision|routing: echo app rows, then survey app rows (ratios to their own direct).
rows=("direct|direct||" "wasm-queued|router|wasm|queued" "native-queued|router|native|queued"
      "wasm-inline|router|wasm|inline" "native-inline|router|native|inline"
      "survey-direct|survey-direct||" "survey-wasm-queued|survey-router|wasm|queued"
      "survey-native-queued|survey-router|native|queued" "survey-wasm-inline|survey-router|wasm|inline"
      "survey-native-inline|survey-router|native|inline")
cd host
for _ in $(seq "$rounds"); do
    for row in "${rows[@]}"; do
        IFS='|' read -r name path decision routing <<<"$row"
        r=$(VUMI_BENCH_PROFILE=$path VUMI_BENCH_DECISION=$decision VUMI_BENCH_ROUTING=$routing \
            VUMI_BENCH_MESSAGES=$messages "../$bin" --bench | awk '{print $2}')
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
