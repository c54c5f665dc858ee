#!/usr/bin/env bash
# clang-tidy over every source of the libraries and programs (shm/, endpoints/, vswitch/;
# their headers through them), with the checks of .clang-tidy, every finding an error.
#   scripts/clang-tidy.sh [BUILD_DIR]   (default build: needs its compile_commands.json)
# Exit 0 when nothing was found; 1 with the findings otherwise. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
db=$build/compile_commands.json
[[ -f $db ]] || { echo "clang-tidy.sh: no $db (configure $build first)" >&2; exit 2; }
# The checks a version knows differ: the one scripts/setup.sh installs (14) unless told.
tidy=${CLANG_TIDY:-$(command -v clang-tidy-14 || command -v clang-tidy || true)}
[[ -n $tidy ]] || { echo "clang-tidy.sh: clang-tidy not installed (scripts/setup.sh installs it)" >&2; exit 2; }
mapfile -t files < <(python3 - "$db" "$PWD" <<'PY'
import json, os, sys
root = os.path.realpath(sys.argv[2])  # the database holds real paths; $PWD may be a link
for f in sorted({e["file"] for e in json.load(open(sys.argv[1]))}):
    rel = os.path.relpath(os.path.realpath(f), root)
    if rel.split(os.sep)[0] in ("shm", "endpoints", "vswitch"):
        print(f)
PY
)
((${#files[@]})) || { echo "clang-tidy.sh: no sources in $db" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One process per source, as many at a time as there are CPUs; each one's output kept whole.
rc=0
printf '%s\0' "${files[@]}" |
  xargs -0 -P "$(nproc)" -n 1 sh -c 'out=$("$0" -p "$1" --quiet "$2" 2>&1) || { printf "%s\n" "$out"; exit 1; }' "$tidy" "$build" \
  >"$log" || rc=$?
if ((rc)); then
  grep -v " generated\.$\|^Suppressed [0-9]* warnings\|^Use -header-filter" "$log" || true
  echo "clang-tidy.sh: findings above (checks: .clang-tidy)" >&2
  exit 1
fi
echo "clang-tidy.sh: ${#files[@]} sources, no findings ($("$tidy" --version | grep -o 'version [0-9.]*' | head -1))"
