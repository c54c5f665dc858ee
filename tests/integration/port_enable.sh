#!/usr/bin/env bash
# Ports turned on and off while the switch runs (enabled = false in the topology, then
# vswitchctl reload), during an iperf3 UDP stream between two other ports:
# - declared off: no process, no TAP, no vhost-user socket; `ports` says disabled;
# - turned on: vswitchd creates its TAP in its namespace (binds its socket) and starts it
#   alone; pings reach it from both other ports;
# - turned off: its process stops, the TAP it created leaves the namespace and its socket
#   file goes; its peers send it nothing (a ping to its address is dropped at the sender as
#   port_disabled, never put in its channel) and forget what they learned behind it;
# - turned on again: it forwards again;
# - a reload that turns on a port that cannot be (its socket path taken by a file) is
#   refused as a whole: the TAP made for another port turned on with it is removed;
# - the stream a -> b never stops: a and b keep their processes, drop nothing, and every
#   datagram iperf3 lost was lost outside the switch (counted by the kernel).
source "$(dirname "$0")/lib.sh"
require_root
add_netns vspe-a vspe-a 02:00:00:00:0b:01 10.79.0.1
add_netns vspe-b vspe-b 02:00:00:00:0b:02 10.79.0.2
ip netns del vspe-c 2>/dev/null || true
ip netns add vspe-c  # no TAP: the switch makes it when c is turned on
NAMESPACES+=(vspe-c)
ip -n vspe-c link set lo up
ip netns exec vspe-c sysctl -qw net.ipv6.conf.default.disable_ipv6=1  # as add_netns: no IPv6 chatter from c's TAPs
SOCK=$WORK/sock/v.sock
mkdir -m 0700 "$WORK/sock"
cat >"$WORK/live.toml" <<TOML
[switch]
name = "itpe"

[fabric]
ring_bytes = 1048576

[[endpoint]]
name = "a"
core = 0
mac = "02:00:00:00:0b:01"
frontend = "tap"
[endpoint.tap]
ifname = "vspe-a"
netns = "vspe-a"

[[endpoint]]
name = "b"
core = 1
mac = "02:00:00:00:0b:02"
frontend = "tap"
[endpoint.tap]
ifname = "vspe-b"
netns = "vspe-b"

[[endpoint]]
name = "c"
core = 1
mac = "02:00:00:00:0b:03"
enabled = false
frontend = "tap"
[endpoint.tap]
ifname = "vspe-c"
netns = "vspe-c"

[[endpoint]]
name = "v"
core = 0
enabled = false
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$SOCK"

