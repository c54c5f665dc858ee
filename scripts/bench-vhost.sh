#!/usr/bin/env bash
# Benchmark (not a test): DPDK virtio-user "guests" through vswitch's vhost-user endpoints,
# against the same guests through DPDK's own vhost switching (a third testpmd with two
# net_vhost ports in io forwarding mode), interleaved (A B, B A, ...), for 64 B and 1500 B:
#   testpmd(virtio-user, txonly) -> SWITCH -> testpmd(virtio-user, rxonly)
# Per run: frames delivered per second, loss (frames the sender's queue accepted but the
# receiver never got), and the switch's CPU time per delivered frame (vswitch: its two
# endpoint processes; DPDK: the forwarding testpmd, which busy-polls), from schedstat.
# Per path, once: the switch's idle CPU with both guests attached and silent. Then, unless
# --no-vm: iperf3 TCP between two QEMU guests (TCG, Linux virtio-net) through vswitch and
# through a Linux bridge with TAP netdevs (vhost=off), same guests, interleaved.
#
# The receiver's MAC is in the topology (as a VM's would be), so the sender's frames are
# unicast: vswitch holds them when the receiver is slow (backpressure) instead of losing
# them; DPDK's io forwarding drops what the receiver's ring cannot take.
#
#   scripts/bench-vhost.sh [--rounds N] [--seconds S] [--json] [--no-vm] [--rate FPS]
#                          [--poll-max-us N] [--switch-cores A,B] [--tx-cores A,B] [--rx-cores A,B]
# --poll-max-us N: vswitch's endpoints with poll_max_us = N (the adaptive poll window's
# ceiling; default: the topology's default).
# --rate FPS: the paced mode. The guests are build/bin/vswitch-dpdk-pace instead of testpmd:
# the sender offers FPS frames per second (sleeping between bursts), the receiver sleeps
# 20 us after an empty poll, so neither takes the switch's cores. Both switches are
# compared at that offered rate: loss counts what the sender's queue refused as well as
# what never arrived, and CPU per frame is the switch's at that rate (DPDK's forwarding
# testpmd busy-polls whatever the rate).
# Cores: the two vswitch endpoints (a, b) and the DPDK switch's main + forwarding lcore run
# on --switch-cores; each testpmd guest gets main + forwarding lcore. Defaults for 2 vCPUs:
# switch 0,1, sender 1,0 (polls on 0), receiver 0,1 (polls on 1): everything shares the two
# CPUs, so rates say little and CPU per frame is the figure to compare. On a larger machine
# give each its own cores, e.g. --switch-cores 2,3 --tx-cores 4,5 --rx-cores 6,7.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=5 json=0 vms=1 sw_cores=0,1 tx_cores=1,0 rx_cores=0,1 rate=0 poll_max=""
while (($#)); do
  case "$1" in
    --poll-max-us) poll_max=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --json) json=1; shift ;;
    --no-vm) vms=0; shift ;;
    --switch-cores) sw_cores=$2; shift 2 ;;
    --tx-cores) tx_cores=$2; shift 2 ;;
    --rx-cores) rx_cores=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--json] [--no-vm] [--rate FPS] [--poll-max-us N] [--switch-cores A,B] [--tx-cores A,B] [--rx-cores A,B]" >&2
       exit 2 ;;
  esac
done
for c in "$sw_cores" "$tx_cores" "$rx_cores"; do
  [[ $c =~ ^[0-9]+,[0-9]+$ ]] || { echo "bench-vhost: cores are given as A,B (got '$c')" >&2; exit 2; }
