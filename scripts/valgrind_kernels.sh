#!/usr/bin/env bash
# The native kernels' unit tests under valgrind's memcheck: no invalid read or write, no read of
# uninitialized memory (the kernels write outputs into uninitialized buffers and promise to fill
# them). Exits non-zero on any error. `.ci/run` calls it.
#
# valgrind's virtual CPU has no AVX-512 (it reports AVX2 and FMA), so the run-time dispatch takes
# the AVX2 paths here, both in gemm and in the kernels' own loops: this also tests the kernels on
# an AVX2-only machine. The default test run covers the AVX-512 paths on CPUs that have them.
#
# Usage: scripts/valgrind_kernels.sh [TEST FILTER...]   (default: kernels:: native::)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mobilenet-burn-target}"

if ! command -v valgrind >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq valgrind >/dev/null
fi

# The library's unit tests, built as the README's test command builds them (same profile and
# features, so nothing is rebuilt when the tests ran first).
binary=$(cargo test --release --all-features --lib --no-run 2>&1 |
    sed -n 's/^ *Executable unittests src\/lib.rs (\(.*\))$/\1/p')
if [ -z "$binary" ]; then
    echo "valgrind_kernels: could not find the unit-test binary" >&2
    exit 1
fi

filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
    filters=(kernels:: native::)
fi
# Two threads, as on CI, so the kernels' parallel splits run too. `--error-exitcode` makes any
# memcheck error fail the script; leaks are not errors here (thread pools live until exit).
RAYON_NUM_THREADS=2 valgrind --tool=memcheck --error-exitcode=99 --leak-check=no \
    --track-origins=yes --quiet \
    "$binary" "${filters[@]}" --test-threads=1
echo "valgrind_kernels: 0 errors"
