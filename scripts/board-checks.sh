#!/bin/bash
# Runs INSIDE the emulated ZCU102 board (scripts/board-demo.sh boots it): a 4 x Cortex-A53
# aarch64 Linux with KVM, the repository mounted read-only at the current directory and
# the host's output folder at $BOARD_OUT. The cross-built vswitchd on configs/zcu102-4vm.toml
# (one vhost-user endpoint per core), four arm64 KVM guests on its endpoints, then:
#   kvm         /dev/kvm exists (the kernel booted at EL2)
#   switch      vswitchd brings up its four endpoints
#   guests      four guests boot, reach each other and finish their script (rc 0)
#   ping        every guest pings every other (12 ordered pairs, no loss)
#   iperf-ref   iperf3 TCP vm0 -> vm1 alone (the reference scenario)
#   iperf-pairs iperf3 TCP --bidir over the 6 pairs (3 rounds of 2 disjoint pairs)
#   kill        kill -9 of vm2's endpoint while vm0 pings vm2: vswitchd restarts it, QEMU
#               reconnects, the pings resume within the guest's 20 s window
#   chains      no bad descriptor chain or vhost-user protocol error on any endpoint
#   isolation   every endpoint runs as its own uid (60600 + index) under a seccomp filter
#   syscalls    after all the traffic above, no endpoint was refused a system call
#   stress      shm_ring_lost_wakeup_test and shm_ring_two_process_test on the 4 vCPUs
#   seccomp     vswitch_syscall_filter_test: the allow-list on this arm64 kernel
#   soak        (with BOARD_SOAK) scripts/soak-vm.sh with four guests
# One "BOARD-CHECK <name> PASS|FAIL <figures>" line per check on the console and in
# $BOARD_OUT/results.txt; the last line is "BOARD-STATUS PASS" or "BOARD-STATUS FAIL <n>".
# Settings come from $BOARD_OUT/board.env (written by the host):
#   BOARD_SECONDS (iperf3 duration), BOARD_SCALE (VSWITCH_STRESS_SCALE), BOARD_SOAK
#   (soak duration, empty: none), BOARD_SOAK_CMD (the soak command line), BOARD_BIN,
#   BOARD_ONLY_SOAK=1 (only the kvm check and the soak).
set -uo pipefail
out=${BOARD_OUT:-/out}
# shellcheck disable=SC1091  # written by the host at run time
. "$out/board.env"
bin=$BOARD_BIN
cfg=configs/zcu102-4vm.toml
work=$out/guests
mkdir -p "$work"
results=$out/results.txt
: >"$results"
failed=0
daemon_pid=""
qemus=()

