# Sourced after lib.sh by the tests that boot QEMU guests (TCG, the x86_64 image of
# scripts/vm-image.sh, scripts/vm-lib.sh's vm_boot): checks QEMU, builds the image if
# needed, moves to the repository root, and stops every guest whose pid the test added
# to QEMUS before lib.sh's cleanup runs.
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 missing (scripts/setup.sh installs it)"
cd "$ROOT"
scripts/vm-image.sh --arch x86_64 >/dev/null || fail "scripts/vm-image.sh"
# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh
QEMUS=()
stop_guests() {
  for p in "${QEMUS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${QEMUS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'stop_guests; cleanup' EXIT

# console_has TEXT SECONDS [GUEST]: waits for TEXT on a guest's console ($WORK/GUEST.console,
# vm1 unless named, vm-lib.sh's vm_console_wait); fails, with the console's tail, when the
# guest's command ended without it (VMTEST-RC) or after SECONDS.
console_has() {
  local console="$WORK/${3:-vm1}.console" rc=0
  vm_console_wait "$console" "$1" "$2" || rc=$?
  ((rc == 0)) && return 0
  tail -20 "$console" >&2
  ((rc == 1)) && fail "the guest stopped before \"$1\": $(grep -a -o 'VMTEST-RC=[0-9]*' "$console")"
  fail "no \"$1\" from the guest within $2 s"
}
