#!/usr/bin/env bash
# VLANs across two switches joined by a trunk. (This kernel has no 802.1Q devices, so no
# namespace terminates a VLAN itself: the trunk ports of two vswitchd instances are
# joined by a plain Linux bridge, a wire that carries tagged frames as they are.)
#   switch 1: a (access, VLAN 10), c (access, VLAN 20), trunk1 (trunk [10, 20])
#   switch 2: b (access, VLAN 10), d (access, VLAN 20), trunk2 (trunk [10, 20])
# c also holds an address in VLAN 10's subnet, so that only the switches keep it from a.
# - a <-> b and c <-> d ping across the trunk; a cannot reach c's address in its subnet
#   (its ARP broadcasts never leave VLAN 10) and no frame of a's reaches c;
# - on the wire between the trunks, a's frames carry VLAN 10's tag and c's VLAN 20's;
# - each switch learns the far stations behind its trunk in their own VLAN (vswitchctl fdb);
# - iperf3 TCP a -> b and d -> c: TSO segments get their VLAN's tag on the way into one
#   trunk and lose it on the way out of the other, checksum offsets moved both times;
# - frames tagged with a VLAN a port does not carry (sent with a raw socket on an access
#   port, and on the wire into a trunk) are dropped as vlan_not_allowed and counted.
source "$(dirname "$0")/lib.sh"
require_root

add_netns vsvl-a vsvl-a 02:00:00:00:0f:01 10.80.10.1
add_netns vsvl-b vsvl-b 02:00:00:00:0f:02 10.80.10.2
add_netns vsvl-c vsvl-c 02:00:00:00:0f:03 10.80.20.3
add_netns vsvl-d vsvl-d 02:00:00:00:0f:04 10.80.20.4
ip -n vsvl-c addr add 10.80.10.3/24 dev vsvl-c
ip netns del vsvl-w 2>/dev/null || true
ip netns add vsvl-w
NAMESPACES+=(vsvl-w)
ip -n vsvl-w link set lo up
# No IPv6 on the wire: the kernel's own untagged router solicitations (sent on and on, with
# backoff) would reach the trunks as vlan_not_allowed drops the last check counts exactly.
ip netns exec vsvl-w sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n vsvl-w link add wire type bridge
for t in vsvl-t1 vsvl-t2; do
  ip -n vsvl-w tuntap add dev "$t" mode tap
  ip -n vsvl-w link set "$t" master wire
  ip -n vsvl-w link set "$t" up
done
ip -n vsvl-w link set wire up

switch_toml() {  # switch_toml N UID_BASE ACCESS10 ACCESS20
  cat <<TOML
[switch]
name = "itvl$1"
endpoint_uid_base = $2

[[endpoint]]
name = "$3"
mac = "$5"
frontend = "tap"
vlan = 10
[endpoint.tap]
ifname = "vsvl-$3"
netns = "vsvl-$3"

[[endpoint]]
name = "$4"
mac = "$6"
frontend = "tap"
vlan = 20
[endpoint.tap]
ifname = "vsvl-$4"
netns = "vsvl-$4"

[[endpoint]]
name = "trunk$1"
frontend = "tap"
trunk = [10, 20]
[endpoint.tap]
ifname = "vsvl-t$1"
netns = "vsvl-w"
TOML
}
switch_toml 1 60600 a c 02:00:00:00:0f:01 02:00:00:00:0f:03 >"$WORK/s1.toml"
switch_toml 2 60700 b d 02:00:00:00:0f:02 02:00:00:00:0f:04 >"$WORK/s2.toml"
start_second "$WORK/s2.toml"
start_daemon "$WORK/s1.toml"
ctl2() { "$BIN/vswitchctl" --config "$WORK/s2.toml" "$@"; }

# On the wire: the VLAN of the first frame from each of a and c (the kernel hands a
# packet socket the tag as auxiliary data). Ready once the file says so.
ip netns exec vsvl-w python3 - "$WORK/wire" <<'PY' &
import socket, struct, sys, time
out = sys.argv[1]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("vsvl-t1", 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.settimeout(0.5)
open(out + ".ready", "w").close()
seen, deadline = {}, time.time() + 20
while len(seen) < 2 and time.time() < deadline:
    try:
        data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(20))
    except socket.timeout:
        continue
    src = data[6:12].hex(":")
    vid = None
    for level, kind, value in anc:
        if level == 263 and kind == 8:  # struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
            status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", value[:20])
            if status & 0x10:  # TP_STATUS_VLAN_VALID
                vid = tci & 0xfff
    if vid is None and data[12:14] == b"\x81\x00":
        vid = int.from_bytes(data[14:16], "big") & 0xfff
    if src in ("02:00:00:00:0f:01", "02:00:00:00:0f:03"):
        seen.setdefault(src, vid)
open(out, "w").write(" ".join(f"{k}={v}" for k, v in sorted(seen.items())))
PY
sniffer=$!
wait_for 10 "the wire's sniffer" test -e "$WORK/wire.ready"

