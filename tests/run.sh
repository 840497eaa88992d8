#!/usr/bin/env bash
# THE test command for portcullis: dependencies, build, every test suite, fuzzing, format check.
#
#   sudo tests/run.sh [--quick] [--no-deps] [--no-tidy]      (as root: tests/run.sh)
#
#   1. deploy/install-deps.sh                      (skipped with --no-deps)
#   2. default preset: build, fill the container test's cache (network: the Debian mirror),
#      then unit + integration tests with ctest, then clang-tidy over
#      every project .cc with tests/tidy.sh (about 3 min on 2 cores; skipped with --no-tidy)
#   3. asan preset: build, then the same tests under ASan/UBSan    (skipped with --quick)
#   4. fuzz preset: build the fuzz_* targets and run each for $FUZZ_SECONDS s (default 20)
#      with tests/fuzz/corpus/<name> as seed corpus if it exists      (skipped with --quick)
#   5. tsan preset: build the daemon and the milter's unit tests only, then run those,
#      tests/integration/test_milter.py and test_workers.py under ThreadSanitizer
#                                                                        (skipped with --quick)
#   6. clang-format check of proxy/ filters/ include/ tests/ (*.h *.cc)
#
# Tests run inside a loopback-only network namespace (unshare -n; plus a PID namespace when
# available, so no daemon a test started can outlive the run). Without unshare they run on the
# host with a warning. Step logs go to build-logs/. Exits non-zero if any step failed; the
# summary at the end lists every step. Must run as root: Postfix's master(8) runs as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
QUICK=0
DEPS=1
TIDY=1
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --no-deps) DEPS=0 ;;
    --no-tidy) TIDY=0 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then
  echo "run.sh: must run as root (sudo tests/run.sh): the integration tests start Postfix" >&2
  exit 1
fi

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-2}
LOGS=$REPO/build-logs
mkdir -p "$LOGS"
rm -f "$LOGS"/ctest-*.log
SUMMARY=()
FAILED=0
TESTS_PASSED=0
TESTS_FAILED=0

# Run one step in a subshell with errexit; record PASS/FAIL and its duration in SUMMARY and
# its exit code in LAST_RC. step itself always succeeds and must not be called from a
# condition (if/||/&&): bash would then silently disable errexit inside the step.
step() {
  local name=$1 start rc
  shift
  echo
  echo "=== $name"
  start=$(date +%s)
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  local took=$(( $(date +%s) - start ))
  if [[ $rc -eq 0 ]]; then
    SUMMARY+=("PASS  ${took}s  $name")
  else
    SUMMARY+=("FAIL  ${took}s  $name (exit $rc)")
    FAILED=1
  fi
  LAST_RC=$rc
}
skip() { SUMMARY+=("SKIP  -     $1"); }

# Quietly run a long command; its output goes to a log and is shown (tail) only on failure.
logged() {
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "--- failed: $* (last 80 lines of $log)"
    tail -n 80 "$log"
    return 1
  fi
}

# Pick how to isolate the network: net+pid namespaces, net only, or nothing.
if unshare --net --pid --fork --mount-proc true 2>/dev/null; then
  NETNS=(unshare --net --pid --fork --mount-proc --)
elif unshare --net true 2>/dev/null; then
  NETNS=(unshare --net --)
else
  NETNS=()
  echo "run.sh: WARNING: unshare is unavailable; tests run on the host's loopback" >&2
