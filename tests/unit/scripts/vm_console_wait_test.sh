#!/usr/bin/env bash
# vm_console_wait (scripts/vm-lib.sh), the wait of every VM test for a line on a guest's
# console: found, the guest's command ended without it, out of time; and the line and the
# command's end (VMTEST-RC) both written between the wait's two reads of the console,
# which is a success, not "the guest stopped before" it.
set -euo pipefail
# shellcheck source=scripts/vm-lib.sh
. "$(dirname "$0")/../../../scripts/vm-lib.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
check() {  # check WHAT EXPECTED ACTUAL
  if [[ $2 == "$3" ]]; then echo "ok: $1"; else echo "FAIL: $1: returned $3, expected $2"; failures=$((failures + 1)); fi
}

printf 'VMTEST-READY vm1\nVMTEST-REACHED\n' >"$dir/found"
rc=0; vm_console_wait "$dir/found" VMTEST-REACHED 5 || rc=$?
check "the line is there" 0 "$rc"

printf 'VMTEST-READY vm1\nVMTEST-RC=11\n' >"$dir/ended"
rc=0; vm_console_wait "$dir/ended" VMTEST-REACHED 5 || rc=$?
check "the command ended without the line" 1 "$rc"

: >"$dir/silent"
rc=0; vm_console_wait "$dir/silent" VMTEST-REACHED 1 || rc=$?
check "nothing within the time" 2 "$rc"

# The race: the guest prints its last line and its status after the wait's first read
# found neither. A grep that appends both once it has read the console the first time
# stands in for the guest.
printf 'VMTEST-READY vm1\n' >"$dir/race"
reads=0
grep() {
  local rc=0
  command grep "$@" || rc=$?
  reads=$((reads + 1))
  ((reads == 1)) && printf 'VMTEST-DETACHED\nVMTEST-RC=0\n' >>"$dir/race"
  return "$rc"
}
rc=0; vm_console_wait "$dir/race" VMTEST-DETACHED 5 || rc=$?
unset -f grep
check "the line and the end between two reads" 0 "$rc"

((failures == 0)) || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
