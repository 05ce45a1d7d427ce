#!/usr/bin/env bash
# sanitize.sh: builds the library, the tools and every test with
# AddressSanitizer + UndefinedBehaviorSanitizer (leak detection on) in
# build-asan/ and runs the whole ctest suite there.
#
# Criterion runs each test in a forked child and does not turn a sanitizer
# report from that child (a leak found at its exit, say) into a failure, so
# every report goes to a log file under build-asan/sanitizer-logs/ and the job
# fails when any log file appears. tests/sanitizer.supp lists the third-party
# leaks that are suppressed, each with its reason.
#
# Usage: .ci/sanitize.sh [ctest arguments, e.g. -R 'test_misuse|test_fault']
# Environment: CLNORM_SANITIZE_BUILD (build directory, default build-asan).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${CLNORM_SANITIZE_BUILD:-build-asan}
logs=$root/$build/sanitizer-logs

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLNORM_SANITIZE=address,undefined \
      -DCLNORM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"

rm -rf "$logs"
mkdir -p "$logs"
# use_sigaltstack=0: PoCL replaces the alternate signal stack of threads it
#   initializes in, and ASan then fails a CHECK unmapping its own at thread exit.
# fast_unwind_on_malloc=0: complete stacks through PoCL and LLVM (no frame
#   pointers there), so the suppressions can name functions, not libraries.
export ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan:log_exe_name=1:use_sigaltstack=0:fast_unwind_on_malloc=0:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizer.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan:log_exe_name=1"

# The sanitized processes run with a fixed address layout where the kernel
# allows it (setarch -R, inherited by every child): once in this job a
# Criterion worker (test_misuse, re-executed by BoxFort) died at its first
# instruction, "PC is at a non-executable region", before any test code ran,
# and the same job passed on rerun. Start-up crashes of the ASan runtime
# under randomized layouts are a known class (google/sanitizers #1614,
# #1716), and a fixed layout is the usual way CI avoids them; the tests and
# what the sanitizers check are the same.
norand=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  norand=(setarch "$(uname -m)" -R)
fi

status=0
"${norand[@]}" ctest --test-dir "$build" --output-on-failure "$@" || status=$?
if compgen -G "$logs/*" >/dev/null; then
  echo "sanitize.sh: sanitizer reports (each file is one process):" >&2
  for f in "$logs"/*; do
    echo "==== $f" >&2
    cat "$f" >&2
  done
  status=1
fi
[ "$status" -eq 0 ] && echo "sanitize.sh: no sanitizer report"
exit "$status"