ip netns exec vsvl-a ping -c 2 -i 0.2 -W 2 -q 10.80.10.2 >/dev/null || fail "ping a -> b (VLAN 10 across the trunk)"
ip netns exec vsvl-c ping -c 2 -i 0.2 -W 2 -q 10.80.20.4 >/dev/null || fail "ping c -> d (VLAN 20 across the trunk)"
ip netns exec vsvl-d ping -c 2 -i 0.2 -W 2 -q 10.80.20.3 >/dev/null || fail "ping d -> c"
pass "ping within VLAN 10 and within VLAN 20, across a trunk between two switches"
wait "$sniffer" || fail "the wire's sniffer failed"
[[ $(cat "$WORK/wire") == "02:00:00:00:0f:01=10 02:00:00:00:0f:03=20" ]] ||
  fail "on the wire between the trunks: $(cat "$WORK/wire") (a's frames should carry VLAN 10, c's VLAN 20)"
pass "on the trunk, a's frames carry VLAN 10's tag and c's VLAN 20's"

! ip netns exec vsvl-a ping -c 3 -i 0.2 -W 1 -q 10.80.10.3 >/dev/null 2>&1 || fail "a reached c across VLANs"
stat_is c 'e["peers"]["a"]["in_frames"]' -eq 0 || fail "frames of a's (VLAN 10) reached c (VLAN 20)"
stat_is a 'e["peers"]["c"]["out_frames"]' -eq 0 || fail "a sent frames into c's channel"
pass "VLAN 10 never reaches VLAN 20, not even c's address in VLAN 10's subnet"

learned() {  # learned CTL ENDPOINT MAC PORT VLAN
  "$1" fdb --json | python3 -c "
import json, sys
f = json.load(sys.stdin)['fdb']
sys.exit(0 if any(e['endpoint'] == '$2' and e['mac'] == '$3' and e['port'] == '$4' and e['vlan'] == $5 for e in f) else 1)"
}
wait_for 5 "switch 1 to learn b behind its trunk in VLAN 10" learned ctl a 02:00:00:00:0f:02 trunk1 10
wait_for 5 "switch 1 to learn d behind its trunk in VLAN 20" learned ctl c 02:00:00:00:0f:04 trunk1 20
wait_for 5 "switch 2's trunk to learn a in VLAN 10" learned ctl2 trunk2 02:00:00:00:0f:01 trunk2 10
ctl fdb | awk '$1 == "c" && $2 == "02:00:00:00:0f:04" && $3 == "20" && $4 == "trunk1" {f = 1} END {exit !f}' ||
  fail "vswitchctl fdb does not show the VLAN: $(ctl fdb)"
pass "each switch learns the far stations behind its trunk, each in its VLAN (vswitchctl fdb)"

bad0=$(stat trunk1 'e["drops"]["bad_net_header"]')
for pair in "vsvl-b vsvl-a 10.80.10.2" "vsvl-c vsvl-d 10.80.20.3"; do
  read -r server client addr <<<"$pair"
  ip netns exec "$server" iperf3 -s -1 -D -I "$WORK/iperf3.pid" >/dev/null
  wait_for 10 "iperf3 server in $server" ip netns exec "$server" sh -c 'ss -ltn | grep -q ":5201 "'
  ip netns exec "$client" iperf3 -c "$addr" -t 2 -J >"$WORK/tcp.json" || fail "iperf3 TCP $client -> $server"
  bits=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$WORK/tcp.json")
  [[ $bits -gt 50000000 ]] || fail "TCP $client -> $server across the trunk: only $bits bit/s"
  wait_for 10 "the iperf3 server in $server to exit" sh -c "! ip netns exec $server ss -ltn | grep -q ':5201 '"
  echo "TCP $client -> $server across the trunk: $((bits / 1000000)) Mbit/s"
done
stat_is trunk1 'e["drops"]["bad_net_header"]' -eq "$bad0" || fail "tagging made bad headers"
[[ $(ctl2 stats --json | python3 -c 'import json,sys; print(sum(e["drops"]["bad_net_header"] for e in json.load(sys.stdin)["endpoints"]))') -eq 0 ]] ||
  fail "untagging made bad headers on switch 2"
pass "TCP across the trunk both ways: tags put in and taken out of TSO segments"

# Raw frames tagged with VLAN 30: from a's namespace into its access port, and from the
# wire into trunk1.
send_tagged() {  # send_tagged NAMESPACE IFNAME VID
  ip netns exec "$1" python3 - "$2" "$3" <<'PY'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
vid = int(sys.argv[2])
frame = (b"\xff" * 6 + bytes.fromhex("02000000ff30") + b"\x81\x00" + vid.to_bytes(2, "big") + b"\x08\x06" +
         bytes(46))
for _ in range(3):
    s.send(frame)
PY
}
a0=$(stat a 'e["drops"]["vlan_not_allowed"]')
t0=$(stat trunk1 'e["drops"]["vlan_not_allowed"]')
send_tagged vsvl-a vsvl-a 30
wait_for 5 "3 vlan_not_allowed drops on a" stat_is a 'e["drops"]["vlan_not_allowed"]' -eq $((a0 + 3))
send_tagged vsvl-w vsvl-t1 30
wait_for 5 "3 vlan_not_allowed drops on trunk1" stat_is trunk1 'e["drops"]["vlan_not_allowed"]' -eq $((t0 + 3))
pass "frames of a VLAN the port does not carry are dropped as vlan_not_allowed, counted"