say() { echo "BOARD: $*"; }
check() {  # check NAME PASS|FAIL FIGURES...
  local name=$1 verdict=$2; shift 2
  [[ $verdict == PASS ]] || failed=$((failed + 1))
  echo "BOARD-CHECK $name $verdict $*" | tee -a "$results"
}
cleanup() {
  for p in "${qemus[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${qemus[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $daemon_pid ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
finish() {
  cleanup
  qemus=() daemon_pid=""
  if ((failed == 0)); then echo "BOARD-STATUS PASS" | tee -a "$results"; exit 0; fi
  echo "BOARD-STATUS FAIL $failed" | tee -a "$results"
  exit 1
}
ctl() { "$bin/vswitchctl" --config "$cfg" "$@"; }
ports_json() { ctl ports --json 2>/dev/null; }
endpoint_pid() {  # endpoint_pid NAME
  ports_json | python3 -c "
import json, sys
print(next(p['pid'] for p in json.load(sys.stdin)['ports'] if p['name'] == '$1'))"
}
endpoints_up() { [[ $(ctl ports 2>/dev/null | awk '$4 == "up"' | wc -l) -eq 4 ]]; }
# wait_until SECONDS COMMAND...: polls COMMAND every 0.5 s; 1 if it never succeeded.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

say "aarch64 board: $(nproc) CPUs ($(grep -m1 'CPU part' /proc/cpuinfo | tr -d '\t')), $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB, kernel $(uname -r)"
say "figures below are functional: every CPU here is emulated (TCG) and the guests run under nested KVM"
hyp=$(dmesg | grep -E "started at EL2|Hyp mode initialized" | sed 's/^\[[^]]*\] //' | tr '\n' ';')
if [[ -c /dev/kvm ]]; then check kvm PASS "/dev/kvm present; $hyp"; else check kvm FAIL "no /dev/kvm; $hyp"; finish; fi

run_soak() {
  [[ -n ${BOARD_SOAK:-} ]] || return 0
  say "soak: $BOARD_SOAK_CMD"
  local t0=$SECONDS
  if bash -c "$BOARD_SOAK_CMD" >"$out/soak.log" 2>&1; then
    check soak PASS "$((SECONDS - t0)) s: $(grep -E "^soak-vm: (ping|passed)|summary" "$out/soak.log" | tail -4 | tr '\n' ' ')"
  else
    check soak FAIL "$((SECONDS - t0)) s: $(tail -5 "$out/soak.log" | tr '\n' ' ')"
  fi
}
if [[ ${BOARD_ONLY_SOAK:-0} == 1 ]]; then
  say "--only-soak: the switch, guest and stress checks are skipped"
  run_soak
  finish
fi

# vswitchd creates /run/vswitch, where configs/zcu102-4vm.toml puts the sockets.
"$bin/vswitchd" --config "$cfg" 2>"$out/vswitchd.log" &
daemon_pid=$!
if wait_until 60 endpoints_up; then
  check switch PASS "4 vhost-user endpoints up on cores 0-3: $(ctl ports | tail -n +2 | awk '{printf "%s(core %s) ", $1, $3}')"
  iso="" iso_bad=0
  for i in 0 1 2 3; do
    p=$(endpoint_pid "vm$i")
    u=$(awk '$1 == "Uid:" {print $2 "/" $3 "/" $4 "/" $5}' "/proc/$p/status")
    f=$(awk '$1 == "Seccomp:" {print $2}' "/proc/$p/status")
    iso+="vm$i uid=$u seccomp=$f "
    [[ $u == "$((60600 + i))/$((60600 + i))/$((60600 + i))/$((60600 + i))" && $f == 2 ]] || iso_bad=1
  done
  [[ $iso_bad == 0 ]] && check isolation PASS "$iso" || check isolation FAIL "$iso(expected uid 60600+i, seccomp 2)"
else
  check switch FAIL "endpoints not up within 60 s: $(tail -5 "$out/vswitchd.log" | tr '\n' ' ')"
  finish
fi

# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh
secs=${BOARD_SECONDS:-3}
guest_ip() { echo "10.0.4.$(($1 + 1))"; }
# The guests' script (busybox sh). Phases are kept in step by barriers: each guest serves
# a file per phase it reached (busybox httpd) and polls its peers for it.
guest_script() {  # guest_script INDEX
  cat <<EOF
me=$1; secs=$secs
peer() { echo 10.0.4.\$((\$1 + 1)); }
now() { cut -d. -f1 /proc/uptime; }
mkdir -p /www && httpd -p 8080 -h /www || exit 2
iperf3 -s -D || exit 3
mark() { touch /www/\$1; echo "GUEST-MARK \$1"; }
# barrier NAME LIMIT [last]: in the last one, a peer that answers no more has passed it
# and powered off (its exit status is checked by the board), so it counts as there. Each
# poll is cut off after 10 s (timeout: Debian's busybox wget has no -T): a peer that powers
# off between accepting the request and answering it would leave wget waiting forever.
barrier() {
  mark \$1; end=\$((\$(now) + \$2))
  for j in 0 1 2 3; do
    [ \$j = \$me ] && continue
    until timeout 10 wget -q -O /dev/null http://\$(peer \$j):8080/\$1 2>/dev/null ||
          { [ "\$3" = last ] && ! ping -c 3 -W 2 \$(peer \$j) >/dev/null 2>&1; }; do
      [ \$(now) -lt \$end ] || { echo "GUEST-FAIL barrier \$1 waiting for vm\$j"; exit 20; }
      sleep 1
    done
  done
}
end=\$((\$(now) + 300))
for j in 0 1 2 3; do
  [ \$j = \$me ] && continue
  until ping -c1 -W1 \$(peer \$j) >/dev/null 2>&1; do
    [ \$(now) -lt \$end ] || { echo "GUEST-FAIL vm\$j unreachable"; exit 21; }
  done
done
barrier up 300
# A guest kernel starved by the emulation can miss a whole 5-ping run: up to 3 runs.
for j in 0 1 2 3; do
  [ \$j = \$me ] && continue
  for try in 1 2 3; do
    r=\$(ping -c 5 -i 0.2 -W 3 \$(peer \$j) 2>&1 | tail -2 | tr '\n' ' ')
    case "\$r" in *" 0% packet loss"*) break ;; esac
  done
  echo "GUEST-PING vm\$me->vm\$j runs=\$try \$r"
done
barrier pinged 600
if [ \$me = 0 ]; then
  mark ref-start
  iperf3 -c \$(peer 1) -t \$secs -f m >/tmp/ref.txt 2>&1; rc=\$?
  mark ref-end
  echo "GUEST-IPERF-REF rc=\$rc \$(grep -E 'receiver\$' /tmp/ref.txt)"
fi
barrier ref 900
mark pairs-start
# Every unordered pair once, iperf3 --bidir: 3 rounds of 2 disjoint pairs (partner = me
# XOR round: 0-1 2-3, 0-2 1-3, 0-3 1-2), the lower index the client, a barrier per round.
for r in 1 2 3; do
  j=\$((me ^ r))
  if [ \$me -lt \$j ]; then
    end=\$((\$(now) + 300)); rc=1
    while [ \$(now) -lt \$end ]; do
      iperf3 -c \$(peer \$j) --bidir -t \$secs -f m >/tmp/pair.txt 2>&1 && { rc=0; break; }
      sleep 1
    done
    mb() { grep "\$1.*receiver" /tmp/pair.txt | grep -o "[0-9.]* Mbits/sec" | cut -d' ' -f1; }
    echo "GUEST-IPERF vm\$me-vm\$j rc=\$rc \$(mb TX-C) \$(mb RX-C) \$(tail -1 /tmp/pair.txt)"
  fi
  barrier round\$r 900
done
barrier paired 1200
if [ \$me = 0 ]; then
  # vm2's endpoint is killed while these pings run; the last 5 must pass.
  # Straight to the console (a tty: one line per reply, which the board counts).
  echo "GUEST-MARK kill-pinging"
  ping -c 100 -i 0.2 -W 1 \$(peer 2)
  ping -c 5 -i 0.2 -W 2 \$(peer 2) >/tmp/after.txt 2>&1; rc=\$?
  echo "GUEST-KILL-AFTER rc=\$rc \$(tail -2 /tmp/after.txt | tr '\n' ' ')"
fi
barrier killed 900
barrier done 600 last
exit 0
EOF
}

