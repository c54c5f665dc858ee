#!/usr/bin/env bash
# Under port security, frames from a whose source MAC is not a's are dropped and counted
# as spoofed_source; none reaches b.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
wait_for 5 "counters to settle" stat_is b 'e["peers"]["a"]["in_frames"]' -gt 0
spoofed0=$(stat a 'e["drops"]["spoofed_source"]')
b_in0=$(stat b 'e["peers"]["a"]["in_frames"]')
ip netns exec vsit-a python3 - <<'PY'
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("vsit-a", 0))
dst = bytes.fromhex("02000000 0a02".replace(" ", ""))
src = bytes.fromhex("026666666666")
frame = dst + src + struct.pack("!H", 0x88B5) + b"spoofed" * 8
for _ in range(100):
    s.send(frame)
PY
wait_for 5 "100 spoofed_source drops" stat_is a 'e["drops"]["spoofed_source"]' -eq $((spoofed0 + 100))
b_in=$(stat b 'e["peers"]["a"]["in_frames"]')
[[ $b_in -eq $b_in0 ]] || fail "b received $((b_in - b_in0)) frames from a during the spoofing"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b after spoofing"
pass "100 spoofed frames dropped as spoofed_source, none delivered, genuine traffic unaffected"
