#!/usr/bin/env bash
# Benchmark (not a test): the same iperf3/ping work between two network namespaces through
#   vswitch  (two TAP endpoints, vnet header + offloads, pinned to cores 0 and 1)
#   bridge   (Linux bridge in a third namespace, two veth pairs)
#   ovs      (Open vSwitch userspace datapath, datapath_type=netdev, userspace TSO on,
#             internal ports moved into the namespaces; its files in a private directory)
#   vde      (vde_switch with two TAP ports moved into the namespaces)
# Paths run interleaved (order rotates every round) and each figure is the median over
# rounds; ratios are vswitch / other from the same run. Needs root.
# A path "vswitch-pollN" is vswitch with every endpoint's poll_max_us = N (the adaptive poll
# window's ceiling; "vswitch" is the product default), e.g. --paths "vswitch vswitch-poll0 bridge";
# "vswitch-coalesceN" is vswitch with every endpoint's coalesce_us = N (wake-up coalescing).
# A path "vswitch-capture" is vswitch with `vswitchctl capture v1 -w /dev/null` attached (both
# directions of the sender's port copied and written as pcapng): its CPU counts the capture's
# process too, and what the capture could not copy is logged.
# Besides TCP and unpaced UDP, a paced UDP flow: 64-byte datagrams at --paced-kpps (default 100)
# thousand per second, sent evenly (iperf3 --pacing-timer 10 us), with the forwarder's CPU.
#   scripts/bench-netns.sh [--rounds N] [--seconds S] [--paths "vswitch bridge ovs vde"] [--paced-kpps K] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=10 json=0 paths="vswitch bridge ovs vde" paced_kpps=100
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --paths) paths=$2; shift 2 ;;
    --paced-kpps) paced_kpps=$2; shift 2 ;;
    --json) json=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--paths LIST] [--paced-kpps K] [--json]" >&2; exit 2 ;;
  esac
done
[[ $paced_kpps =~ ^[1-9][0-9]*$ ]] || { echo "bench-netns: --paced-kpps takes a positive integer (got '$paced_kpps')" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench-netns: needs root (namespaces, TAPs, bridges)" >&2; exit 1; }

scripts/setup.sh >/dev/null
# The competitors are benchmark-only dependencies.
need=()
for p in openvswitch-switch vde2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "bench-netns: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bin=build/bin
work=$(mktemp -d /tmp/vswitch-bench.XXXXXX)
rows="$work/rows.tsv"
: >"$rows"
log() { echo "bench-netns: $*" >&2; }

wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.05
  done
}

# ---- namespaces shared by every path --------------------------------------------------
ns_up() {
  for n in nbx1 nbx2 nbxsw; do ip netns del $n 2>/dev/null || true; ip netns add $n; ip -n $n link set lo up; done
  for n in nbx1 nbx2; do ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
}
ns_down() { for n in nbx1 nbx2 nbxsw; do ip netns del $n 2>/dev/null || true; done; }
address() {  # address IF1 IF2: bring the namespace ends up with their addresses
  ip -n nbx1 link set "$1" up; ip -n nbx1 addr add 10.79.0.1/24 dev "$1"
  ip -n nbx2 link set "$2" up; ip -n nbx2 addr add 10.79.0.2/24 dev "$2"
}

