#!/usr/bin/env bash
# The installed vswitchd@.service under the real systemd (root): systemd 252 runs as PID 1
# of private PID, mount, network and UTS namespaces (its own tmpfs on /run), with only
# this test's units. A drop-in points the instance at a generator topology in the test's
# folder and its output at a file; everything else is the installed unit as it is.
# `systemctl start` (Type=notify) must return only once every endpoint is up; `reload`
# keeps the same processes and logs "unchanged"; `stop` (KillMode=mixed) lets vswitchd
# stop its endpoints and remove its shared memory, exit 0.
source "$(dirname "$0")/lib.sh"
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root (namespaces for a private systemd)"; exit 77; fi
SYSTEMD=/lib/systemd/systemd
[[ -x $SYSTEMD ]] || fail "$SYSTEMD is missing (scripts/setup.sh installs systemd)"
SD_PID=""
UNSHARE_PID=""
# Killing the namespace's PID 1 ends every process in it.
stop_systemd() {
  if [[ -n $SD_PID ]]; then kill -9 "$SD_PID" 2>/dev/null || true; fi
  if [[ -n $UNSHARE_PID ]]; then wait "$UNSHARE_PID" 2>/dev/null || true; fi
  cleanup
}
trap stop_systemd EXIT

build=$(dirname "$BIN")
prefix="$WORK/prefix"
cmake --install "$build" --prefix "$prefix" >"$WORK/install.log" 2>&1 || fail "cmake --install: $(cat "$WORK/install.log")"
units="$WORK/units"
mkdir -p "$units/vswitchd@.service.d"
cp "$prefix/lib/systemd/system/vswitchd@.service" "$units/"
instance="itsd$$"
cat >"$units/vswitchd@.service.d/test.conf" <<EOF2
[Unit]
ConditionPathExists=
[Service]
ExecStart=
ExecStart=$prefix/bin/vswitchd --config $WORK/%i.toml
StandardError=append:$WORK/vswitchd.log
EOF2
# Empty stand-ins for the targets a service's default dependencies name.
for t in vswtest sysinit basic shutdown network-pre; do
  printf '[Unit]\nDescription=%s (test stand-in)\n' "$t" >"$units/$t.target"
done
CONFIG="$WORK/$instance.toml"
sed "s/^name = \"gen\"$/name = \"$instance\"/" "$ROOT/configs/generator.toml" >"$CONFIG"
grep -q "name = \"$instance\"" "$CONFIG" || fail "could not rename the switch"

SYSTEMD_UNIT_PATH="$units" unshare --fork --pid --mount --mount-proc --net --uts \
  bash -c "mount -t tmpfs -o mode=0755 tmpfs /run && exec $SYSTEMD --system --unit=vswtest.target" \
  >"$WORK/systemd.log" 2>&1 &
UNSHARE_PID=$!
sd_pid() { SD_PID=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null | awk '{print $1}'); [[ -n $SD_PID ]]; }
wait_for 10 "systemd to start" sd_pid
sctl() { nsenter -t "$SD_PID" -m -p -- systemctl "$@"; }
manager_up() { local s; s=$(sctl is-system-running 2>/dev/null) || true; [[ $s == running || $s == degraded ]]; }
wait_for 30 "the private systemd to be running" manager_up
unit="vswitchd@$instance.service"

# start: returns once READY=1 arrived; by then every endpoint is up.
timeout 60 nsenter -t "$SD_PID" -m -p -- systemctl start "$unit" || fail "systemctl start $unit: $(sctl status "$unit" 2>&1 | tail -20)"
all_up || fail "systemctl start returned before every endpoint was up: $(ctl ports)"
[[ $(sctl is-active "$unit") == active ]] || fail "$unit is $(sctl is-active "$unit")"
status=$(sctl show -p StatusText --value "$unit")
[[ $status == "topology \"$instance\": 2 of 2 endpoints up" ]] || fail "StatusText: $status"
main=$(sctl show -p MainPID --value "$unit")
pids_before="$(pid_of gen1) $(pid_of gen2)"
pass "systemctl start (Type=notify) returns once every endpoint is up; status: $status"

# reload: ExecReload sends SIGHUP; same processes, logged "unchanged", still active.
sctl reload "$unit" || fail "systemctl reload failed"
wait_for 10 "the reload in the log" grep -q "reload: $CONFIG unchanged" "$WORK/vswitchd.log"
[[ $(sctl is-active "$unit") == active ]] || fail "$unit is $(sctl is-active "$unit") after reload"
[[ $(sctl show -p MainPID --value "$unit") == "$main" ]] || fail "vswitchd restarted by reload"
[[ "$(pid_of gen1) $(pid_of gen2)" == "$pids_before" ]] || fail "endpoints restarted by reload"
pass "systemctl reload: SIGHUP, topology unchanged, same processes"

# stop: vswitchd stops its endpoints and removes its shared memory, exit 0.
timeout 60 nsenter -t "$SD_PID" -m -p -- systemctl stop "$unit" || fail "systemctl stop failed"
grep -q "vswitchd: stopped; shared memory removed" "$WORK/vswitchd.log" || fail "vswitchd did not stop cleanly: $(tail -5 "$WORK/vswitchd.log")"
[[ $(sctl show -p Result --value "$unit") == success ]] || fail "Result=$(sctl show -p Result --value "$unit")"
[[ $(sctl show -p ExecMainStatus --value "$unit") == 0 ]] || fail "exit status $(sctl show -p ExecMainStatus --value "$unit")"
grep -q "SIGKILL\|did not stop in" "$WORK/vswitchd.log" && fail "an endpoint had to be killed: $(cat "$WORK/vswitchd.log")"
# The pids are the PID namespace's (vswitchd publishes getpid()): look there.
for p in $pids_before; do
  nsenter -t "$SD_PID" -m -p -- kill -0 "$p" 2>/dev/null && fail "endpoint (pid $p in the namespace) outlived the stop"
done
leftover=$(ls /dev/shm | grep "^vswitch\.$instance\." || true)
[[ -z $leftover ]] || fail "shared memory left: $leftover"
pass "systemctl stop: endpoints stopped by vswitchd, shared memory removed, exit 0"
