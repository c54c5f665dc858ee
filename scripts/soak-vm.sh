#!/usr/bin/env bash
# Soak with real VMs: two QEMU guests (TCG, Linux virtio-net) on vhost-user endpoints run
# iperf3 TCP in both directions at once (--bidir) for DURATION while a network namespace on
# a TAP endpoint pings both guests, all through one switch (configs/vm-demo.toml).
# Every 10 s it samples both guests' traffic, the switch's drops, bad descriptor chains,
# protocol errors and the endpoints' memory into a CSV; it fails loudly, with `vswitchctl
# channels` and `stats`, if a direction moves nothing for 30 s, if the switch drops a frame
# or sees a bad chain while the guests run, or if the endpoints' private memory keeps
# growing (RssAnon; the guests' RAM they touch shows as RssShmem, recorded too). At
# the end: every ping answered, iperf3 finished in both directions, a PNG of throughput.
#   scripts/soak-vm.sh DURATION [--out DIR]   (DURATION: seconds, or 30m, 12h, 3d;
#                                              default DIR: soak-vm-<date>/)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { echo "usage: $0 DURATION [--out DIR]   (DURATION: seconds, or 30m, 12h, 3d)" >&2; exit 2; }
dur=$1; shift
out="soak-vm-$(date +%Y%m%d-%H%M%S)"
[[ "${1:-}" == "--out" ]] && out=$2
. scripts/lib.sh
secs=$(duration_seconds "$dur") || { echo "soak-vm: bad DURATION '$dur' (seconds, or 30m, 12h, 3d)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "soak-vm: needs root (vhost-user sockets in /run, a namespace, a TAP)" >&2; exit 1; }
scripts/setup.sh >/dev/null
scripts/vm-image.sh build/vm >/dev/null
dpkg-query -W -f='${Status}' gnuplot-nox 2>/dev/null | grep -q "install ok installed" ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh

mkdir -p "$out"
out=$(cd "$out" && pwd)
cfg=configs/vm-demo.toml
bin=build/bin
csv="$out/soak.csv"
daemon_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$daemon_pid" ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  ip netns del vswitch-host 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { "$bin/vswitchctl" --config "$cfg" "$@"; }
die() {
  echo "SOAK-VM FAILED at t=$((SECONDS - start))s: $*" | tee -a "$out/failure.txt" >&2
  { echo "== vswitchctl channels"; ctl channels; echo "== vswitchctl stats"; ctl stats
    for f in "$out"/*.console; do echo "== $f"; tail -20 "$f"; done; } | tee -a "$out/failure.txt" >&2
  exit 1
}
start=$SECONDS

if ! vm_demo_switch "$out"; then
  daemon_pid=$VM_DAEMON_PID
  die "vswitchd did not start: $(cat "$out/vswitchd.log")"
fi
daemon_pid=$VM_DAEMON_PID

vm_boot "$out" vm1 52:54:00:00:03:01 10.0.0.1 "echo VMTEST-SERVING; iperf3 -s -1" "$(vhost_netdev /run/vswitch/vm1.sock)"
pids+=("$VM_PID")
vm_boot "$out" vm2 52:54:00:00:03:02 10.0.0.2 "
for i in \$(seq 120); do ping -c1 -W1 10.0.0.1 >/dev/null 2>&1 && break; done
ok=0; for i in \$(seq 50); do iperf3 -c 10.0.0.1 --bidir -t $secs -i 10 -f m && { ok=1; break; }; sleep 0.2; done
[ \$ok = 1 ]" "$(vhost_netdev /run/vswitch/vm2.sock)"
pids+=("$VM_PID")
deadline=$((SECONDS + 240))
until grep -q "connected to 10.0.0.1" "$out/vm2.console" 2>/dev/null; do
  ((SECONDS < deadline)) || die "the guests did not start their streams"
  grep -q "VMTEST-RC" "$out/vm2.console" && die "vm2 ended early: $(grep VMTEST-RC "$out/vm2.console")"
  sleep 0.5
done
ip netns exec vswitch-host ping -i 0.2 -w "$secs" -q 10.0.0.1 >"$out/ping-vm1.txt" 2>&1 & pids+=($!)
ip netns exec vswitch-host ping -i 0.2 -w "$secs" -q 10.0.0.2 >"$out/ping-vm2.txt" 2>&1 & pids+=($!)

sample() {
  ctl stats --json | python3 -c '
import json, sys
d = {e["name"]: e for e in json.load(sys.stdin)["endpoints"]}
# Private memory (RssAnon) is what a leak grows; RssShmem grows as the endpoints touch
# more of the guest RAM they map (shared) and is bounded by it.
anon = shmem = 0
for e in d.values():
    pid = e["pid"]
    try:
        status = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("Rss")}
        anon += status["RssAnon"]
        shmem += status["RssShmem"]
    except Exception:
        pass
bad = sum(e["vu_bad_chains"] + e["vu_protocol_errors"] for e in d.values())
print(d["vm1"]["rx_bytes"], d["vm1"]["tx_bytes"], d["vm2"]["rx_bytes"], d["vm2"]["tx_bytes"],
      sum(e["drops_total"] for e in d.values()), bad, anon, shmem)'
}
echo "t_s,vm1_to_switch_mbps,switch_to_vm1_mbps,vm2_to_switch_mbps,switch_to_vm2_mbps,drops_total,bad,endpoint_anon_kb,endpoint_shmem_kb" >"$csv"
t0=$SECONDS
read -r p1 p2 p3 p4 drops0 bad0 _ _ < <(sample)
declare -A zero=([1]=0 [2]=0 [3]=0 [4]=0)
t_last=$SECONDS
echo "soak-vm: $secs s of iperf3 --bidir between two guests, sampling every 10 s into $csv"
while ((SECONDS - t0 < secs)); do
  sleep 10  # the sampling period
  read -r c1 c2 c3 c4 drops bad rss shmem < <(sample)
  dt=$((SECONDS - t_last)); t_last=$SECONDS
  ((dt > 0)) || dt=1
  vals=($((c1 - p1)) $((c2 - p2)) $((c3 - p3)) $((c4 - p4)))
  for k in 1 2 3 4; do
    if ((vals[k - 1] == 0)); then zero[$k]=$((zero[$k] + dt)); else zero[$k]=0; fi
    ((zero[$k] < 30)) || die "column $((k + 1)) of $csv moved nothing for ${zero[$k]} s"
  done
  awk -v t=$((SECONDS - t0)) -v dt="$dt" -v a="${vals[0]}" -v b="${vals[1]}" -v c="${vals[2]}" -v d="${vals[3]}" \
      -v drops="$drops" -v bad="$bad" -v rss="$rss" -v shmem="$shmem" 'BEGIN {
    printf "%d,%.1f,%.1f,%.1f,%.1f,%d,%d,%d,%d\n", t, a * 8 / dt / 1e6, b * 8 / dt / 1e6, c * 8 / dt / 1e6,
           d * 8 / dt / 1e6, drops, bad, rss, shmem }' | tee -a "$csv"
  ((drops == drops0)) || die "the switch dropped $((drops - drops0)) frames while the guests ran"
  ((bad == bad0)) || die "$((bad - bad0)) bad descriptor chains / protocol errors"
  if ((SECONDS - t0 > 60)); then  # after the first minute the endpoints must not keep growing
    [[ -n "${rss_ref:-}" ]] || rss_ref=$rss
    ((rss <= rss_ref + 4096)) || die "endpoint private memory grew from $rss_ref kB to $rss kB"
  fi
  p1=$c1 p2=$c2 p3=$c3 p4=$c4
done
rc=$(vm_rc "$out" vm2 120) || die "vm2's iperf3 did not finish"
((rc == 0)) || die "vm2's iperf3 failed (rc $rc)"
vm_rc "$out" vm1 60 >/dev/null || die "vm1's iperf3 server did not finish"
for v in vm1 vm2; do
  wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
done
for v in vm1 vm2; do
  grep -q " 0% packet loss" "$out/ping-$v.txt" || die "pings to $v lost: $(grep 'packet loss' "$out/ping-$v.txt")"
  echo "soak-vm: ping $v: $(grep -E 'packet loss|rtt' "$out/ping-$v.txt" | tr '\n' ' ')"
done
tr -d '\r' <"$out/vm2.console" | grep -E "(sender|receiver)$" | sed 's/^/soak-vm: vm2 iperf3 /'
gnuplot <<GP
set terminal pngcairo size 1200,600
set output "$out/soak.png"
set datafile separator ","
set key outside
set xlabel "seconds"
set ylabel "Mbit/s"
set title "vswitch VM soak: $secs s, iperf3 --bidir between two TCG guests"
plot "$csv" using 1:2 with lines title "vm1 -> switch", "" using 1:3 with lines title "switch -> vm1", \
     "" using 1:4 with lines title "vm2 -> switch", "" using 1:5 with lines title "switch -> vm2"
GP
echo "soak-vm: passed; $csv and $out/soak.png"