# ---- paths: setup_X sets FORWARDER_PIDS (space-separated, may be empty) ----------------
daemon_pid=""
vswitch_up() {  # every endpoint of the benchmark switch reports "up"
  local out
  out=$("$bin/vswitchctl" --config "$work/vswitch.toml" ports 2>/dev/null) || return 1
  [[ $(tail -n +2 <<<"$out" | awk '$4 == "up"' | wc -l) -eq 2 ]]
}
setup_vswitch() {  # setup_vswitch [TOML LINE FOR EVERY ENDPOINT]
  local poll=${1:-}
  cat >"$work/vswitch.toml" <<TOML
[switch]
name = "benchns"
[fabric]
ring_bytes = 4194304
[[endpoint]]
name = "v1"
core = 0
mac = "02:00:00:00:0c:01"
$poll
frontend = "tap"
[endpoint.tap]
ifname = "nbxv1"
netns = "nbx1"
[[endpoint]]
name = "v2"
core = 1
mac = "02:00:00:00:0c:02"
$poll
frontend = "tap"
[endpoint.tap]
ifname = "nbxv2"
netns = "nbx2"
TOML
  "$bin/vswitchd" --config "$work/vswitch.toml" 2>"$work/vswitchd.log" &
  daemon_pid=$!
  wait_for 10 "vswitch endpoints" vswitch_up
  address nbxv1 nbxv2
  FORWARDER_PIDS=$("$bin/vswitchctl" --config "$work/vswitch.toml" ports --json |
    python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin)['ports']))")
}
capture_pid=""
setup_capture() {  # vswitch, and a capture of v1 (both directions) into /dev/null
  setup_vswitch || return 1
  "$bin/vswitchctl" --config "$work/vswitch.toml" capture v1 -w /dev/null 2>"$work/capture.err" &
  capture_pid=$!
  wait_for 10 "the capture to attach" grep -q "capturing on" "$work/capture.err"
  FORWARDER_PIDS="$FORWARDER_PIDS $capture_pid"
}
teardown_vswitch() {
  if [[ -n "$capture_pid" ]]; then
    kill -INT "$capture_pid" 2>/dev/null || true
    wait "$capture_pid" 2>/dev/null || true
    capture_pid=""
    log "$(tail -1 "$work/capture.err")"
  fi
  kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true
}
base_of() { case $1 in vswitch-poll[0-9]* | vswitch-coalesce[0-9]* | vswitch-capture) echo vswitch ;; *) echo "$1" ;; esac; }
setup_path() {
  case $1 in
    vswitch-poll[0-9]*) setup_vswitch "poll_max_us = ${1#vswitch-poll}" ;;
    vswitch-coalesce[0-9]*) setup_vswitch "coalesce_us = ${1#vswitch-coalesce}" ;;
    vswitch-capture) setup_capture ;;
    *) "setup_$1" ;;
  esac
}

setup_bridge() {
  ip -n nbxsw link add nbxbr type bridge stp_state 0
  ip link add nbxb1 netns nbx1 type veth peer name nbxp1 netns nbxsw
  ip link add nbxb2 netns nbx2 type veth peer name nbxp2 netns nbxsw
  for p in nbxp1 nbxp2; do ip -n nbxsw link set $p master nbxbr up; done
  ip -n nbxsw link set nbxbr up
  address nbxb1 nbxb2
  FORWARDER_PIDS=""
}
teardown_bridge() { :; }

