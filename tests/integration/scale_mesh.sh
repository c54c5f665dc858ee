#!/usr/bin/env bash
# The full mesh at size: 32 and then 62 TAP endpoints (62: the size of the largest seL4
# switch we compare with), each in its own namespace, with the default ring size. Each
# switch must start, forward between every ordered pair (fping from every namespace to
# every other: N*(N-1) request/reply exchanges, each first one behind a flooded ARP), drop
# nothing, and then sit idle: each endpoint asleep but for the watchdog's ring (at most 1.75
# wake-ups in 5 s on average), vswitchd for its looks (at most 10), and all its processes together
# under 5% of one core (the 1% target is reported, not asserted: see the check).
# Prints the mesh's shared memory: what the channels reserve and what traffic touched.
#   VSWITCH_SCALE_SIZES="32 62" (default) chooses the sizes.
source "$(dirname "$0")/lib.sh"
require_root
command -v fping >/dev/null || fail "fping is missing (scripts/setup.sh installs it)"
sizes=${VSWITCH_SCALE_SIZES:-"32 62"}
cores=$(nproc)

# The kernel's ARP table is one table for every namespace: 62 namespaces resolving 61
# neighbours each hold 3782 entries, past the default hard limit (gc_thresh3 = 1024,
# "neighbor table overflow" in the kernel log, the echo reported as Host Unreachable).
# Raise it while the test runs; the EXIT trap puts the old values back.
neigh=net.ipv4.neigh.default
old_thresh=$(sysctl -n "$neigh.gc_thresh2" "$neigh.gc_thresh3" | paste -sd' ')
restore_thresh() {
  read -r t2 t3 <<<"$old_thresh"
  sysctl -qw "$neigh.gc_thresh3=$t3" "$neigh.gc_thresh2=$t2" || true
}
trap 'cleanup; restore_thresh' EXIT
sysctl -qw "$neigh.gc_thresh3=8192" "$neigh.gc_thresh2=8192"

# snapshot PID...: a line "RUN_NS SLEEPS" per process, in the order given, each summed over
# the process's threads: RUN_NS from schedstat's first field (nanoseconds run, exact:
# tick-based utime would round 63 nearly idle processes to nothing or to a tick each),
# SLEEPS its voluntary context switches (each wake-up of an idle thread ends in one). One
# awk reads every file, so the window measured is not stretched by a fork per process.
snapshot() {
  local pid files=()
  for pid in "$@"; do files+=("/proc/$pid/task/"*/schedstat "/proc/$pid/task/"*/status); done
  awk -v order="$*" '
    { split(FILENAME, part, "/"); pid = part[3] }
    FILENAME ~ /schedstat$/ { run[pid] += $1; next }
    /^voluntary_ctxt_switches:/ { sleeps[pid] += $2 }
    END { n = split(order, o, " "); for (i = 1; i <= n; i++) print run[o[i]] + 0, sleeps[o[i]] + 0 }' "${files[@]}"
}

