#!/usr/bin/env bash
# Builds the polyglot echo components for `world application` of vumi:plugin@0.2.1 (../../wit):
#
#   target/polyglot/echo-py.wasm         Python, componentize-py (imports WASI: see README.md)
#   target/polyglot/echo-js.wasm         JavaScript, componentize-js/StarlingMonkey, --disable http fetch-event
#   target/polyglot/echo-py-nowasi.wasm  the same Python, --stub-wasi: imports vumi:plugin only
#   target/polyglot/echo-js-nowasi.wasm  the same JS, --disable stdio random clocks http fetch-event: vumi:plugin only
#
# then checks each one's world with `jco wit` (exports and allowed imports) and, unless
# POLYGLOT_SMOKE=0, runs it under Node (`jco transpile` + smoke.mjs, a mock of the vumi imports).
#
# Tools go into target/polyglot/ (git-ignored): a venv with componentize-py, and node_modules from
# js/package.json + js/package-lock.json. Only the package registries are used; nothing is
# downloaded at build time. A second run skips installs and components that are up to date;
# POLYGLOT_FORCE=1 rebuilds the components.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1   # npm versions: js/package.json (exact) and js/package-lock.json

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/polyglot"
venv="$out/venv"
nodedir="$out/node"
mkdir -p "$out"
cd "$root"   # jco and componentize-js read WIT and sources relative to here

say() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

command -v python3 >/dev/null || die "python3 not found (needed for the componentize-py venv)"
command -v node >/dev/null || die "node not found (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found (apt-get install npm)"

# --- tools -------------------------------------------------------------------------------------

cpy="$venv/bin/componentize-py"
if [[ -x "$cpy" ]] && [[ "$("$cpy" --version 2>/dev/null)" == "componentize-py $COMPONENTIZE_PY_VERSION" ]]; then
    say "componentize-py $COMPONENTIZE_PY_VERSION already in $venv"
