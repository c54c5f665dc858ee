#!/usr/bin/env bash
# The main job: three network namespaces, each attached to vswitch through a TAP endpoint
# pinned to a core (configs/netns-demo.toml); ping across all of them, iperf3 TCP for 10 s
# between two, then the switch's counters. Removes everything it made, also on Ctrl-C.
# Without root it says so and runs the generator topology (configs/generator.toml) instead.
#   scripts/demo.sh [--seconds N]     (iperf3 / generator duration, default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10
[[ "${1:-}" == "--seconds" ]] && seconds="$2"

if [[ ! -x build/bin/vswitchd || ! -x build/bin/vswitchctl ]] || [[ -n "$(find vswitch shm endpoints -newer build/bin/vswitchd -name '*.[ch]pp' 2>/dev/null | head -1)" ]]; then
  scripts/setup.sh
fi
bin=build/bin
work=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
daemon_pid=""

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "demo: timed out waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}

stop_daemon() {
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -INT "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  daemon_pid=""
}

all_up() {  # all_up CONFIG: every endpoint of the running switch reports "up"
  local out
  out=$("$bin/vswitchctl" --config "$1" ports) || return 1
  ! tail -n +2 <<<"$out" | awk '{print $4}' | grep -qv '^up$'
}

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: not root, so no network namespaces or TAP devices: running the generator topology instead"
  cfg=configs/generator.toml
  trap 'stop_daemon; rm -rf "$work"' EXIT
  trap 'exit 130' INT TERM
  "$bin/vswitchd" --config "$cfg" 2>"$work/vswitchd.log" &
  daemon_pid=$!
  wait_for 10 "vswitchd" all_up "$cfg"
  echo "demo: two generator endpoints exchanging checked frames for ${seconds} s"
  sleep "$seconds"  # the traffic runs for this long; nothing is synchronised on it
  "$bin/vswitchctl" --config "$cfg" stats
  stop_daemon
  exit 0
fi

cfg=configs/netns-demo.toml
names=(ns1 ns2 ns3)
cleanup() {
  stop_daemon
  for i in 1 2 3; do ip netns del "vswitch-ns$i" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in 1 2 3; do
  ns="vswitch-ns$i"
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" tuntap add dev "vsw-ns$i" mode tap
  ip -n "$ns" link set "vsw-ns$i" address "02:00:00:00:01:0$i" up
  ip -n "$ns" addr add "10.77.1.$i/24" dev "vsw-ns$i"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done

"$bin/vswitchd" --config "$cfg" 2>"$work/vswitchd.log" &
daemon_pid=$!
wait_for 10 "vswitchd to bring every endpoint up" all_up "$cfg" || { cat "$work/vswitchd.log"; exit 1; }
echo "== vswitchctl ports"
"$bin/vswitchctl" --config "$cfg" ports

echo "== ping between every pair"
for a in 1 2 3; do
  for b in 1 2 3; do
    ((a == b)) && continue
    ip netns exec "vswitch-ns$a" ping -c 3 -i 0.2 -W 2 -q "10.77.1.$b" | tail -2 | head -1 |
      sed "s/^/  ns$a -> ns$b: /"
  done
done

echo "== iperf3 TCP ns1 -> ns2, ${seconds} s"
ip netns exec vswitch-ns2 iperf3 -s -1 -D -I "$work/iperf3.pid" >/dev/null
wait_for 10 "iperf3 server" ip netns exec vswitch-ns2 sh -c 'ss -ltn | grep -q ":5201 "'
ip netns exec vswitch-ns1 iperf3 -c 10.77.1.2 -t "$seconds" -f g | grep -E "sender|receiver"

echo "== vswitchctl fdb"
"$bin/vswitchctl" --config "$cfg" fdb
echo "== vswitchctl stats"
"$bin/vswitchctl" --config "$cfg" stats