fi
in_netns() {
  if [[ ${#NETNS[@]} -gt 0 ]]; then
    "${NETNS[@]}" bash -c 'ip link set lo up && "$@"' in_netns "$@"
  else
    "$@"
  fi
}

# ctest in the namespace, output also kept in a log for the totals in the summary.
run_ctest() {
  local dir=$1 log=$2 rc
  set +e
  in_netns ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$JOBS" \
    --timeout 900 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

# The same, for the tests whose names match a regex.
run_ctest_matching() {
  local dir=$1 log=$2 regex=$3 rc
  set +e
  in_netns ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$JOBS" \
    --timeout 900 -R "$regex" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

# Add a ctest log's closing line ("N% tests passed, F tests failed out of T") to the totals.
count_tests() {
  local line
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n 1 || true)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    TESTS_FAILED=$(( TESTS_FAILED + BASH_REMATCH[1] ))
    TESTS_PASSED=$(( TESTS_PASSED + BASH_REMATCH[2] - BASH_REMATCH[1] ))
  fi
}

build_preset() {
  local preset=$1
  echo "configure + build, output in build-logs/configure-$preset.log and build-$preset.log"
  logged "$LOGS/configure-$preset.log" cmake --preset "$preset"
  logged "$LOGS/build-$preset.log" cmake --build --preset "$preset" -j"$JOBS"
}

fuzz_all() {
  logged "$LOGS/configure-fuzz.log" cmake --preset fuzz
  local targets
  targets=$(cmake --build build-fuzz --target help 2>/dev/null |
            grep -oE '\bfuzz_[A-Za-z0-9_]+' | sort -u | tr '\n' ' ' || true)
  if [[ -n $targets ]]; then
    # shellcheck disable=SC2086  # a list of target names
    logged "$LOGS/build-fuzz.log" cmake --build --preset fuzz -j"$JOBS" --target $targets
  else
    logged "$LOGS/build-fuzz.log" cmake --build --preset fuzz -j"$JOBS"
  fi
  local found=0 failed=0 bin name corpus work extra
  for bin in build-fuzz/tests/fuzz/fuzz_*; do
    [[ -f $bin && -x $bin ]] || continue
    found=1
    name=$(basename "$bin")
    work=build-fuzz/fuzz-work/$name           # new inputs land here, never in the repo
    mkdir -p "$work" build-fuzz/fuzz-artifacts
    corpus=()
    [[ -d tests/fuzz/corpus/$name ]] && corpus=("tests/fuzz/corpus/$name")
    extra=()
    [[ -f tests/fuzz/dict/$name.dict ]] && extra+=("-dict=tests/fuzz/dict/$name.dict")
    [[ $name == fuzz_config ]] && extra+=("-max_len=4096")  # a config file, not a megabyte
    echo "--- $name for ${FUZZ_SECONDS}s ${corpus[*]:+(seed corpus ${corpus[*]})}"
    if "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "${extra[@]}" \
        -artifact_prefix="build-fuzz/fuzz-artifacts/$name-" "$work" "${corpus[@]}" \
        >"$LOGS/fuzz-$name.log" 2>&1; then
      grep -E '^(stat::number_of_executed_units|#[0-9]+.*DONE)' "$LOGS/fuzz-$name.log" | tail -n 2 || true
    else
      echo "$name FAILED (crash input in build-fuzz/fuzz-artifacts/); last lines:"
      tail -n 60 "$LOGS/fuzz-$name.log"
      failed=1
    fi
  done
  if [[ $found -eq 0 ]]; then
    echo "no fuzz_* targets in build-fuzz/tests/fuzz/"
    return 1
  fi
  return $failed
}

format_check() {
  local dirs=() d
  for d in proxy filters include tests; do [[ -d $d ]] && dirs+=("$d"); done
  local files
  mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.h' -o -name '*.cc' \) \
                         -not -path 'tests/fuzz/corpus/*' | sort)
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "no C++ files to check"
    return 0
  fi
  echo "checking ${#files[@]} files"
  local bad=() f
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [[ ${#bad[@]} -gt 0 ]]; then
    clang-format --dry-run "${bad[@]}" 2>&1 | head -n 40 || true
    echo "not clang-formatted (${#bad[@]} files):"
    printf '  %s\n' "${bad[@]}"
    echo "fix with: clang-format -i ${bad[*]}"
    return 1
  fi
}

T0=$(date +%s)
if [[ $DEPS -eq 1 ]]; then
  step "install dependencies" bash deploy/install-deps.sh
  if [[ $LAST_RC -ne 0 ]]; then echo "run.sh: cannot continue without dependencies"; exit 1; fi
else
  skip "install dependencies (--no-deps)"
fi

step "build (default)" build_preset default
if [[ $LAST_RC -eq 0 ]]; then
  # Outside the namespace: test_container's base image and apt stages need the Debian mirror
  # (cached under /var/cache/portcullis-test/podman; seconds once filled).
  step "container test cache (debootstrap, apt stages)" \
    logged "$LOGS/container-prepare.log" python3 tests/integration/test_container.py --prepare
  step "tests (default)" run_ctest build "$LOGS/ctest-default.log"
else
  skip "tests (default): build failed"
fi
if [[ $TIDY -eq 0 ]]; then
  skip "clang-tidy (--no-tidy)"
elif [[ -f build/compile_commands.json ]]; then
  step "clang-tidy (tests/tidy.sh)" logged "$LOGS/tidy.log" env JOBS="$JOBS" tests/tidy.sh build
else
  skip "clang-tidy: the default preset did not configure"
fi

if [[ $QUICK -eq 0 ]]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  step "build (asan)" build_preset asan
  if [[ $LAST_RC -eq 0 ]]; then
    step "tests (asan)" run_ctest build-asan "$LOGS/ctest-asan.log"
  else
    skip "tests (asan): build failed"
  fi
  step "fuzz (${FUZZ_SECONDS}s per target)" fuzz_all
  # The milter's threads (libmilter's and the loop's) and the workers' event-loop threads (their
  # inbox and connection table, their lists of recycled blocks, and test_workers's two workers
  # with a reload) under ThreadSanitizer: only what they need is built (the tsan build preset's
  # targets).
  export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp"
  step "build (tsan: daemon + milter tests)" build_preset tsan
  if [[ $LAST_RC -eq 0 ]]; then
    step "tests (tsan: milter, workers)" run_ctest_matching build-tsan "$LOGS/ctest-tsan.log" \
      '^(integration\.test_milter|integration\.test_workers|LoopBridgeTest\.|SessionGateTest\.|LoopInbox\.|ConnectionTable\.|Recycled\.)'
  else
    skip "tests (tsan): build failed"
  fi
else
  skip "asan build + tests (--quick)"
  skip "fuzz (--quick)"
  skip "tsan build + milter and workers tests (--quick)"
fi

step "clang-format check" format_check

echo
echo "=== summary ($(( $(date +%s) - T0 ))s, logs in build-logs/)"
printf '  %s\n' "${SUMMARY[@]}"
for log in "$LOGS"/ctest-*.log; do [[ -f $log ]] && count_tests "$log"; done
echo "ctest: $TESTS_PASSED passed, $TESTS_FAILED failed"
if [[ $FAILED -ne 0 ]]; then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