done
[[ -z $poll_max || $poll_max =~ ^[0-9]+$ ]] || { echo "bench-vhost: --poll-max-us takes microseconds (got '$poll_max')" >&2; exit 2; }
[[ $rate =~ ^[0-9]+$ ]] || { echo "bench-vhost: --rate takes frames per second (got '$rate')" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench-vhost: needs root (hugepages, namespaces)" >&2; exit 1; }
scripts/setup.sh >/dev/null
if ((rate)) && [[ ! -x build/bin/vswitch-dpdk-pace ]]; then
  echo "bench-vhost: --rate needs build/bin/vswitch-dpdk-pace (built where pkg-config finds libdpdk)" >&2
  exit 1
fi
((vms)) && scripts/vm-image.sh build/vm >/dev/null
# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh
bin=build/bin
work=$(mktemp -d /tmp/vswitch-bvh.XXXXXX)
hp_before=$(cat /proc/sys/vm/nr_hugepages)
ns=bvh-br$$
pids=()
daemon_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $daemon_pid ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -f /dev/hugepages/bvh*
  echo "$hp_before" >/proc/sys/vm/nr_hugepages
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo $((hp_before + 768)) >/proc/sys/vm/nr_hugepages
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
log() { ((json)) && echo "$*" >&2 || echo "$*"; }

rx_mac=52:54:00:00:0b:0b tx_mac=52:54:00:00:0a:0a
cpu_ns() {  # cpu_ns PID...: CPU time of every thread of these processes, in ns (schedstat)
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/schedstat; do [[ -r $f ]] && t=$((t + $(cut -d' ' -f1 "$f"))); done
  done
  echo $t
}
last() { grep -o "$2: *[0-9]*" "$1" | tail -1 | awk '{print $2}'; }

guest() {  # guest NAME SOCKET MODE SIZE CORES: a testpmd virtio-user "guest"
  local mac=$tx_mac
  [[ $1 == rx ]] && mac=$rx_mac
  stdbuf -oL dpdk-testpmd -l "$5" -n 1 -m 256 --no-pci --single-file-segments --file-prefix "bvh$1$$" \
    --vdev "net_virtio_user0,path=$2,queues=1,queue_size=1024,mac=$mac" -- \
    --forward-mode="$3" --txpkts="$4" --eth-peer="0,$rx_mac" --auto-start --stats-period 1 \
    --total-num-mbufs=16384 >"$work/$1.log" 2>&1 &
  pids+=($!)
}
pace_guest() {  # pace_guest NAME SOCKET CORES ARGS...: a vswitch-dpdk-pace guest on the first core
  local name=$1 sock=$2 cores=$3 mac=$tx_mac
  shift 3
  [[ $name == rx ]] && mac=$rx_mac
  stdbuf -oL "$bin/vswitch-dpdk-pace" -l "${cores%%,*}" -n 1 -m 256 --no-pci --single-file-segments \
    --file-prefix "bvh$name$$" --vdev "net_virtio_user0,path=$sock,queues=1,queue_size=1024,mac=$mac" -- \
    "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
wait_socket() { local d=$((SECONDS + 20)); until [[ -S $1 ]]; do ((SECONDS < d)) || return 1; sleep 0.1; done; }
stop_all() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  if [[ -n $daemon_pid ]]; then kill -INT "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""; fi
}

# vswitch_up CONFIG RING_BYTES MAX_FRAME QUEUE_SIZE NAME1 MAC1 NAME2 MAC2: writes a topology
# of two vhost-user endpoints on --switch-cores (sockets $work/NAME.sock; MAC "-": none),
# starts vswitchd on it and waits for both sockets.
vswitch_up() {
  local cfg=$1 i=0 name mac
  printf '[switch]\nname = "%s"\n[fabric]\nring_bytes = %s\nmax_frame = %s\n' "$(basename "$cfg" .toml)$$" "$2" "$3" >"$cfg"
  for name in "$5" "$7"; do
    mac=$6; ((i == 1)) && mac=$8
    {
      printf '[[endpoint]]\nname = "%s"\ncore = %s\nfrontend = "vhost-user"\n' "$name" "$(cut -d, -f$((i + 1)) <<<"$sw_cores")"
      [[ -n $poll_max ]] && printf 'poll_max_us = %s\n' "$poll_max"
      [[ $mac == - ]] || printf 'mac = "%s"\n' "$mac"
      printf '[endpoint.vhost_user]\nsocket = "%s"\nqueue_size = %s\n' "$work/$name.sock" "$4"
    } >>"$cfg"
    i=$((i + 1))
  done
  "$bin/vswitchd" --config "$cfg" 2>"${cfg%.toml}.log" &
  daemon_pid=$!
  wait_socket "$work/$5.sock"
  wait_socket "$work/$7.sock"
}

start_vswitch() {  # the two endpoints the testpmd guests attach to; sets SWITCH_PIDS
  vswitch_up "$work/vs.toml" 4194304 9000 1024 a - b "$rx_mac"
  SWITCH_PIDS=$("$bin/vswitchctl" --config "$work/vs.toml" ports --json | python3 -c "
import json, sys
print(' '.join(str(p['pid']) for p in json.load(sys.stdin)['ports']))")
}
start_dpdk() {
  stdbuf -oL dpdk-testpmd -l "$sw_cores" -n 1 -m 256 --no-pci --single-file-segments --file-prefix "bvhsw$$" \
    --vdev "net_vhost0,iface=$work/a.sock,queues=1" --vdev "net_vhost1,iface=$work/b.sock,queues=1" -- \
    --forward-mode=io --auto-start --stats-period 1 --total-num-mbufs=16384 >"$work/sw.log" 2>&1 &
  pids+=($!)
  SWITCH_PIDS=$!
  wait_socket "$work/b.sock"
  wait_socket "$work/a.sock"
}

# run, idle and vm_pair leave their result in RESULT (not on stdout: they run in this shell,
# so that the EXIT trap knows every process they started).
run() {  # run PATH SIZE -> RESULT="delivered_fps loss_pct ns_per_frame"
  # The window opens when the sender starts forwarding and closes when it is stopped; the
  # receiver is stopped only once its count has stopped moving, so every frame still on its
  # way is counted as delivered. Totals come from testpmd's final statistics (exact); the
  # switch's CPU time is taken over the window.
  "start_$1"
  guest rx "$work/b.sock" rxonly "$2" "$rx_cores"
  local rx=${pids[-1]}
  sleep 3  # the receiver sets up before the sender starts (part of the scenario)
  guest tx "$work/a.sock" txonly "$2" "$tx_cores"
  local tx=${pids[-1]} deadline=$((SECONDS + 60)) t0 t1 c0 c1 a b
  until grep -q "packet forwarding - ports=" "$work/tx.log"; do
    ((SECONDS < deadline)) || { echo "bench-vhost: the sender did not start" >&2; tail "$work/tx.log" >&2; exit 1; }
    sleep 0.05
  done
  c0=$(cpu_ns $SWITCH_PIDS); t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(cpu_ns $SWITCH_PIDS); t1=$(date +%s.%N)
  kill -INT "$tx"; wait "$tx" || true
  # Drained: two consecutive per-second prints of the receiver show the same count.
  deadline=$((SECONDS + 30))
  while a=$(grep -o "RX-packets: *[0-9]*" "$work/rx.log" | tail -2 | awk '{print $2}' | uniq | wc -l); ((a != 1)); do
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
  kill -INT "$rx"; wait "$rx" || true
  local taken="" drops=""
  if [[ $1 == vswitch ]]; then  # where any loss happened: in the switch, or never given to it
    read -r taken drops < <("$bin/vswitchctl" --config "$work/vs.toml" stats --json | python3 -c "
import json, sys
e = {x['name']: x for x in json.load(sys.stdin)['endpoints']}
print(e['a']['rx_frames'], e['a']['drops_total'] + e['b']['drops_total'])")
  fi
  stop_all
  # testpmd's exit summary: frames the sender's queue accepted (not those testpmd itself
  # dropped on a full queue, TX-dropped), frames the receiver got.
  a=$(grep -o "TX-packets: *[0-9]* *TX-dropped" "$work/tx.log" | tail -1 | awk '{print $2}')
  b=$(grep -o "RX-packets: *[0-9]* *RX-dropped" "$work/rx.log" | tail -1 | awk '{print $2}')
  [[ -n $taken ]] && log "  (sender's queue accepted ${a:-0}, vswitch took $taken of them, dropped $drops;" \
    "the rest were still in the sender's ring when it closed its port)"
  RESULT=$(python3 -c "
s=${a:-0}; d=${b:-0}; t=$t1-$t0; cpu=$c1-$c0
print(f'{d/t:.0f} {max(0.0, 100*(s-d)/s) if s else 100:.2f} {cpu/d if d else 0:.0f}')")
}

run_paced() {  # run_paced PATH SIZE -> RESULT="delivered_fps loss_pct ns_per_frame"
  # The window is the sender's life: the switch's CPU from before it starts to after it
  # ends, divided by the frames delivered (its set-up adds no frames and next to no CPU).
  "start_$1"
  pace_guest rx "$work/b.sock" "$rx_cores" rx --seconds $((secs + 120))
  local rx=${pids[-1]} deadline=$((SECONDS + 60)) t0 t1 c0 c1 a
  until grep -q "pace rx: received" "$work/rx.log"; do
    ((SECONDS < deadline)) || { echo "bench-vhost: the paced receiver did not start" >&2; tail "$work/rx.log" >&2; exit 1; }
    sleep 0.05
  done
  c0=$(cpu_ns $SWITCH_PIDS); t0=$(date +%s.%N)
  pace_guest tx "$work/a.sock" "$tx_cores" tx --rate "$rate" --size "$2" --seconds "$secs" --src "$tx_mac" --dst "$rx_mac"
  local tx=${pids[-1]}
  wait "$tx" || { echo "bench-vhost: the paced sender failed" >&2; tail "$work/tx.log" >&2; exit 1; }
  c1=$(cpu_ns $SWITCH_PIDS); t1=$(date +%s.%N)
  # Drained: two consecutive per-second prints of the receiver show the same count.
  deadline=$((SECONDS + 30))
  while a=$(grep -o "received *[0-9]*" "$work/rx.log" | tail -2 | awk '{print $2}' | uniq | wc -l); ((a != 1)); do
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
  kill -INT "$rx"; wait "$rx" || true
  stop_all
  local offered sent refused received
  read -r offered sent refused < <(awk '/pace tx:/ {print $4, $6, $8}' "$work/tx.log")
  received=$(grep -o "received *[0-9]*" "$work/rx.log" | tail -1 | awk '{print $2}')
  log "  (offered ${offered:-0}: the switch's queue took ${sent:-0}, refused ${refused:-0}; received ${received:-0})"
  RESULT=$(python3 -c "
o=${offered:-0}; d=${received:-0}; cpu=$c1-$c0
print(f'{d/$secs:.0f} {max(0.0, 100*(o-d)/o) if o else 100:.2f} {cpu/d if d else 0:.0f}')")
}

idle() {  # idle PATH -> RESULT = percent of one core the switch uses, both guests attached and silent
  "start_$1"
  guest rx "$work/b.sock" rxonly 64 "$rx_cores"
  guest tx "$work/a.sock" rxonly 64 "$tx_cores"  # attached, sends nothing
  sleep 3
  local c0 c1 t0 t1 n
  n=$(wc -w <<<"$SWITCH_PIDS")
  c0=$(cpu_ns $SWITCH_PIDS); t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(cpu_ns $SWITCH_PIDS); t1=$(date +%s.%N)
  stop_all
  # vswitch: per endpoint (two processes); DPDK: the forwarding testpmd (one process).
  RESULT=$(python3 -c "print(f'{100*($c1-$c0)/1e9/($t1-$t0)/$n:.2f}')")
}

vm_pair() {  # vm_pair PATH -> RESULT = VM-to-VM iperf3 TCP Gbit/s (receiver side)
  local netdev1 netdev2
  if [[ $1 == vswitch ]]; then
    vswitch_up "$work/vm.toml" 2097152 65536 256 vm1 52:54:00:00:0c:01 vm2 52:54:00:00:0c:02
    netdev1=$(vhost_netdev "$work/vm1.sock") netdev2=$(vhost_netdev "$work/vm2.sock")
    VM_EXEC=""
  else
    ip netns add "$ns"
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
    for t in bt1 bt2; do
      ip -n "$ns" tuntap add dev "$t" mode tap vnet_hdr
      ip -n "$ns" link set "$t" master br0 up
    done
    netdev1=$(tap_netdev bt1) netdev2=$(tap_netdev bt2)
    VM_EXEC="ip netns exec $ns"
  fi
  vm_boot "$work" vm1 52:54:00:00:0c:01 10.0.0.1 "iperf3 -s -1" "$netdev1"
  pids+=("$VM_PID")
  vm_boot "$work" vm2 52:54:00:00:0c:02 10.0.0.2 "
for i in \$(seq 120); do ping -c1 -W1 10.0.0.1 >/dev/null 2>&1 && break; done
iperf3 -c 10.0.0.1 -t $secs -f g" "$netdev2"
  pids+=("$VM_PID")
  local rc
  rc=$(vm_rc "$work" vm2 300) || rc=timeout
  vm_rc "$work" vm1 30 >/dev/null || true
  stop_all
  VM_EXEC=""
  ip netns del "$ns" 2>/dev/null || true
  local g
  g=$(tr -d '\r' <"$work/vm2.console" | awk '/ receiver$/ { for (i = 1; i < NF; i++) if ($(i+1) == "Gbits/sec") print $i }' | tail -1)
  [[ $rc == 0 && -n $g ]] || { echo "bench-vhost: VM pair through $1 failed (rc $rc)" >&2; tail -5 "$work/vm2.console" >&2; g=0; }
  RESULT=$g
}

printf '%s %s %s %s %s %s\n' size round path fps loss ns >"$work/rows"
for size in 64 1500; do
  for ((r = 1; r <= rounds; r++)); do
    order=(vswitch dpdk); ((r % 2 == 0)) && order=(dpdk vswitch)
    for path in "${order[@]}"; do
      if ((rate)); then run_paced "$path" "$size"; else run "$path" "$size"; fi
      read -r fps loss ns <<<"$RESULT"
      log "$(printf '%5s B  round %d  %-8s %10s frames/s delivered  %5s%% loss  %7s ns CPU/frame' "$size" "$r" "$path" "$fps" "$loss" "$ns")"
      echo "$size $r $path $fps $loss $ns" >>"$work/rows"
    done
  done
done
idle vswitch; idle_vs=$RESULT
idle dpdk; idle_dpdk=$RESULT
log "idle, both guests attached: vswitch ${idle_vs}% of a core per endpoint, DPDK io forwarding ${idle_dpdk}%"
: >"$work/vmrows"
if ((vms)); then
  for ((r = 1; r <= rounds; r++)); do
    order=(vswitch bridge); ((r % 2 == 0)) && order=(bridge vswitch)
    for path in "${order[@]}"; do
      vm_pair "$path"; g=$RESULT
      log "VM->VM iperf3 TCP round $r via $path: $g Gbit/s"
      echo "$r $path $g" >>"$work/vmrows"
    done
  done
fi

python3 - "$work/rows" "$work/vmrows" "$json" "$idle_vs" "$idle_dpdk" "$rate" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
vmrows = [l.split() for l in open(sys.argv[2]).read().splitlines()]
as_json, idle_vs, idle_dpdk = sys.argv[3] == "1", float(sys.argv[4]), float(sys.argv[5])
rate = int(sys.argv[6])
med = statistics.median
vm = {}
if vmrows:
    v = {r[0]: float(r[2]) for r in vmrows if r[1] == "vswitch"}
    b = {r[0]: float(r[2]) for r in vmrows if r[1] == "bridge"}
    ratios = [v[k] / b[k] for k in v if k in b and b[k] > 0]
    vm = {"vm_iperf3_gbps": med(v.values()), "vm_bridge_iperf3_gbps": med(b.values()),
          "ratio_vm_over_bridge": med(ratios) if ratios else None}
out = []
for size in ("64", "1500"):
    v = {r[1]: r for r in rows if r[0] == size and r[2] == "vswitch"}
    d = {r[1]: r for r in rows if r[0] == size and r[2] == "dpdk"}
    pair = [(v[k], d[k]) for k in v if k in d]
    ratio = [float(b[5]) / float(a[5]) for a, b in pair if float(a[5]) > 0]  # DPDK CPU / ours, per round
    o = {"frame_size": int(size),
         "mpps": med(float(a[3]) for a, _ in pair) / 1e6,
         "loss": med(float(a[4]) for a, _ in pair) / 100,
         "cpu_ns_per_frame": med(float(a[5]) for a, _ in pair),
         "dpdk_mpps": med(float(b[3]) for _, b in pair) / 1e6,
         "dpdk_loss": med(float(b[4]) for _, b in pair) / 100,
         "dpdk_cpu_ns_per_frame": med(float(b[5]) for _, b in pair),
         "ratio_dpdk_cpu_over_ours": med(ratio) if ratio else None,
         "idle_cpu_pct_per_endpoint": idle_vs, "dpdk_idle_cpu_pct": idle_dpdk, "rounds": len(pair)}
    if rate:
        o["offered_fps"] = rate
    o.update(vm)
    out.append(o)
if as_json:
    for o in out: print(json.dumps(o))
else:
    paced = f" at an offered {rate} frames/s" if rate else ""
    print(f"\nmedians over rounds{paced}; ratio = DPDK CPU per delivered frame / ours (higher: we spend less)")
    for o in out:
        print(f"{o['frame_size']:>5} B: vswitch {o['mpps']:.3f} Mpps, {100*o['loss']:.1f}% loss, "
              f"{o['cpu_ns_per_frame']:.0f} ns/frame | DPDK {o['dpdk_mpps']:.3f} Mpps, {100*o['dpdk_loss']:.1f}% loss, "
              f"{o['dpdk_cpu_ns_per_frame']:.0f} ns/frame | ratio {o['ratio_dpdk_cpu_over_ours']:.2f}")
    print(f"idle: vswitch {idle_vs:.2f}% of a core per endpoint, DPDK {idle_dpdk:.1f}%")
    if vm:
        print(f"VM->VM iperf3 TCP: vswitch {vm['vm_iperf3_gbps']:.2f} Gbit/s, Linux bridge + TAP (vhost=off) "
              f"{vm['vm_bridge_iperf3_gbps']:.2f} Gbit/s, ratio {vm['ratio_vm_over_bridge']:.2f}")
PY
