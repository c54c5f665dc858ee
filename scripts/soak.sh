#!/usr/bin/env bash
# Soak between two network namespaces (configs/soak.toml): iperf3 TCP and UDP (fixed rate)
# in both directions, pings both ways, plus two generator endpoints exchanging checked
# frames, all through one switch, for DURATION (seconds, or 30m, 12h, 3d, 2w).
# iperf3 runs in back-to-back segments (--segment, default 1 h; iperf3 refuses more than
# 24 h), the gap between two segments measured and reported. scripts/soak_monitor.py
# samples every 10 s into soak.csv, writes an hourly summary line (summary.txt) and redraws
# soak.png; it fails loudly (non-zero exit, failure.txt with `vswitchctl channels` and
# `stats`) when a direction moves nothing for 30 s, a segment fails, a UDP datagram or a
# generator frame is lost without a counted reason, a frame is corrupt, memory, open fds
# or threads of an endpoint or of vswitchd keep growing, or pings are lost without a counted
# reason (at full TCP speed a TAP's queue tail-drops: its tx_dropped counts them).
#   scripts/soak.sh DURATION [--out DIR] [--segment S] [--hour S] [--udp-rate R]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SOAK_UDP_RATE=50M
soak_parse_common soak "$@" || { echo "usage: $0 DURATION [--out DIR] [--segment S] [--hour S] [--udp-rate R]" >&2; exit 2; }
((${#SOAK_REST[@]} == 0)) || { echo "soak: unknown option ${SOAK_REST[0]}" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (namespaces, TAPs); tests/integration/generator_soak.sh soaks without" >&2; exit 1; }
scripts/setup.sh >/dev/null
soak_plot_deps

out=$SOAK_OUT secs=$SOAK_SECS
cfg=configs/soak.toml
bin=${VSWITCH_BIN:-build/bin}
daemon_pid=""
agents=()
cleanup() {
  # Each agent leads its own process group (setsid): its iperf3s and pings go with it.
  for p in "${agents[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  for p in "${agents[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$daemon_pid" ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  for n in vsoak1 vsoak2; do ip netns del $n 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { "$bin/vswitchctl" --config "$cfg" "$@"; }
die() {
  echo "SOAK FAILED: $*" | tee -a "$out/failure.txt" >&2
  { echo "== vswitchctl channels"; ctl channels; echo "== vswitchctl stats"; ctl stats; } 2>&1 | tee -a "$out/failure.txt" >&2
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
"$bin/vswitchd" --config "$cfg" 2> >(rotate_log "$out/vswitchd.log") &
daemon_pid=$!
deadline=$((SECONDS + 10))
until [[ $(ctl ports 2>/dev/null | awk 'NR > 1 && $4 == "up"' | wc -l) -eq 4 ]]; do
  ((SECONDS < deadline)) || die "vswitchd did not bring the endpoints up"
  sleep 0.1
done

mkdir -p "$out/reports"
for i in 1 2; do
  o=$((3 - i))
  : >"$out/reports/ns$i.log"
  setsid ip netns exec vsoak$i sh scripts/soak-load.sh ns$i "$secs" "$SOAK_SEGMENT" ns$o@10.80.0.$o ns$o@10.80.0.$o \
    "$SOAK_UDP_RATE" "ns$o@10.80.0.$o" "$out/reports/ns$i.log" 15 >>"$out/load.log" 2>&1 &
  agents+=($!)
done
deadline=$((SECONDS + 60))
until [[ $(cat "$out"/reports/*.log | grep -c "VSOAK UP") -eq 2 ]]; do
  ((SECONDS < deadline)) || die "the namespaces did not reach each other: $(cat "$out"/reports/*.log)"
  sleep 0.2
done
echo "soak: $secs s in segments of $SOAK_SEGMENT s, sampling every 10 s into $out/soak.csv, summaries every $SOAK_HOUR s"
warmup=$((secs / 3 < 60 ? secs / 3 : 60))
rc=0
python3 scripts/soak_monitor.py --ctl "$bin/vswitchctl" --config "$cfg" --out "$out" --duration "$secs" \
  --hour "$SOAK_HOUR" --warmup "$warmup" --segment "$SOAK_SEGMENT" --udp-mbps "$(rate_mbps "$SOAK_UDP_RATE")" --title "vswitch netns soak" \
  --pairs "ns1>ns2,ns2>ns1,gen1>gen2,gen2>gen1" --streams "tcp:ns1>ns2,tcp:ns2>ns1,udp:ns1>ns2,udp:ns2>ns1" \
  --reports "$out/reports/ns1.log" "$out/reports/ns2.log" --expect-done 2 --pids "vswitchd=$daemon_pid" \
  --ping-loss counted || rc=$?
((rc == 0)) || exit 1  # the monitor said why, with the channels and counters, in failure.txt
for p in "${agents[@]}"; do wait "$p" || die "a load agent failed (see $out/load.log)"; done
agents=()
echo "soak: passed; $out/soak.csv, $out/summary.txt, $out/soak.png"
