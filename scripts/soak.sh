#!/usr/bin/env bash
# Soak: iperf3 TCP and UDP in both directions between two namespaces plus generator traffic,
# all through one switch (configs/soak.toml), for DURATION (e.g. 600, 30m, 12h, 3d).
# Every 10 s it samples throughput, drops, generator loss and the endpoints' memory into a
# CSV; it fails loudly, with `vswitchctl channels` and `stats`, if any direction moves
# nothing for 30 s, if a generator frame is lost or corrupt without a counted drop, or if
# the endpoints' memory keeps growing. At the end it draws throughput over time (gnuplot).
#   scripts/soak.sh DURATION [--out DIR]      (default DIR: soak-<date>/)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { echo "usage: $0 DURATION [--out DIR]   (DURATION: seconds, or 30m, 12h, 3d)" >&2; exit 2; }
dur=$1; shift
out="soak-$(date +%Y%m%d-%H%M%S)"
[[ "${1:-}" == "--out" ]] && out=$2
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
secs=$(duration_seconds "$dur") || { echo "soak: bad DURATION '$dur' (seconds, or 30m, 12h, 3d)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (namespaces, TAPs); tests/integration/generator_soak.sh soaks without" >&2; exit 1; }
scripts/setup.sh >/dev/null
dpkg-query -W -f='${Status}' gnuplot-nox 2>/dev/null | grep -q "install ok installed" ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null