# The guest's command travels base64-encoded on its kernel command line (vm.cmd64), which
# holds at most 2048 bytes on arm64 (COMMAND_LINE_SIZE): the script goes gzipped, without
# its comments, behind a one-line unpacker.
guest_cmd() {  # guest_cmd INDEX
  echo "echo $(guest_script "$1" | grep -v '^ *#' | gzip -9 | base64 -w0) | base64 -d | gunzip >/tmp/g.sh && sh /tmp/g.sh"
}

# CPU of the endpoints and the guests' QEMU processes: utime + stime from /proc/PID/stat.
hz=$(python3 -c 'import os; print(os.sysconf("SC_CLK_TCK"))')
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A snap_t snap_cpu
snap() {  # snap NAME: the time and the CPU ticks of every endpoint and QEMU now
  local row
  row=$(ports_json | python3 -c '
import json, sys
def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0
try:
    eps = {p["name"]: p["pid"] for p in json.load(sys.stdin)["ports"]}
except ValueError:
    eps = {}
qemus = sys.argv[1:] + ["0"] * 4
t = open("/proc/uptime").read().split()[0]
print(t, " ".join("%d %d" % (ticks(eps.get("vm%d" % i, 0)), ticks(qemus[i])) for i in range(4)))' "${qemus[@]}")
  snap_t[$1]=${row%% *}
  snap_cpu[$1]=${row#* }
  echo "$1 $row" >>"$out/cpu-snapshots.txt"
}
cpu_between() {  # cpu_between A B LABEL: % of one CPU per process over the interval
  python3 - "${snap_t[$1]}" "${snap_t[$2]}" "${snap_cpu[$1]}" "${snap_cpu[$2]}" "$hz" "$3" <<'PY'
import sys
t0, t1, a, b, hz, label = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5]), sys.argv[6]
dt = max(t1 - t0, 1e-3)
parts = []
for i in range(4):
    ep = (int(b[2 * i]) - int(a[2 * i])) / hz / dt * 100
    qm = (int(b[2 * i + 1]) - int(a[2 * i + 1])) / hz / dt * 100
    parts.append(f"vm{i}: endpoint {ep:.0f}% qemu {qm:.0f}%")
print(f"cpu during {label} ({dt:.1f} s, % of one board CPU): " + ", ".join(parts))
PY
}
console() { tr -d '\r' <"$work/$1.console"; }
has() { grep -aq -- "$2" "$work/$1.console"; }
all_have() { local i; for i in 0 1 2 3; do has "vm$i" "$1" || return 1; done; }
any_has() { local i; for i in 0 1 2 3; do has "vm$i" "$1" && return 0; done; return 1; }
guest_failed() { any_has "VMTEST-RC=[1-9]"; }