else
    say "installing componentize-py==$COMPONENTIZE_PY_VERSION into $venv"
    [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q "componentize-py==$COMPONENTIZE_PY_VERSION"
    [[ "$("$cpy" --version)" == "componentize-py $COMPONENTIZE_PY_VERSION" ]] \
        || die "componentize-py --version is not $COMPONENTIZE_PY_VERSION: $("$cpy" --version)"
fi

lock_sum=$(cat "$here/js/package.json" "$here/js/package-lock.json" | sha256sum | cut -d' ' -f1)
stamp="$nodedir/node_modules/.polyglot-lock-sha256"
if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$lock_sum" ]]; then
    say "npm packages already in $nodedir (lock unchanged)"
else
    say "npm ci in $nodedir (from tests/polyglot/js/package-lock.json)"
    mkdir -p "$nodedir"
    cp "$here/js/package.json" "$here/js/package-lock.json" "$nodedir/"
    (cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$stamp"
fi
bin="$nodedir/node_modules/.bin"
jco="$bin/jco"
cjs="$bin/componentize-js"
# Each tool must start (a missing, undeclared npm dependency shows up here, not mid-build).
v_cpy=$("$cpy" --version) || die "componentize-py does not start"
v_jco=$("$jco" --version) || die "jco does not start"
v_cjs=$("$cjs" --version) || die "componentize-js does not start"
say "tools: $v_cpy, jco $v_jco, componentize-js $v_cjs"

# --- components --------------------------------------------------------------------------------

# up_to_date OUT INPUT...: OUT exists and is newer than every input (and POLYGLOT_FORCE is not 1).
up_to_date() {
    local target=$1; shift
    [[ "${POLYGLOT_FORCE:-0}" != 1 && -f "$target" ]] || return 1
    local f
    for f in "$@"; do [[ "$f" -nt "$target" ]] && return 1; done
    return 0
}

wit_files=(wit/*.wit)
py_inputs=("${wit_files[@]}" "$here"/python/*.py "$cpy" "$here/build.sh")
js_inputs=("${wit_files[@]}" "$here/js/app.js" "$stamp" "$here/build.sh")

# build NAME INPUTS-VAR COMMAND...: run COMMAND (which writes target/polyglot/NAME.wasm) unless
# up to date; prints time and size.
build() {
    local name=$1 inputs=$2; shift 2
    local wasm="$out/$name.wasm"
    local -n ins=$inputs
    if up_to_date "$wasm" "${ins[@]}"; then
        say "$name.wasm is up to date ($(stat -c %s "$wasm") B)"
        return
    fi
    say "building $name.wasm: $*"
    local t0; t0=$(now)
    rm -f "$wasm"
    "$@"
    [[ -s "$wasm" ]] || die "$name: the tool exited 0 but wrote no $wasm"
    say "built $name.wasm in $(elapsed "$t0") s, $(stat -c %s "$wasm") B"
}

# componentize-py writes __pycache__ next to the app: build from a copy, keep the source clean.
pysrc="$out/build/python"
rm -rf "$pysrc" && mkdir -p "$pysrc" && cp "$here"/python/*.py "$pysrc/"

build echo-py py_inputs \
    "$cpy" -d wit -w application componentize -p "$pysrc" app -o "$out/echo-py.wasm"
build echo-py-nowasi py_inputs \
    "$cpy" -d wit -w application componentize --stub-wasi -p "$pysrc" app -o "$out/echo-py-nowasi.wasm"
build echo-js js_inputs \
    "$cjs" --wit wit --world-name application --disable http fetch-event \
    -o "$out/echo-js.wasm" tests/polyglot/js/app.js
build echo-js-nowasi js_inputs \
    "$cjs" --wit wit --world-name application --disable stdio random clocks http fetch-event \
    -o "$out/echo-js-nowasi.wasm" tests/polyglot/js/app.js

# --- check the worlds --------------------------------------------------------------------------

# Exports must be handle-user-message and handle-event (componentize-py adds its own `exports`
# interface, whose `init` is for its build step: the host must never call it). Imports must be
# vumi:plugin/{types,message,kv,config,log,outbound,http}@0.2.1 or wasi:*. Writes NAME.wit beside it.
check_world() {
    local name=$1 wasm="$out/$1.wasm" wit="$out/$1.wit"
    "$jco" wit "$wasm" > "$wit"
    local bad=0 line
    grep -qx '  export handle-user-message: func(message: borrow<user-message>) -> result<_, handler-error>;' "$wit" \
        || { echo "$name: no export handle-user-message of the 0.2 type" >&2; bad=1; }
    grep -qx '  export handle-event: func(event: borrow<event>) -> result<_, handler-error>;' "$wit" \
        || { echo "$name: no export handle-event of the 0.2 type" >&2; bad=1; }
    while read -r line; do
        case "$line" in
            "export handle-user-message:"* | "export handle-event:"*) ;;
            "export exports: interface {") [[ $name == echo-py* ]] || { echo "$name: unexpected $line" >&2; bad=1; } ;;
            *) echo "$name: unexpected export: $line" >&2; bad=1 ;;
        esac
    done < <(grep -E '^  export ' "$wit" | sed 's/^  //')
    local imports
    imports=$(grep -E '^  import ' "$wit" | sed -E 's/^  import (.*);$/\1/')
    while read -r line; do
        case "$line" in
            vumi:plugin/types@0.2.1 | vumi:plugin/message@0.2.1 | vumi:plugin/kv@0.2.1 | \
            vumi:plugin/config@0.2.1 | vumi:plugin/log@0.2.1 | vumi:plugin/outbound@0.2.1 | \
            vumi:plugin/http@0.2.1 | wasi:*) ;;
            *) echo "$name: import outside the allowed set: $line" >&2; bad=1 ;;
        esac
    done <<< "$imports"
    [[ $bad == 0 ]] || die "$name.wasm: world check failed (see $wit)"
    say "$name.wasm world ok; imports: $(echo "$imports" | sed -E 's/vumi:plugin\//vumi:/' | tr '\n' ' ')"
}

for n in echo-py echo-js echo-py-nowasi echo-js-nowasi; do check_world "$n"; done

# --- smoke run under Node ----------------------------------------------------------------------

if [[ "${POLYGLOT_SMOKE:-1}" != 0 ]]; then
    # componentize-py's libraries use extended-const, which Node 20 keeps behind a flag (newer
    # Nodes ship it and may not know the flag).
    node_flags=()
    if node --v8-options | grep -q -- '--experimental-wasm-extended-const'; then
        node_flags=(--experimental-wasm-extended-const)
    fi
    for n in echo-py echo-js echo-py-nowasi echo-js-nowasi; do
        run="$out/run/$n"
        if ! up_to_date "$run/$n.js" "$out/$n.wasm"; then
            rm -rf "$run"
            "$jco" transpile "$out/$n.wasm" --instantiation async --no-typescript --quiet -o "$run"
        fi
        say "smoke $n under node (mock vumi host, deny-all WASI)"
        node "${node_flags[@]}" "$here/smoke.mjs" "$nodedir" "$run" "$n"
    done
fi

say "done: $(cd "$out" && ls -l echo-*.wasm | awk '{ printf "%s %s B; ", $NF, $5 }')"
