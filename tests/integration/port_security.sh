#!/usr/bin/env bash
# Under port security (on by default: three-ns.toml declares a's mac and says nothing
# more), frames from a whose source MAC is not a's are dropped and counted as
# spoofed_source; frames with a group source are dropped and counted as group_source_mac;
# none reaches b.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
static_neighbours  # every frame between the namespaces is one this test sent
start_daemon "$HERE/three-ns.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
wait_for 5 "counters to settle" stat_is b 'e["peers"]["a"]["in_frames"]' -gt 0
spoofed0=$(stat a 'e["drops"]["spoofed_source"]')
group0=$(stat a 'e["drops"]["group_source_mac"]')
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
# A group source (broadcast, then IPv4 multicast) is no station's address.
for src in ("ffffffffffff", "01005e000001"):
    for _ in range(50):
        s.send(dst + bytes.fromhex(src) + struct.pack("!H", 0x88B5) + b"group" * 10)
PY
wait_for 5 "100 spoofed_source drops" stat_is a 'e["drops"]["spoofed_source"]' -eq $((spoofed0 + 100))
wait_for 5 "100 group_source_mac drops" stat_is a 'e["drops"]["group_source_mac"]' -eq $((group0 + 100))
b_in=$(stat b 'e["peers"]["a"]["in_frames"]')
[[ $b_in -eq $b_in0 ]] || fail "b received $((b_in - b_in0)) frames from a during the spoofing"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b after spoofing"
[[ $(stat a 'e["drops"]["spoofed_source"]') -eq $((spoofed0 + 100)) ]] || fail "a group source counted as spoofed_source"
pass "100 spoofed frames dropped as spoofed_source, 100 group-source frames as group_source_mac, none delivered, genuine traffic unaffected"