say "booting 4 arm64 guests (KVM, ${VM_MEM:-256} MiB, 1 vCPU each) on /run/vswitch/vm0-3.sock"
export VM_ARCH=arm64 VM_ACCEL=kvm VM_MEM=${VM_MEM:-256} VM_SMP=1 VM_QEMU=qemu-system-aarch64
boot_t=$SECONDS
for i in 0 1 2 3; do
  cmd=$(guest_cmd "$i")
  if ((${#cmd} * 4 / 3 > 1800)); then
    check guests FAIL "vm$i: its command is ${#cmd} bytes, too long for the kernel command line"
    finish
  fi
  if ! vm_boot "$work" "vm$i" "52:54:00:00:04:0$i" "$(guest_ip "$i")" "$cmd" "$(vhost_netdev "/run/vswitch/vm$i.sock")"; then
    check guests FAIL "vm$i: vm_boot failed"
    finish
  fi
  qemus+=("$VM_PID")
done
snap boot
# step LIMIT DESCRIPTION COMMAND...: waits for a phase; on timeout or a failed guest the
# remaining guest checks fail and the run moves on to the stress tests.
guests_ok=1
step() {
  local limit=$1 what=$2; shift 2
  ((guests_ok)) || return 1
  local deadline=$((SECONDS + limit)) beat=$((SECONDS + 60))
  until "$@"; do
    if ((SECONDS >= beat)); then
      beat=$((SECONDS + 60))
      say "waiting for $what, $((SECONDS - boot_t)) s after boot; console bytes / QEMU CPU s: $(for i in 0 1 2 3; do
        echo -n "vm$i $(wc -c <"$work/vm$i.console") / $(($(ticks "${qemus[$i]}") / hz))  "; done)"
    fi
    if guest_failed || ((SECONDS >= deadline)); then
      guests_ok=0
      say "guests: gave up waiting for $what ($((SECONDS - boot_t)) s after boot)"
      for i in 0 1 2 3; do echo "--- vm$i console (tail)"; console "vm$i" | tail -15; done
      return 1
    fi
    sleep 1  # polling period: every poll costs the emulated board CPU the guests need
  done
}
if step 1200 "every guest to reach the others" all_have "GUEST-MARK up"; then
  say "guests up and reachable $((SECONDS - boot_t)) s after boot"
fi
step 600 "pings" all_have "GUEST-MARK pinged"
pings=$(for i in 0 1 2 3; do console "vm$i" | grep "^GUEST-PING"; done)
[[ -n $pings ]] && echo "$pings" | sed 's/^GUEST-PING /  ping /'
nping=$(grep -c " 0% packet loss" <<<"$pings" || true)
rtts=$(grep -o "min/avg/max = [0-9./]*" <<<"$pings" | awk -F'[ /]' '{print $6}' | sort -n | tr '\n' ' ')
retried=$(grep -c "runs=[23]" <<<"$pings" || true)
stalls=$(for i in 0 1 2 3; do console "vm$i"; done | grep -cE "soft lockup|rcu_sched self-detected stall" || true)
if [[ $nping == 12 ]]; then
  check ping PASS "12/12 ordered pairs, 5 pings without loss ($retried pairs needed a second or third run; the guests' kernels reported $stalls CPU stalls), rtt avg per pair (ms): $rtts"
else
  check ping FAIL "$nping/12 ordered pairs answered 5 pings without loss in 3 runs (the guests' kernels reported $stalls CPU stalls)"
fi

step 600 "the reference iperf3" has vm0 "GUEST-MARK ref-start" && snap ref0
step $((secs + 600)) "the reference iperf3 to end" has vm0 "GUEST-MARK ref-end" && snap ref1
ref=$(console vm0 | grep "^GUEST-IPERF-REF" || true)
ref_mbps=$(grep -oE "[0-9.]+ Mbits/sec" <<<"$ref" | awk '{print $1}' | head -1)
if [[ $ref == *rc=0* && -n $ref_mbps ]]; then
  check iperf-ref PASS "vm0 -> vm1 ${ref_mbps} Mbit/s for ${secs} s (TCG board, nested KVM)"
  cpu_between ref0 ref1 "iperf3 vm0 -> vm1" | sed 's/^/BOARD-FIGURE /' | tee -a "$results"
else
  check iperf-ref FAIL "${ref:-no result}"
fi

step 600 "the pairs to start" any_has "GUEST-MARK pairs-start" && snap pairs0
step $((3 * secs + 1800)) "iperf3 over every pair" all_have "GUEST-MARK paired" && snap pairs1
pairs=$(for i in 0 1 2 3; do console "vm$i" | grep "^GUEST-IPERF vm"; done)
# "GUEST-IPERF vmA-vmB rc=0 A->B B->A ...": Mbit/s received each way
npairs=$(awk '$3 == "rc=0" && $4 ~ /^[0-9.]+$/ && $5 ~ /^[0-9.]+$/' <<<"$pairs" | wc -l)
rates=$(awk '{ split($2, v, "-"); printf "%s->%s %s, %s->%s %s, ", v[1], v[2], $4, v[2], v[1], $5 }' <<<"$pairs")
if [[ $npairs == 6 ]]; then
  check iperf-pairs PASS "6/6 pairs, iperf3 --bidir ${secs} s, 2 pairs at a time (Mbit/s): ${rates%, }"
  cpu_between pairs0 pairs1 "iperf3 over the 6 pairs" | sed 's/^/BOARD-FIGURE /' | tee -a "$results"
else
  check iperf-pairs FAIL "$npairs/6 pairs: ${rates%, }; $(grep -v 'rc=0' <<<"$pairs" | tr '\n' ' ')"
fi

# kill -9 of vm2's endpoint while vm0 pings vm2 (at least 5 replies through it first).
kill_ok=0
if step 600 "vm0 to start the kill pings" has vm0 "GUEST-MARK kill-pinging"; then
  pings_seen() { console vm0 | sed -n '/GUEST-MARK kill-pinging/,$p' | grep -c "seq=" | awk '{exit !($1 >= 5)}'; }
  wait_until 60 pings_seen || say "vm0 saw no reply from vm2 before the kill"
  victim=$(endpoint_pid vm2)
  kill -9 "$victim"
  kill_t=$SECONDS
  restarted() { local p; p=$(endpoint_pid vm2) && [[ $p != "$victim" ]] && endpoints_up; }
  if wait_until 30 restarted; then
    say "vm2's endpoint (pid $victim) killed; restarted as pid $(endpoint_pid vm2) within $((SECONDS - kill_t)) s"
    kill_ok=1
  fi
fi
step 600 "vm0's pings after the kill" has vm0 "GUEST-KILL-AFTER"
after=$(console vm0 | grep "^GUEST-KILL-AFTER" || true)
during=$(console vm0 | sed -n '/GUEST-MARK kill-pinging/,$p' | grep -m1 "packets transmitted" || true)
if ((kill_ok)) && [[ $after == *rc=0* ]] && grep -q "killed by signal 9" "$out/vswitchd.log"; then
  check kill PASS "endpoint restarted, QEMU reconnected, pings resumed; during: $during"
else
  check kill FAIL "restarted=$kill_ok after: ${after:-none}; during: ${during:-none}"
fi

step 600 "the guests to finish" all_have "VMTEST-RC="
rcs=$(for i in 0 1 2 3; do echo -n "vm$i=$(vm_rc "$work" "vm$i" 1 || echo none) "; done)
if ((guests_ok)) && [[ $(grep -o "=0 " <<<"$rcs" | wc -l) -eq 4 ]]; then
  check guests PASS "4 guests booted, ran every phase and finished (rc: $rcs)"
else
  check guests FAIL "rc: $rcs"
fi
for p in "${qemus[@]}"; do wait "$p" 2>/dev/null || true; done
qemus=()

stats=$(ctl stats --json)
bad=$(python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(e.get("vu_bad_chains", 0) + e.get("vu_protocol_errors", 0) for e in d["endpoints"]))' <<<"$stats")
traffic=$(python3 -c '
import json, sys
d = json.load(sys.stdin)
out = []
for e in d["endpoints"]:
    reasons = " ".join("%s=%d" % (k, v) for k, v in sorted(e.get("drops", {}).items()) if v)
    out.append("%s rx %.1f MB tx %.1f MB drops %d%s" % (e["name"], e["rx_bytes"] / 1e6, e["tx_bytes"] / 1e6,
                                                       e["drops_total"], " (" + reasons + ")" if reasons else ""))
print(", ".join(out))' <<<"$stats")
[[ $bad == 0 ]] && check chains PASS "0 bad chains / protocol errors; $traffic" || check chains FAIL "$bad bad chains / protocol errors; $traffic"
refused=$(grep -cE 'seccomp refused|Bad system call' "$out/vswitchd.log")
[[ $refused == 0 ]] && check syscalls PASS "no endpoint refused a system call (vswitchd.log)" ||
  check syscalls FAIL "$refused refusals: $(grep -E 'seccomp refused|Bad system call' "$out/vswitchd.log" | head -3 | tr '\n' ' ')"
ctl stats >"$out/stats.txt" 2>&1 || true
kill -INT "$daemon_pid" 2>/dev/null || true
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=""

for t in shm_ring_lost_wakeup_test shm_ring_two_process_test; do
  t0=$SECONDS
  if VSWITCH_STRESS_SCALE=$BOARD_SCALE timeout 900 "$bin/$t" >"$out/$t.log" 2>&1; then
    check "stress-${t#shm_ring_}" PASS "$(grep -cE '^\[       OK \]' "$out/$t.log") tests, scale $BOARD_SCALE, $((SECONDS - t0)) s on 4 vCPUs"
  else
    check "stress-${t#shm_ring_}" FAIL "scale $BOARD_SCALE, $((SECONDS - t0)) s: $(grep -E 'FAILED|Failure|error' "$out/$t.log" | head -3 | tr '\n' ' ')"
  fi
done

t0=$SECONDS
if timeout 300 "$bin/vswitch_syscall_filter_test" >"$out/vswitch_syscall_filter_test.log" 2>&1 &&
   ! grep -q SKIPPED "$out/vswitch_syscall_filter_test.log"; then
  check seccomp PASS "$(grep -cE '^\[       OK \]' "$out/vswitch_syscall_filter_test.log") tests, $((SECONDS - t0)) s"
else
  check seccomp FAIL "$(grep -E 'FAILED|Failure|SKIPPED|error' "$out/vswitch_syscall_filter_test.log" | head -3 | tr '\n' ' ')"
fi

run_soak
finish
