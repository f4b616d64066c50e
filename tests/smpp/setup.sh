#!/usr/bin/env bash
# Installs the SMPP peers of tests/e2e/smpp_peers.rs, implementations vumi did not write:
#
#   target/smpp-peers/node/node_modules/smpp   the npm `smpp` package (node-smpp), for smsc.js,
#                                              from package.json + package-lock.json (npm ci)
#   target/smpp-peers/venv                     a Python venv with PyPI `smpplib`, for client.py
#
# Only the package registries are used. A second run installs nothing (stamp files), so the tests
# call it every time; it fails naming what is missing.
set -euo pipefail

SMPPLIB_VERSION=2.2.4   # npm: package.json (exact) and package-lock.json

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/smpp-peers"
venv="$out/venv"
nodedir="$out/node"
mkdir -p "$out"

say() { printf 'smpp setup: %s\n' "$*" >&2; }
die() { printf 'tests/smpp/setup.sh: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node not found: install Node.js 18+ (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found (apt-get install npm)"
command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-venv)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 18 )) || die "node $(node --version) is too old: smsc.js needs Node.js 18+"

# --- npm smpp ----------------------------------------------------------------------------------

lock_sum=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
stamp="$nodedir/node_modules/.smpp-peers-lock-sha256"
if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$lock_sum" ]]; then
    :
else
    say "npm ci in $nodedir (from tests/smpp/package-lock.json)"
    mkdir -p "$nodedir"
    cp "$here/package.json" "$here/package-lock.json" "$nodedir/"
    (cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci failed (is the npm registry reachable? see the npm output above)"
    echo "$lock_sum" > "$stamp"
fi
v_smpp=$(node -p "require('$nodedir/node_modules/smpp/package.json').version") \
    || die "the npm smpp package does not load from $nodedir/node_modules"

# --- PyPI smpplib ------------------------------------------------------------------------------

pystamp="$venv/.smpplib-$SMPPLIB_VERSION"
if [[ -f "$pystamp" ]] && [[ -x "$venv/bin/python" ]]; then
    :
else
    say "installing smpplib==$SMPPLIB_VERSION into $venv"
    if [[ ! -x "$venv/bin/pip" ]]; then
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    fi
    "$venv/bin/pip" install --disable-pip-version-check -q "smpplib==$SMPPLIB_VERSION" \
        || die "pip install smpplib==$SMPPLIB_VERSION failed (is PyPI reachable? see the pip output above)"
    touch "$pystamp"
fi
v_smpplib=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("smpplib"))') \
    || die "smpplib does not import in $venv"
[[ "$v_smpplib" == "$SMPPLIB_VERSION" ]] || die "smpplib in $venv is $v_smpplib, not $SMPPLIB_VERSION"

say "peers ready: npm smpp $v_smpp (node $(node --version)), PyPI smpplib $v_smpplib ($("$venv/bin/python" --version))"
