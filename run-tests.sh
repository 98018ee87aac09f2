#!/usr/bin/env bash
# Every test from a fresh clone, in one command: ./run-tests.sh [pytest arguments]
#
# Creates .venv and installs the project with its test dependencies, then runs the Python
# suite (pytest, two workers, real PostgreSQL) and the Backstage plugins' tests
# (backstage/run-tests.sh). The plugins' Node 22 and JS dependencies are installed in the
# background while the Python suite runs: `npm ci` is mostly download and disk (about
# four minutes with an empty cache) and would otherwise add to the suite's time. It runs at
# the lowest CPU priority (and low I/O priority): at normal priority it took the suite from 11 to 15
# minutes on two cores, and it has the whole suite's length to finish.
# Exit status: 0 when every test passed; 1 when a test failed; 2 when the setup failed.
set -uo pipefail
cd "$(dirname "$0")"

python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' || { echo "run-tests.sh: installing the project failed" >&2; exit 2; }

prepare_log="$(mktemp "${TMPDIR:-/tmp}/dora-prepare.XXXXXX")"
low_priority=(nice -n 19)
command -v ionice >/dev/null 2>&1 && low_priority+=(ionice -c 2 -n 7)
"${low_priority[@]}" backstage/run-tests.sh --prepare >"$prepare_log" 2>&1 &
prepare=$!

.venv/bin/python -m pytest "$@"
python_status=$?

wait "$prepare"
prepare_status=$?
echo
echo "== backstage/run-tests.sh --prepare (ran beside the Python suite): exit $prepare_status"
tail -n 5 "$prepare_log"
rm -f "$prepare_log"
# The plugin run installs anything the preparation could not (and reports why).
backstage/run-tests.sh
plugin_status=$?

if [ "$python_status" -ne 0 ] || [ "$plugin_status" -ne 0 ]; then
    echo "run-tests.sh: python suite exit $python_status, plugin tests exit $plugin_status" >&2
    [ "$python_status" -eq 1 ] || [ "$plugin_status" -eq 1 ] && exit 1
    exit 2
fi