[[endpoint]]
name = "w"
enabled = false
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/sock/w.sock"
TOML
set_enabled() {  # set_enabled NAME true|false
  python3 - "$WORK/live.toml" "$1" "$2" <<'PY'
import re, sys
p, name, value = sys.argv[1:]
s = open(p).read()
s2 = re.sub(r'(name = "%s"\n(?:(?!\[\[endpoint\]\]).)*?enabled = )(true|false)' % name, r'\g<1>' + value, s, count=1, flags=re.S)
assert s2 != s or ('enabled = ' + value) in s, "no enabled line for " + name
open(p, "w").write(s2)
PY
}
state_of() { ctl ports --json | python3 -c "
import json, sys
print(next(p['state'] for p in json.load(sys.stdin)['ports'] if p['name'] == '$1'))"; }
c_tap() { ip -n vspe-c link show vspe-c >/dev/null 2>&1; }
# Every namespace knows the others' addresses for good (permanent_neighbour), c's
# included, since c keeps its address and MAC each time it is made again: no ARP probe
# is sent to c while it is off, which would be a port_disabled drop where the test
# counts none.
neighbour() {  # neighbour NS INDEX: NS's permanent entry for 10.79.0.INDEX
  permanent_neighbour "$1" "$1" "10.79.0.$2" "02:00:00:00:0b:0$2"
}
neighbour vspe-a 2; neighbour vspe-a 3
neighbour vspe-b 1; neighbour vspe-b 3
c_address() {  # the namespace's side of c's new TAP: the address the test pings
  ip -n vspe-c link set vspe-c address 02:00:00:00:0b:03 up
  ip -n vspe-c addr add 10.79.0.3/24 dev vspe-c
  neighbour vspe-c 1; neighbour vspe-c 2
}

start_daemon "$WORK/live.toml"
[[ $(state_of c) == disabled && $(state_of v) == disabled && $(state_of w) == disabled ]] || fail "c, v, w are not disabled: $(ctl ports)"
[[ $(pid_of c) == 0 ]] || fail "a disabled port has a process: $(pid_of c)"
! c_tap || fail "a disabled port's TAP exists"
[[ ! -e $SOCK ]] || fail "a disabled port's socket exists"
grep -q '(disabled: c, v, w)' "$WORK/vswitchd.log" || fail "the log does not say which ports are disabled"
ip netns exec vspe-a ping -c 1 -W 2 -q 10.79.0.2 >/dev/null || fail "ping a -> b"
pass "declared off: no process, no TAP, no socket; ports says disabled"

# Turning on fails for w (a plain file where its socket goes): the reload is refused as a
# whole, and c, turned on in the same reload, is left as it was: no TAP, no process.
touch "$WORK/sock/w.sock"
set_enabled c true
set_enabled w true
set +e
out=$(ctl reload 2>&1); rc=$?
set -e
[[ $rc == 1 && $out == *"reload failed"* ]] || fail "a port that cannot be turned on: exit $rc, said: $out"
grep -q "is not a socket: not removing it; nothing applied" "$WORK/vswitchd.log" || fail "the failure is not in the log"
[[ $(state_of c) == disabled && $(state_of w) == disabled && $(pid_of c) == 0 ]] || fail "c or w changed: $(ctl ports)"
! c_tap || fail "the TAP made for c in the refused reload is still there"
[[ -f $WORK/sock/w.sock && ! -S $WORK/sock/w.sock ]] || fail "the file at w's socket path was touched"
rm "$WORK/sock/w.sock"
set_enabled c false
set_enabled w false
out=$(ctl reload) || fail "vswitchctl reload (back as it runs) exited $?: $out"
[[ $out == "reload: unchanged" ]] || fail "reload said: $out"
pass "a port that cannot be turned on refuses the reload: nothing made for the other port turned on with it"

pids() { echo "$(pid_of a) $(pid_of b)"; }
before=$(pids)
kernel0=$(kernel_udp_drops vspe-a vspe-b)
ip netns exec vspe-b iperf3 -s -1 -D -p 5212 -I "$WORK/iperf3.pid"
wait_for 5 "iperf3 server" ip netns exec vspe-b sh -c 'ss -ltn | grep -q :5212'
# 10 Mbit/s: b's 1 MiB channel holds some 0.8 s of it, so a pause of b's core while the
# other endpoint there restarts cannot fill it (at 50 Mbit/s, 170 ms could).
ip netns exec vspe-a iperf3 -c 10.79.0.2 -p 5212 -u -b 10M -l 1000 -t 8 -i 0.5 --json >"$WORK/iperf3.json" &
client=$!

set_enabled c true
set_enabled v true
out=$(ctl reload) || fail "vswitchctl reload (c, v on) exited $?: $out"
[[ $out == "reload: applied 2 change(s); turned on and up: c, v (each change in vswitchd's log)" ]] || fail "reload said: $out"
c_tap || fail "c's TAP was not made in its namespace"
[[ -S $SOCK ]] || fail "v's socket was not bound"
c_address
ip netns exec vspe-a ping -c 2 -i 0.2 -W 2 -q 10.79.0.3 >/dev/null || fail "ping a -> c after c was turned on"
ip netns exec vspe-b ping -c 2 -i 0.2 -W 2 -q 10.79.0.3 >/dev/null || fail "ping b -> c after c was turned on"
c_pid=$(pid_of c)
pass "turned on: c's TAP made and c forwarding, v's socket bound"

set_enabled c false
set_enabled v false
out=$(ctl reload) || fail "vswitchctl reload (c, v off) exited $?: $out"
[[ $out == "reload: applied 2 change(s); turned off and stopped: c, v (each change in vswitchd's log)" ]] || fail "reload said: $out"
[[ $(state_of c) == disabled && $(pid_of c) == 0 ]] || fail "c is not disabled: $(ctl ports)"
! kill -0 "$c_pid" 2>/dev/null || fail "c's process $c_pid still runs"
! c_tap || fail "the TAP the switch made for c is still in its namespace"
[[ ! -e $SOCK ]] || fail "v's socket file is still there"
wait "$client" || fail "iperf3 a -> b failed across the reloads"
[[ $(pids) == "$before" ]] || fail "a or b was restarted: $before -> $(pids)"
stat_is a 'e["drops_total"]' -eq 0 && stat_is b 'e["drops_total"]' -eq 0 ||
  fail "a or b dropped frames across the reloads: $(stat a 'e["drops"]') $(stat b 'e["drops"]')"
kernel=$(( $(kernel_udp_drops vspe-a vspe-b) - kernel0 ))
udp_stream_ok "$WORK/iperf3.json" "$kernel" 15 "a -> b across two reloads" || fail "the a -> b stream stalled, or lost datagrams the kernel did not drop, across the reloads"
pass "turned off: c stopped, its TAP and v's socket gone; a -> b dropped nothing and never stalled"

out_c=$(stat a 'e["peers"]["c"]["out_frames"]')
d0=$(stat a 'e["drops"]["port_disabled"]')
! ip netns exec vspe-a ping -c 3 -i 0.2 -W 1 -q 10.79.0.3 >/dev/null 2>&1 || fail "a ping reached c while it was off"
wait_for 5 "a dropping its pings to c as port_disabled" stat_is a 'e["drops"]["port_disabled"]' -ge $((d0 + 3))
stat_is a 'e["peers"]["c"]["out_frames"]' -eq "$out_c" || fail "a sent frames into a disabled port's channel"
pass "a disabled port gets nothing: a's frames to it are port_disabled drops"

set_enabled c true
out=$(ctl reload) || fail "vswitchctl reload (c on again) exited $?: $out"
[[ $out == "reload: applied 1 change(s); turned on and up: c (each change in vswitchd's log)" ]] || fail "reload said: $out"
c_tap || fail "c's TAP was not made again"
c_address
ip netns exec vspe-a ping -c 2 -i 0.2 -W 2 -q 10.79.0.3 >/dev/null || fail "ping a -> c after c was turned on again"
[[ $(state_of v) == disabled && $(state_of w) == disabled ]] || fail "v or w is not disabled: $(ctl ports)"
grep -q "endpoint c: enabled: false -> true" "$WORK/vswitchd.log" || fail "the change is not in the log"
pass "turned on again: c forwards"
