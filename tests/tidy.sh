#!/usr/bin/env bash
# clang-tidy over every project .cc (proxy/, filters/, tests/) with the checks in .clang-tidy,
# using the compile_commands.json of a configured build. Exits non-zero on any finding.
#
#   tests/tidy.sh [BUILD_DIR] [PATH_REGEX]     (defaults: build, the default preset; all files)
#   e.g. tests/tidy.sh /work/build-me 'proxy/smtp/'
#
# JOBS (default 2) clang-tidy processes run in parallel; CLANG_TIDY picks the binary. Findings
# are printed once each (a header's finding repeats in every file that includes it), sorted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
BUILD=${1:-build}
FILTER=${2:-}
JOBS=${JOBS:-2}
TIDY=${CLANG_TIDY:-$(command -v clang-tidy || command -v clang-tidy-14 || true)}

if [[ -z $TIDY ]]; then
  echo "tidy.sh: clang-tidy not found (apt-get install clang-tidy)" >&2
  exit 2
fi
if [[ ! -f $BUILD/compile_commands.json ]]; then
  echo "tidy.sh: no $BUILD/compile_commands.json (configure first: cmake --preset default)" >&2
  exit 2
fi

# Project sources from the compilation database: ours, not generated or third-party files.
mapfile -t files < <(python3 - "$BUILD/compile_commands.json" "$REPO" "$FILTER" <<'PY'
import json, os, re, sys
db, repo, pattern = sys.argv[1], sys.argv[2], sys.argv[3]
seen = set()
for entry in json.load(open(db)):
    path = os.path.normpath(os.path.join(entry["directory"], entry["file"]))
    rel = os.path.relpath(path, repo)
    if not re.match(r"(proxy|filters|tests)/.*\.cc$", rel) or rel in seen:
        continue
    if pattern and not re.search(pattern, rel):
        continue
    seen.add(rel)
    print(rel)
PY
)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "tidy.sh: no project sources in $BUILD/compile_commands.json${FILTER:+ matching $FILTER}" >&2
  exit 2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "clang-tidy ($("$TIDY" --version | grep -o 'version [0-9.]*')) on ${#files[@]} files, $JOBS jobs"
start=$(date +%s)
# One log per file; clang-tidy's own exit code is ignored, the findings decide.
# shellcheck disable=SC2016  # $1..$4 belong to the inner sh
printf '%s\n' "${files[@]}" |
  xargs -P "$JOBS" -I{} sh -c '"$1" -p "$2" --quiet "$3" >"$4/$(echo "$3" | tr / _).log" 2>&1 || true' \
    sh "$TIDY" "$BUILD" {} "$out"

# "file:line:col: warning: message [check]" with the path made relative to the repository.
findings=$(cat "$out"/*.log | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' |
           sed -e "s|^$REPO/||" -e "s/,-warnings-as-errors\]$/]/" | sort -u || true)
took=$(( $(date +%s) - start ))
if [[ -n $findings ]]; then
  echo "$findings"
  echo "tidy.sh: $(wc -l <<<"$findings") findings in ${took}s (checks: .clang-tidy)"
  exit 1
fi
# A file clang-tidy could not parse shows up as an error above; anything else odd is shown here.
if grep -l -E 'Error while processing|error:' "$out"/*.log >/dev/null 2>&1; then
  cat "$out"/*.log
  echo "tidy.sh: clang-tidy failed"
  exit 1
fi
echo "tidy.sh: clean in ${took}s"