ovs_dir=""
setup_ovs() {
  ovs_dir="$work/ovs"; rm -rf "$ovs_dir"; mkdir -p "$ovs_dir"
  export OVS_RUNDIR=$ovs_dir OVS_DBDIR=$ovs_dir OVS_LOGDIR=$ovs_dir OVS_SYSCONFDIR=$ovs_dir
  local db="unix:$ovs_dir/db.sock"
  ovsdb-tool create "$ovs_dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$ovs_dir/conf.db" --remote="punix:$ovs_dir/db.sock" --pidfile="$ovs_dir/ovsdb.pid" --detach \
    --log-file="$ovs_dir/ovsdb.log" 2>/dev/null
  ovs-vsctl --db="$db" --no-wait init
  ovs-vsctl --db="$db" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
  ovs-vswitchd "$db" --pidfile="$ovs_dir/vswitchd.pid" --detach --log-file="$ovs_dir/vswitchd.log" 2>/dev/null
  ovs-vsctl --db="$db" add-br nbxbr -- set bridge nbxbr datapath_type=netdev
  ovs-vsctl --db="$db" add-port nbxbr nbxo1 -- set interface nbxo1 type=internal
  ovs-vsctl --db="$db" add-port nbxbr nbxo2 -- set interface nbxo2 type=internal
  wait_for 10 "OVS internal ports" ip link show nbxo2
  ip link set nbxo1 netns nbx1
  ip link set nbxo2 netns nbx2
  address nbxo1 nbxo2
  FORWARDER_PIDS=$(cat "$ovs_dir/vswitchd.pid")
}
teardown_ovs() {
  for f in vswitchd ovsdb; do
    local pid; pid=$(cat "$ovs_dir/$f.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || true
    wait_for 3 "$f to exit" sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  done
  ip link del nbxbr 2>/dev/null || true
  unset OVS_RUNDIR OVS_DBDIR OVS_LOGDIR OVS_SYSCONFDIR
}

vde_pid=""
setup_vde() {
  rm -f "$work/vde.fifo"; mkfifo "$work/vde.fifo"
  exec 7<>"$work/vde.fifo"  # vde_switch exits on EOF of stdin
  vde_switch -t nbxt1 -t nbxt2 -s "$work/vde.ctl" -M "$work/vde.mgmt" <&7 >/dev/null 2>&1 &
  vde_pid=$!
  wait_for 10 "vde_switch TAPs" ip link show nbxt2
  ip link set nbxt1 netns nbx1
  ip link set nbxt2 netns nbx2
  address nbxt1 nbxt2
  FORWARDER_PIDS=$vde_pid
}
teardown_vde() { kill "$vde_pid" 2>/dev/null || true; wait "$vde_pid" 2>/dev/null || true; exec 7>&-; }

# ---- measurements ----------------------------------------------------------------------
cpu_ticks() {  # total utime+stime of the given pids (and their threads), in clock ticks
  local t=0 pid
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo $t
}
hz=$(getconf CLK_TCK)
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$rows"; }

measure() {  # measure PATH ROUND
  local path=$1 r=$2 t0 t1 c0 c1
  ip netns exec nbx1 ping -c 3 -i 0.1 -W 2 -q 10.79.0.2 >/dev/null || { log "$path: no connectivity"; return 1; }
  if [[ -n "$FORWARDER_PIDS" ]]; then
    c0=$(cpu_ticks $FORWARDER_PIDS); t0=$(date +%s.%N)
    sleep 5  # the idle window being measured
    c1=$(cpu_ticks $FORWARDER_PIDS); t1=$(date +%s.%N)
    row "$path" "$r" cpu_idle_pct "$(python3 -c "print(100 * ($c1 - $c0) / $hz / ($t1 - $t0))")"
  fi
  local p
  p=$(ip netns exec nbx1 ping -c 200 -i 0.01 -W 1 -q 10.79.0.2 | awk -F'[/ ]' '/^rtt/ {print $8, $9}')
  row "$path" "$r" ping_avg_ms "${p% *}"
  row "$path" "$r" ping_max_ms "${p#* }"
  # A flood (one request per ms, 3000 of them): p50 and p99 of the round trips.
  ip netns exec nbx1 ping -c 3000 -i 0.001 -W 1 10.79.0.2 | python3 -c '
import re, statistics, sys
t = sorted(float(m.group(1)) for m in re.finditer(r"time=([0-9.]+) ms", sys.stdin.read()))
if t:
    print("ping_p50_ms", statistics.median(t)); print("ping_p99_ms", t[min(len(t) - 1, int(0.99 * len(t)))])
' | while read -r m v; do row "$path" "$r" "$m" "$v"; done
  ip netns exec nbx2 iperf3 -s -D -I "$work/iperf3.pid" >/dev/null
  wait_for 10 "iperf3 server" ip netns exec nbx2 sh -c 'ss -ltn | grep -q ":5201 "'
  run_iperf() {  # run_iperf NAME ARGS...
    local name=$1; shift
    [[ -n "$FORWARDER_PIDS" ]] && { c0=$(cpu_ticks $FORWARDER_PIDS); t0=$(date +%s.%N); }
    ip netns exec nbx1 iperf3 -c 10.79.0.2 -t "$secs" -J "$@" >"$work/$name.json" 2>&1 || log "$path: iperf3 $name failed"
    if [[ -n "$FORWARDER_PIDS" ]]; then
      c1=$(cpu_ticks $FORWARDER_PIDS); t1=$(date +%s.%N)
      row "$path" "$r" "cpu_${name}_pct" "$(python3 -c "print(100 * ($c1 - $c0) / $hz / ($t1 - $t0))")"
    fi
  }
  run_iperf tcp1
  run_iperf tcp4 -P 4
  run_iperf udp1400 -u -b 0 -l 1400
  run_iperf udp64 -u -b 0 -l 64
  # 64 B of payload per datagram: K thousand datagrams/s is K * 512 kbit/s.
  run_iperf udppaced -u -b "$((paced_kpps * 512))k" -l 64 --pacing-timer 10
  python3 - "$work" "$path" "$r" >>"$rows" <<'PY'
import json, sys
work, path, r = sys.argv[1:4]
def load(n):
    try:
        return json.load(open(f"{work}/{n}.json"))["end"]
    except Exception:
        return None
for n in ("tcp1", "tcp4"):
    e = load(n)
    if e: print(f"{path}\t{r}\t{n}_gbps\t{e['sum_received']['bits_per_second'] / 1e9:.3f}")
for n, size in (("udp1400", 1400), ("udp64", 64), ("udppaced", 64)):
    e = load(n)
    if not e: continue
    s = e["sum"]
    got = s["packets"] - s["lost_packets"]
    if n == "udp1400": print(f"{path}\t{r}\t{n}_gbps\t{got * size * 8 / s['seconds'] / 1e9:.3f}")
    else: print(f"{path}\t{r}\t{n}_kpps\t{got / s['seconds'] / 1e3:.1f}")
    print(f"{path}\t{r}\t{n}_loss_pct\t{s['lost_percent']:.2f}")
PY
  kill "$(cat "$work/iperf3.pid")" 2>/dev/null || true
}

current=""
cleanup() {
  [[ -n "$current" ]] && "teardown_$(base_of "$current")" || true
  ns_down
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r -a order <<<"$paths"
for ((r = 1; r <= rounds; r++)); do
  for ((k = 0; k < ${#order[@]}; k++)); do
    path=${order[$(((k + r - 1) % ${#order[@]}))]}
    log "round $r/$rounds: $path"
    ns_up
    current=$path
    if setup_path "$path"; then measure "$path" "$r" || true; else log "$path: setup failed"; fi
    "teardown_$(base_of "$path")" || true
    current=""
    ns_down
  done
done

python3 - "$rows" "$json" "$rounds" "$secs" <<'PY'
import json, statistics, sys
rows_file, as_json, rounds, secs = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
vals = {}
for line in open(rows_file):
    path, r, metric, value = line.rstrip("\n").split("\t")
    try:
        vals.setdefault(metric, {}).setdefault(path, []).append(float(value))
    except ValueError:
        pass
metrics = ["tcp1_gbps", "tcp4_gbps", "udp1400_gbps", "udp1400_loss_pct", "udp64_kpps", "udp64_loss_pct",
           "ping_avg_ms", "ping_max_ms", "ping_p50_ms", "ping_p99_ms", "cpu_idle_pct", "cpu_tcp1_pct", "cpu_tcp4_pct", "cpu_udp1400_pct",
           "cpu_udp64_pct", "udppaced_kpps", "udppaced_loss_pct", "cpu_udppaced_pct"]
others = ["bridge", "ovs", "vde"]
variants = sorted({p for v in vals.values() for p in v if p.startswith("vswitch-")})
out = []
for m in metrics:
    if m not in vals: continue
    med = {p: statistics.median(v) for p, v in vals[m].items()}
    o = {"metric": m, "vswitch": med.get("vswitch")}
    for p in others:
        o[p] = med.get(p)
        v, b = med.get("vswitch"), med.get(p)
        o[f"ratio_vs_{p}"] = round(v / b, 3) if v is not None and b else None
    for p in variants:  # vswitch with other settings, against the default of the same run
        o[p] = med.get(p)
        v, b = med.get(p), med.get("vswitch")
        o[f"ratio_{p}_vs_vswitch"] = round(v / b, 3) if v is not None and b else None
    o["runs"] = {p: len(v) for p, v in vals[m].items()}
    out.append(o)
if as_json:
    for o in out: print(json.dumps(o))
    sys.exit(0)
fmt = lambda x: "-" if x is None else (f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}")
print(f"medians over {rounds} interleaved round(s), {secs} s per iperf3 run; ratio = vswitch / other")
print(f"{'metric':18} {'vswitch':>9} {'bridge':>9} {'ovs':>9} {'vde':>9} {'/bridge':>8} {'/ovs':>8} {'/vde':>8}"
      + "".join(f" {p:>16}" for p in variants))
for o in out:
    print(f"{o['metric']:18} {fmt(o['vswitch']):>9} {fmt(o['bridge']):>9} {fmt(o['ovs']):>9} {fmt(o['vde']):>9} "
          f"{fmt(o['ratio_vs_bridge']):>8} {fmt(o['ratio_vs_ovs']):>8} {fmt(o['ratio_vs_vde']):>8}"
          + "".join(f" {fmt(o[p]):>16}" for p in variants))
PY
