# Shared helpers for the integration tests (sourced). Each test creates its own network
# namespaces and switch, and removes them on exit, whatever happens.
set -euo pipefail
# The system's programs first: the tests run the Debian packages scripts/setup.sh installs
# (python3, iperf3, tshark, QEMU), never a per-user shim placed ahead of them on PATH (a
# pyenv shim costs about a second per python3 start, and stretches every window a test
# measures across several reads of `vswitchctl stats`).
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${VSWITCH_BIN:-$ROOT/build/bin}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/vswitch-it.XXXXXX)
DAEMON_PID=""
NAMESPACES=()
CONFIG=""

fail() { echo "FAIL: $*" >&2; [[ -f $WORK/vswitchd.log ]] && { echo "--- vswitchd log" >&2; tail -30 "$WORK/vswitchd.log" >&2; }; exit 1; }
pass() { echo "PASS: $*"; }

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: needs root (network namespaces and TAP devices)"
    exit 77
  fi
  for tool in ip iperf3 ping python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup.sh installs it)"
  done
}

cleanup() {
  stop_second
  stop_daemon
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what"
    sleep 0.05
  done
}

# add_netns NAME IFNAME MAC ADDRESS: a namespace with a TAP the switch will attach.
add_netns() {
  local ns=$1 ifname=$2 mac=$3 addr=$4
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n "$ns" tuntap add dev "$ifname" mode tap
  ip -n "$ns" link set "$ifname" address "$mac" up
  ip -n "$ns" addr add "$addr/24" dev "$ifname"
}

# permanent_neighbour NS DEV ADDRESS MAC: NS resolves ADDRESS to MAC for good (nud
# permanent), for a test that counts every frame: no ARP, so no kernel re-validating an
# entry (a unicast probe delay_first_probe_time, 5 s, after the first use of a stale
# entry, such as one learned from the peer's ARP request, and its answer) crosses the
# switch while the test counts.
permanent_neighbour() {
  ip -n "$1" neigh replace "$3" lladdr "$4" nud permanent dev "$2"
}

ctl() { "$BIN/vswitchctl" --config "$CONFIG" "$@"; }

all_up() { all_up_of "$CONFIG"; }
all_up_of() {  # all_up_of CONFIG: every endpoint of that switch up (or disabled: enabled = false)
  local out
  out=$("$BIN/vswitchctl" --config "$1" ports) || return 1
  ! tail -n +2 <<<"$out" | awk '{print $4}' | grep -qvE '^(up|disabled)$'
}

start_daemon() {
  CONFIG=$1
  "$BIN/vswitchd" --config "$CONFIG" 2>"$WORK/vswitchd.log" &
  DAEMON_PID=$!
  wait_for 15 "every endpoint up" all_up
}

# start_second CONFIG: a second switch, for tests that join two (its log in
# $WORK/vswitchd2.log); waits until its endpoints are up. Stopped at exit.
SECOND_PID=""
start_second() {
  "$BIN/vswitchd" --config "$1" 2>"$WORK/vswitchd2.log" &
  SECOND_PID=$!
  wait_for 15 "every endpoint of the second switch up" all_up_of "$1"
}
stop_second() {
  if [[ -n $SECOND_PID ]] && kill -0 "$SECOND_PID" 2>/dev/null; then
    kill -INT "$SECOND_PID"
    wait "$SECOND_PID" || true
  fi
  SECOND_PID=""
}

stop_daemon() {
  if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -INT "$DAEMON_PID"
    wait "$DAEMON_PID" || true
  fi
  DAEMON_PID=""
}

# stat ENDPOINT EXPR: a value from `vswitchctl stats --json`, EXPR applied to the endpoint's
# object in Python, e.g. stat ns1 'e["drops"]["spoofed_source"]'.
stat() {
  ctl stats --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
e = next(x for x in d['endpoints'] if x['name'] == '$1')
print($2)"
}

# pid_of ENDPOINT: the endpoint's process.
pid_of() { ctl ports --json | python3 -c "
import json, sys
print(next(p['pid'] for p in json.load(sys.stdin)['ports'] if p['name'] == '$1'))"; }

# stat_is ENDPOINT EXPR OP VALUE: compares a stat with test(1)'s OP, reading it afresh each
# call (for wait_for: `wait_for 5 what stat_is a 'e["flooded"]' -gt 3`).
stat_is() { local v; v=$(stat "$1" "$2") || return 1; [ "$v" "$3" "$4" ]; }

# Kernel counters for accounting a loss outside the switch.
snmp() {  # snmp NS FIELD: a Udp counter from the namespace's /proc/net/snmp
  ip netns exec "$1" awk -v f="$2" '/^Udp:/ { if (!n) { for (i = 1; i <= NF; i++) h[i] = $i; n = 1 } else { for (i = 1; i <= NF; i++) if (h[i] == f) print $i } }' /proc/net/snmp
}
linkstat() {  # linkstat NS IF tx|rx FIELD
  ip -n "$1" -s -j link show "$2" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['stats64']['$3']['$4'])"
}
# kernel_udp_drops FROM TO: UDP datagrams FROM -> TO the kernel dropped on either side of
# the switch (each namespace's TAP is named as the namespace): the sender's socket buffer,
# its TAP's tx queue, the receiver's TAP and its socket buffer.
kernel_udp_drops() {
  echo $(( $(snmp "$1" SndbufErrors) + $(linkstat "$1" "$1" tx dropped) + $(linkstat "$2" "$2" rx dropped) + \
           $(snmp "$2" RcvbufErrors) ))
}

# udp_stream_ok JSON KERNEL_DROPS MIN_INTERVALS WHAT: an iperf3 --json UDP run (reported
# every 0.5 s) that never stalled (at least MIN_INTERVALS intervals, none at 0) and lost no
# datagram the kernel did not count dropping outside the switch (KERNEL_DROPS).
udp_stream_ok() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
kernel, least, what = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rates = [i["sum"]["bits_per_second"] for i in d["intervals"]]
s = d["end"]["sum"]
print("  %s: %d half-second intervals, lowest %.0f Mbit/s; %d of %d datagrams lost, "
      "%d dropped by the kernel outside the switch" % (what, len(rates), min(rates) / 1e6, s["lost_packets"], s["packets"], kernel))
sys.exit(0 if len(rates) >= least and min(rates) > 0 and s["lost_packets"] <= kernel and s["packets"] > 0 else 1)
PY
}
