#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer harnesses (tests/fuzz/) with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer, the library instrumented for coverage, in
# build-fuzz/, and runs each for a bounded time starting from its seed corpus.
# A crash, a sanitizer report or a mismatch with the harness's model fails the
# job; the reproducer is left in build-fuzz/artifacts/ (add it to the seed
# corpus once fixed: the ordinary build replays the corpus as a ctest test).
#
# Usage: .ci/fuzz.sh [seconds per fuzzer]   (default 45, or $CLNORM_FUZZ_SECONDS)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-${CLNORM_FUZZ_SECONDS:-45}}
build=build-fuzz
cc=${CLNORM_FUZZ_CC:-clang}

cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLNORM_FUZZ=ON \
      -DCLNORM_SANITIZE=address,undefined -DCLNORM_BUILD_TOOLS=OFF -DCLNORM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_npy fuzz_bn_args

mkdir -p "$build/artifacts"
# PoCL replaces threads' alternate signal stacks (see .ci/sanitize.sh); the
# fast unwinder keeps the executions per second up, so the third-party leak
# suppressions name libraries (tests/fuzz/lsan.supp says why that is safe).
export ASAN_OPTIONS="use_sigaltstack=0"
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# a fixed address layout, as .ci/sanitize.sh says why
norand=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norand=(setarch "$(uname -m)" -R)
fi
status=0
for f in fuzz_npy fuzz_bn_args; do
  work="$build/corpus/$f"   # new inputs land here; the seeds stay untouched
  mkdir -p "$work"
  echo "== $f: ${secs}s"
  "${norand[@]}" "$build/tests/fuzz/$f" -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$f-" "$work" "tests/fuzz/corpus/$f" 2>"$build/$f.log" || {
    status=1
    echo "fuzz.sh: $f failed; the end of its log:" >&2
    tail -n 60 "$build/$f.log" >&2
  }
  grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$build/$f.log" || true
done
exit "$status"