mkdir -p "$out"
cfg=configs/soak.toml
bin=build/bin
csv="$out/soak.csv"
daemon_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$out"/iperf3-*.pid; do [[ -f $f ]] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
  if [[ -n "$daemon_pid" ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  for n in vsoak1 vsoak2; do ip netns del $n 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { "$bin/vswitchctl" --config "$cfg" "$@"; }
die() {
  echo "SOAK FAILED at t=$((SECONDS - start))s: $*" | tee -a "$out/failure.txt" >&2
  { echo "== vswitchctl channels"; ctl channels; echo "== vswitchctl stats"; ctl stats; } | tee -a "$out/failure.txt" >&2
  exit 1
}

for i in 1 2; do
  n=vsoak$i
  ip netns del $n 2>/dev/null || true
  ip netns add $n
  ip -n $n link set lo up
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n $n tuntap add dev $n mode tap
  ip -n $n link set $n address 02:00:00:00:05:0$i up
  ip -n $n addr add 10.80.0.$i/24 dev $n
done
"$bin/vswitchd" --config "$cfg" 2>"$out/vswitchd.log" &
daemon_pid=$!
deadline=$((SECONDS + 10))
until ctl ports 2>/dev/null | tail -n +2 | awk '{print $4}' | grep -q . && ! ctl ports | tail -n +2 | awk '{print $4}' | grep -qv '^up$'; do
  ((SECONDS < deadline)) || die "vswitchd did not bring the endpoints up"
  sleep 0.1
done
ip netns exec vsoak1 ping -c 2 -i 0.2 -W 2 -q 10.80.0.2 >/dev/null || die "no connectivity"

# iperf3: TCP and UDP each way, each on its own server port.
for port in 5201 5202; do ip netns exec vsoak2 iperf3 -s -p $port -D -I "$out/iperf3-$port.pid"; done
for port in 5203 5204; do ip netns exec vsoak1 iperf3 -s -p $port -D -I "$out/iperf3-$port.pid"; done
ip netns exec vsoak2 sh -c 'until ss -ltn | grep -q ":5202 "; do sleep 0.1; done'
ip netns exec vsoak1 sh -c 'until ss -ltn | grep -q ":5204 "; do sleep 0.1; done'
ip netns exec vsoak1 iperf3 -c 10.80.0.2 -p 5201 -t "$secs" -i 0 >"$out/tcp-1to2.txt" 2>&1 & pids+=($!)
ip netns exec vsoak1 iperf3 -c 10.80.0.2 -p 5202 -u -b 200M -l 1400 -t "$secs" -i 0 >"$out/udp-1to2.txt" 2>&1 & pids+=($!)
ip netns exec vsoak2 iperf3 -c 10.80.0.1 -p 5203 -t "$secs" -i 0 >"$out/tcp-2to1.txt" 2>&1 & pids+=($!)
ip netns exec vsoak2 iperf3 -c 10.80.0.1 -p 5204 -u -b 200M -l 1400 -t "$secs" -i 0 >"$out/udp-2to1.txt" 2>&1 & pids+=($!)

echo "t_s,ns1_to_switch_mbps,switch_to_ns1_mbps,ns2_to_switch_mbps,switch_to_ns2_mbps,gen1_rx_fps,gen2_rx_fps,drops_total,gen_lost,gen_bad,endpoint_rss_kb" >"$csv"
sample() {
  ctl stats --json | python3 -c '
import json, sys
d = {e["name"]: e for e in json.load(sys.stdin)["endpoints"]}
pids = [e["pid"] for e in d.values()]
rss = 0
for p in pids:
    try:
        rss += int(next(l.split()[1] for l in open(f"/proc/{p}/status") if l.startswith("VmRSS")))
    except Exception:
        pass
print(d["ns1"]["rx_bytes"], d["ns1"]["tx_bytes"], d["ns2"]["rx_bytes"], d["ns2"]["tx_bytes"],
      d["gen1"]["gen_received"], d["gen2"]["gen_received"], sum(e["drops_total"] for e in d.values()),
      d["gen1"]["gen_lost"] + d["gen2"]["gen_lost"], d["gen1"]["gen_bad"] + d["gen2"]["gen_bad"], rss)'
}
start=$SECONDS
read -r p1 p2 p3 p4 p5 p6 _ _ _ rss0 < <(sample)
declare -A zero=([1]=0 [2]=0 [3]=0 [4]=0 [5]=0 [6]=0)
t_last=$SECONDS
echo "soak: $secs s, sampling every 10 s into $csv"
while ((SECONDS - start < secs)); do
  sleep 10  # the sampling period
  read -r c1 c2 c3 c4 c5 c6 drops lost bad rss < <(sample)
  dt=$((SECONDS - t_last)); t_last=$SECONDS
  ((dt > 0)) || dt=1
  vals=($((c1 - p1)) $((c2 - p2)) $((c3 - p3)) $((c4 - p4)) $((c5 - p5)) $((c6 - p6)))
  for k in 1 2 3 4 5 6; do
    if ((vals[k - 1] == 0)); then zero[$k]=$((zero[$k] + dt)); else zero[$k]=0; fi
    ((zero[$k] < 30)) || die "column $k of $csv moved nothing for ${zero[$k]} s"
  done
  awk -v t=$((SECONDS - start)) -v dt="$dt" -v a="${vals[0]}" -v b="${vals[1]}" -v c="${vals[2]}" -v d="${vals[3]}" \
      -v e="${vals[4]}" -v f="${vals[5]}" -v drops="$drops" -v lost="$lost" -v bad="$bad" -v rss="$rss" 'BEGIN {
    printf "%d,%.1f,%.1f,%.1f,%.1f,%.0f,%.0f,%d,%d,%d,%d\n", t, a * 8 / dt / 1e6, b * 8 / dt / 1e6, c * 8 / dt / 1e6,
           d * 8 / dt / 1e6, e / dt, f / dt, drops, lost, bad, rss }' | tee -a "$csv"
  ((bad == 0)) || die "$bad corrupt generator frames"
  ((lost <= drops)) || die "generators lost $lost frames but the switch counted only $drops drops"
  # Memory: after the first minute the endpoints must not keep growing.
  if ((SECONDS - start > 60)); then
    [[ -n "${rss_ref:-}" ]] || rss_ref=$rss
    ((rss <= rss_ref + 8192)) || die "endpoint memory grew from $rss_ref kB to $rss kB"
  fi
  p1=$c1 p2=$c2 p3=$c3 p4=$c4 p5=$c5 p6=$c6
done
for p in "${pids[@]}"; do wait "$p" || die "an iperf3 client failed (see $out/*.txt)"; done
pids=()
gnuplot <<GP
set terminal pngcairo size 1200,600
set output "$out/soak.png"
set datafile separator ","
set key outside
set xlabel "seconds"
set ylabel "Mbit/s"
set y2label "generator frames/s"
set y2tics
set title "vswitch soak: $secs s"
plot "$csv" using 1:2 with lines title "ns1 -> switch", "" using 1:3 with lines title "switch -> ns1", \
     "" using 1:4 with lines title "ns2 -> switch", "" using 1:5 with lines title "switch -> ns2", \
     "" using 1:6 axes x1y2 with lines title "gen1 rx fps", "" using 1:7 axes x1y2 with lines title "gen2 rx fps"
GP
echo "soak: passed; $csv and $out/soak.png"