one_size() {
  local n=$1 i name ip
  local sw="vsms$n"
  CONFIG=$WORK/mesh$n.toml
  {
    printf '[switch]\nname = "%s"\n' "$sw"
    for ((i = 1; i <= n; i++)); do
      name=$(printf 'e%02d' "$i")
      printf '\n[[endpoint]]\nname = "%s"\ncore = %d\nmac = "02:00:00:00:0d:%02x"\nfrontend = "tap"\n' \
        "$name" $((i % cores)) "$i"
      [[ -n ${SCALE_EP_EXTRA:-} ]] && printf '%s\n' "$SCALE_EP_EXTRA"
      printf '[endpoint.tap]\nifname = "vsms-%s"\nnetns = "vsms-%s"\n' "$name" "$name"
    done
  } >"$CONFIG"
  for ((i = 1; i <= n; i++)); do
    name=$(printf 'e%02d' "$i")
    add_netns "vsms-$name" "vsms-$name" "$(printf '02:00:00:00:0d:%02x' "$i")" "10.79.0.$i"
  done

  "$BIN/vswitchd" --config "$CONFIG" 2>"$WORK/vswitchd.log" &
  DAEMON_PID=$!
  local t0=$SECONDS
  wait_for 120 "all $n endpoints up" all_up
  echo "$n endpoints: all up in $((SECONDS - t0)) s"

  local channels reserved touched
  channels=$(find /dev/shm -maxdepth 1 -name "vswitch.$sw.e*-e*" | wc -l)
  ((channels == n * (n - 1))) || fail "$channels channels in /dev/shm, expected $((n * (n - 1)))"

  # Every ordered pair: fping sends to all the others from each namespace and exits 0 only
  # when every target answered (3 tries each, 1 ms apart, ARP resolved on the way).
  local targets=() unanswered=0 out
  for ((i = 1; i <= n; i++)); do targets+=("10.79.0.$i"); done
  t0=$SECONDS
  for ((i = 1; i <= n; i++)); do
    name=$(printf 'e%02d' "$i")
    if ! out=$(ip netns exec "vsms-$name" fping -q -r 3 -t 500 -i 1 "${targets[@]:0:i-1}" "${targets[@]:i}" 2>&1); then
      echo "$out" | head -5 >&2
      unanswered=$((unanswered + 1))
    fi
  done
  # Every drop has a reason: name them (endpoint:reason=count) whether or not pings failed.
  local drops
  drops=$(ctl stats --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
print(' '.join(f\"{e['name']}:{r}={c}\" for e in d['endpoints'] for r, c in e['drops'].items() if c))")
  ((unanswered == 0)) || fail "$unanswered of $n namespaces did not reach every other one (drops: ${drops:-none})"
  [[ -z $drops ]] || fail "drops during the pings: $drops"
  echo "$n endpoints: all $((n * (n - 1))) ordered pairs answered in $((SECONDS - t0)) s"

  reserved=$(find /dev/shm -maxdepth 1 -name "vswitch.$sw.e*-e*" -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s / 1048576}')
  touched=$(find /dev/shm -maxdepth 1 -name "vswitch.$sw.e*-e*" -printf '%b\n' | awk '{s += $1} END {printf "%.1f", s * 512 / 1048576}')
  echo "$n endpoints: mesh of $channels channels reserves $reserved MiB of /dev/shm; traffic so far touched $touched MiB"

  # The namespaces go quiet only once their kernels stop confirming neighbours: an entry
  # learned from an ARP request and then used for the echo reply is re-probed (unicast)
  # 5 s later (delay_first_probe_time); 3782 probes are traffic, not idle.
  arp_settled() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
      ! ip -n "$ns" neigh show | grep -qE 'DELAY|PROBE|INCOMPLETE' || return 1
    done
  }
  wait_for 60 "every namespace's neighbour entries to settle" arp_settled

  # Idle: whatever the pings taught the poll windows, the first sleep ends them. The
  # watchdog rings each endpoint after 5 s without a heartbeat; vswitchd reads the stats.
  local pids=("$DAEMON_PID") pid
  while read -r pid; do pids+=("$pid"); done < <(ctl ports --json | python3 -c "
import json, sys
for p in json.load(sys.stdin)['ports']: print(p['pid'])")
  ((${#pids[@]} == n + 1)) || fail "expected $n endpoint processes, found $((${#pids[@]} - 1))"
  local ns0 ns1 start end pct
  local before=() after=() top line
  local sl_before=() sl_after=()
  start=$(date +%s.%N)
  while read -r line; do before+=("${line% *}"); sl_before+=("${line#* }"); done < <(snapshot "${pids[@]}")
  sleep 5  # the idle interval being measured, not a wait for an event
  while read -r line; do after+=("${line% *}"); sl_after+=("${line#* }"); done < <(snapshot "${pids[@]}")
  end=$(date +%s.%N)
  ((${#before[@]} == n + 1 && ${#after[@]} == n + 1)) || fail "could not read every process's counts from /proc"
  ns0=0 ns1=0
  for i in "${!pids[@]}"; do ns0=$((ns0 + before[i])) ns1=$((ns1 + after[i])); done
  top=$(for i in "${!pids[@]}"; do echo "$((after[i] - before[i])) $(tr -d '\0' <"/proc/${pids[i]}/comm")"; done |
    sort -rn | head -4 | awk '{printf "%s %.2f ms, ", $2, $1 / 1e6}')
  echo "$n endpoints: the busiest while idle: ${top%, }"
  pct=$(python3 -c "print(round(100 * ($ns1 - $ns0) / 1e9 / ($end - $start), 3))")
  echo "$n endpoints: idle CPU $pct% of one core (vswitchd and $n endpoints together)"
  # Idle means asleep: each endpoint wakes once per ring of the watchdog (after 5 s
  # without a heartbeat, seen at its next look, every 1.25 s: a ring every 6.25 s), so
  # about 0.8 times in these 5 s (0.75 and 0.87 measured here, at 32 and 62), and vswitchd
  # once per look (4). That is what is asserted, with room: at most 1.75 wake-ups per
  # endpoint (a timer of every endpoint's own, at the 2.5 s the watchdog once needed, makes
  # 2 to 3: 96 at 32 endpoints, measured). What a wake-up costs is this
  # VM's: nearly all of it is the paravirtualised kernel's (perf: pvm_irq_enable in the
  # scheduler's path), and the same code has measured 0.36% to 1.9% of a core idle at 62
  # endpoints as the VM's placement changed, so the CPU figure is bounded only loosely,
  # against work that would not be a wake-up's (a spin, a timer, work that grows with
  # the mesh on every wake-up).
  local woke=0
  for ((i = 1; i < ${#pids[@]}; i++)); do woke=$((woke + sl_after[i] - sl_before[i])); done
  local daemon_woke=$((sl_after[0] - sl_before[0]))
  echo "$n endpoints: idle wake-ups in 5 s: $woke for the $n endpoints, $daemon_woke for vswitchd"
  ((4 * woke <= 7 * n)) || fail "$n endpoints woke $woke times in 5 s idle (at most $((7 * n / 4)))"
  ((daemon_woke <= 10)) || fail "vswitchd woke $daemon_woke times in 5 s idle (at most 10)"
  python3 -c "import sys; sys.exit(0 if $pct <= 5.0 else 1)" || fail "$n endpoints idle at $pct% of a core (at most 5%)"

  stop_daemon
  local left
  left=$(find /dev/shm -maxdepth 1 -name "vswitch.$sw.*" | wc -l)
  ((left == 0)) || fail "$left shared-memory objects left behind after vswitchd stopped"
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NAMESPACES=()
  pass "$n endpoints: start, every pair forwards, nothing dropped, idle: $woke + $daemon_woke wake-ups in 5 s, $pct% of a core"
}

for n in $sizes; do
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 2 && n <= 62)) || fail "VSWITCH_SCALE_SIZES: $n is not 2..62"
  one_size "$n"
done
