#!/usr/bin/env bash
# A switch whose fabric.max_frame (1514) is far below a 64 KiB TSO segment:
# - a frame longer than max_frame written into a's TAP (a's MTU raised to 4000, a 3042-byte
#   ping with DF set) is dropped and counted as frame_too_large, and nothing of it, whole
#   or cut to max_frame, reaches b;
# - TSO is off on the TAPs (TUNSETOFFLOAD without TSO4/TSO6), so TCP through them works
#   and never produces a frame_too_large drop (with TSO on, the kernel would hand the
#   switch 64 KiB segments).
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
static_neighbours  # every frame between the namespaces is one this test sent
sed 's/^\[fabric\]$/[fabric]\nmax_frame = 1514/' "$HERE/three-ns.toml" >"$WORK/small-frames.toml"
grep -q '^max_frame = 1514$' "$WORK/small-frames.toml" || fail "could not set max_frame"
start_daemon "$WORK/small-frames.toml"
grep -q "no TSO" "$WORK/vswitchd.log" || fail "vswitchd did not say TSO is off"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
wait_for 5 "counters to settle" stat_is b 'e["peers"]["a"]["in_frames"]' -gt 0
big0=$(stat a 'e["drops"]["frame_too_large"]')
rx0=$(stat a 'e["rx_frames"]')
b_in0=$(stat b 'e["peers"]["a"]["in_frames"]')
ip -n vsit-a link set vsit-a mtu 4000
! ip netns exec vsit-a ping -c 5 -i 0.05 -W 1 -q -M do -s 3000 10.78.0.2 >/dev/null 2>&1 ||
  fail "a 3042-byte frame crossed a switch with max_frame 1514"
wait_for 5 "5 frame_too_large drops on a" stat_is a 'e["drops"]["frame_too_large"]' -eq $((big0 + 5))
[[ $(stat a 'e["rx_frames"]') -eq $rx0 ]] || fail "an oversize frame was counted as received"
[[ $(stat b 'e["peers"]["a"]["in_frames"]') -eq $b_in0 ]] || fail "b received frames from a during the oversize pings"
ip -n vsit-a link set vsit-a mtu 1500
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b after the oversize frames"
# TCP from a to b (4 MiB): with TSO left on, a's kernel would hand the switch 64 KiB
# segments, each dropped as frame_too_large, and the transfer would stall.
big1=$(stat a 'e["drops"]["frame_too_large"]')
ip netns exec vsit-b python3 -c '
import socket
s = socket.socket(); s.bind(("10.78.0.2", 5201)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
open("'"$WORK"'/tcp_bytes", "w").write(str(n))' &
sink=$!
wait_for 10 "the TCP sink in b" ip netns exec vsit-b sh -c 'ss -ltn | grep -q 10.78.0.2:5201'
ip netns exec vsit-a timeout 20 python3 -c '
import socket
s = socket.create_connection(("10.78.0.2", 5201), timeout=20)
s.sendall(b"x" * (4 << 20)); s.close()' || fail "TCP a -> b did not complete"
wait "$sink" || fail "TCP sink in b failed"
[[ $(cat "$WORK/tcp_bytes") -eq $((4 << 20)) ]] || fail "b received $(cat "$WORK/tcp_bytes") of 4 MiB"
[[ $(stat a 'e["drops"]["frame_too_large"]') -eq $big1 ]] || fail "TCP produced frame_too_large drops: TSO is still on"
pass "oversize TAP frames dropped as frame_too_large, none forwarded cut; TSO off below 64 KiB frames, TCP intact"
