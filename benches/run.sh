#!/usr/bin/env bash
# Build apisync in release mode and run its throughput benchmark (issue 7).
# With python3 available, also runs the plain Python loop
# (benches/python_baseline.py) against the same server, from a virtual
# environment with `requests`, for the side-by-side ratio.
#
#   benches/run.sh                 # every scenario, 1,000,000 records
#   benches/run.sh --quick         # smaller latency scenarios
#   benches/run.sh --only 1,2 --records 100000
#
# Arguments go to the benchmark (see benches/throughput.rs).
# NO_PYTHON=1 skips the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
args=("$@")
if [[ -z "${NO_PYTHON:-}" ]] && command -v python3 >/dev/null 2>&1; then
    venv="$target/bench-venv"
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check requests
    args+=(--python "$venv/bin/python")
else
    echo "python3 not found (or NO_PYTHON set): no Python baseline" >&2
fi

cargo build --release --locked
cargo bench --locked --bench throughput -- "${args[@]}"
