#!/usr/bin/env bash
# Benchmark (not a test): DPDK virtio-user "guests" through vswitch's vhost-user endpoints,
# against the same guests through DPDK's own vhost switching (a third testpmd with two
# net_vhost ports in io forwarding mode), interleaved, for 64 B and 1500 B frames:
#   testpmd(virtio-user, txonly) -> SWITCH -> testpmd(virtio-user, rxonly)
# Reported per run: frames delivered per second, loss (sent vs delivered), and the switch's
# CPU time per delivered frame (vswitch: its endpoint processes; DPDK: the forwarding
# testpmd, which busy-polls), from /proc. On 2 vCPUs three busy-polling testpmds fight for
# the same cores, so the rates say little; CPU per frame is the figure to compare.
#   scripts/bench-vhost.sh [--rounds N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=5
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S]" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "bench-vhost: needs root (hugepages)" >&2; exit 1; }
scripts/setup.sh >/dev/null
bin=build/bin
work=$(mktemp -d /tmp/vswitch-bvh.XXXXXX)
hp_before=$(cat /proc/sys/vm/nr_hugepages)
pids=()
daemon_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $daemon_pid ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -f /dev/hugepages/bvh*
  echo "$hp_before" >/proc/sys/vm/nr_hugepages
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo $((hp_before + 768)) >/proc/sys/vm/nr_hugepages
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
hz=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in "$@"; do [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
last() { grep -o "$2: *[0-9]*" "$1" | tail -1 | awk '{print $2}'; }

guest() {  # guest NAME SOCKET MODE SIZE [client]: a testpmd virtio-user "guest"
  stdbuf -oL dpdk-testpmd -l 0-1 -n 1 -m 256 --no-pci --single-file-segments --file-prefix "bvh$1$$" \
    --vdev "net_virtio_user0,path=$2,queues=1,queue_size=1024${5:+,server=0}" -- \
    --forward-mode="$3" --txpkts="$4" --auto-start --stats-period 1 --total-num-mbufs=16384 >"$work/$1.log" 2>&1 &
  pids+=($!)
}
wait_file() { local d=$((SECONDS + 20)); until [[ -S $1 ]]; do ((SECONDS < d)) || return 1; sleep 0.1; done; }

run_vswitch() {  # run_vswitch SIZE -> "delivered_fps loss_pct ns_per_frame"
  cat >"$work/vs.toml" <<TOML
[switch]
name = "bvh$$"
[fabric]
ring_bytes = 4194304
max_frame = 9000
[[endpoint]]
name = "a"
core = 0
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$work/a.sock"
queue_size = 1024
[[endpoint]]
name = "b"
core = 1
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$work/b.sock"
queue_size = 1024
TOML
  "$bin/vswitchd" --config "$work/vs.toml" 2>"$work/vs.log" &
  daemon_pid=$!
  wait_file "$work/b.sock"
  guest rx "$work/b.sock" rxonly "$1"
  sleep 3  # the receiver sets up before the sender starts (part of the scenario)
  guest tx "$work/a.sock" txonly "$1"
  sleep 2  # warm-up
  local eps t0 t1 c0 c1 r0 r1 s0 s1
  eps=$("$bin/vswitchctl" --config "$work/vs.toml" ports --json | python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin)['ports']))")
  r0=$(last "$work/rx.log" RX-packets); s0=$(last "$work/tx.log" TX-packets)
  c0=$(ticks $eps); t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(ticks $eps); t1=$(date +%s.%N)
  r1=$(last "$work/rx.log" RX-packets); s1=$(last "$work/tx.log" TX-packets)
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  kill -INT "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
  python3 -c "
d=$r1-$r0; s=$s1-$s0; t=$t1-$t0; cpu=($c1-$c0)/$hz
print(f'{d/t:.0f} {100*(s-d)/s if s else 0:.1f} {cpu*1e9/d if d else 0:.0f}')"
}

run_dpdk() {  # run_dpdk SIZE: a third testpmd with two net_vhost ports, io forwarding
  stdbuf -oL dpdk-testpmd -l 0-1 -n 1 -m 256 --no-pci --single-file-segments --file-prefix "bvhsw$$" \
    --vdev "net_vhost0,iface=$work/a.sock,queues=1" --vdev "net_vhost1,iface=$work/b.sock,queues=1" -- \
    --forward-mode=io --auto-start --stats-period 1 --total-num-mbufs=16384 >"$work/sw.log" 2>&1 &
  local sw=$!
  pids+=($sw)
  wait_file "$work/b.sock"
  guest rx "$work/b.sock" rxonly "$1"
  sleep 3
  guest tx "$work/a.sock" txonly "$1"
  sleep 2
  local t0 t1 c0 c1 r0 r1 s0 s1
  r0=$(last "$work/rx.log" RX-packets); s0=$(last "$work/tx.log" TX-packets)
  c0=$(ticks "$sw"); t0=$(date +%s.%N)
  sleep "$secs"
  c1=$(ticks "$sw"); t1=$(date +%s.%N)
  r1=$(last "$work/rx.log" RX-packets); s1=$(last "$work/tx.log" TX-packets)
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  python3 -c "
d=$r1-$r0; s=$s1-$s0; t=$t1-$t0; cpu=($c1-$c0)/$hz
print(f'{d/t:.0f} {100*(s-d)/s if s else 0:.1f} {cpu*1e9/d if d else 0:.0f}')"
}

printf '%-6s %-5s %-8s %12s %8s %14s\n' size round path delivered/s loss% cpu_ns/frame >"$work/rows"
for size in 64 1500; do
  for ((r = 1; r <= rounds; r++)); do
    order=(vswitch dpdk); ((r % 2 == 0)) && order=(dpdk vswitch)
    for path in "${order[@]}"; do
      read -r fps loss ns < <("run_$path" "$size")
      printf '%-6s %-5s %-8s %12s %8s %14s\n' "$size" "$r" "$path" "$fps" "$loss" "$ns" | tee -a "$work/rows"
    done
  done
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
print("\nmedians; ratio = vswitch / DPDK io forwarding, CPU per delivered frame (lower is better)")
for size in ("64", "1500"):
    v = [r for r in rows if r[0] == size and r[2] == "vswitch"]
    d = [r for r in rows if r[0] == size and r[2] == "dpdk"]
    ratios = [float(a[5]) / float(b[5]) for a, b in zip(v, d) if float(b[5]) > 0]
    med = lambda rs, i: statistics.median(float(r[i]) for r in rs)
    print(f"{size:>5} B: vswitch {med(v,3):.0f} fps, {med(v,4):.1f}% loss, {med(v,5):.0f} ns/frame | "
          f"DPDK {med(d,3):.0f} fps, {med(d,4):.1f}% loss, {med(d,5):.0f} ns/frame | "
          f"CPU/frame ratio {statistics.median(ratios):.2f}" if ratios else f"{size}: no data")
PY
