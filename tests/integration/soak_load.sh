#!/usr/bin/env bash
# The soak's load script (scripts/soak-load.sh) keeps every pair busy, so that the monitor's
# "a pair moved nothing for 30 s" means the path stopped, not the load:
#   - pings run without a pause for the whole run: a ping whose last replies are missing
#     must not leave the pair silent while it waits for them (a ping a minute did: iputils
#     waits -W seconds, busybox two round trips, and a starved guest then took tens of
#     seconds to start the next one);
#   - an iperf3 run whose stream never connects (iperf3 3.12 waits forever for a lost UDP
#     set-up datagram) is cut off and retried, and the load still ends on time.
# Two namespaces joined by a veth; the peer's iperf3 ports accept connections and never
# speak; it answers pings 3 s late once the load is up, and not at all for 25 s around the
# end of the load's first minute. The echo requests reaching it are timed there.
source "$(dirname "$0")/lib.sh"
require_root
cd "$ROOT"

a=vsl-a$$ b=vsl-b$$
for ns in "$a" "$b"; do ip netns add "$ns"; NAMESPACES+=("$ns"); ip -n "$ns" link set lo up; done
ip link add vsla netns "$a" type veth peer name vslb netns "$b"
ip -n "$a" addr add 10.81.0.1/24 dev vsla && ip -n "$a" link set vsla up
ip -n "$b" addr add 10.81.0.2/24 dev vslb && ip -n "$b" link set vslb up

# The peer: silent listeners on 5201 and 5202; echo replies from a raw socket (its kernel
# ignores echoes), at once until the file "delay" exists, then 3 s late (a starved guest's
# round trip), none while "drop" exists; and the arrival time of every echo request.
ip netns exec "$b" sysctl -qw net.ipv4.icmp_echo_ignore_all=1
cat >"$WORK/peer.py" <<'PY'
import heapq, os, select, socket, sys, time
out = open(sys.argv[1], "w", buffering=1)
ctl = sys.argv[2]
listeners = []
for port in (5201, 5202):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.81.0.2", port))
    s.listen(64)
    listeners.append(s)
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
held, due = [], []  # connections accepted and never answered; (time, n, reply, address)

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).to_bytes(2, "big")

n = 0
while True:
    wait = max(0.0, due[0][0] - time.monotonic()) if due else None
    r, _, _ = select.select(listeners + [icmp], [], [], wait)
    for s in r:
        if s is icmp:
            pkt, addr = s.recvfrom(2048)
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[ihl] != 8:  # not an echo request
                continue
            now = time.monotonic()
            out.write(f"{now:.3f}\n")
            if os.path.exists(f"{ctl}/drop"):
                continue
            body = bytes([0, 0, 0, 0]) + pkt[ihl + 4:]
            reply = body[:2] + checksum(body) + body[4:]
            n += 1
            heapq.heappush(due, (now + (3.0 if os.path.exists(f"{ctl}/delay") else 0.0), n, reply, addr))
        else:
            held.append(s.accept()[0])
    while due and due[0][0] <= time.monotonic():
        _, _, reply, addr = heapq.heappop(due)
        icmp.sendto(reply, addr)
PY
ip netns exec "$b" python3 "$WORK/peer.py" "$WORK/echo.times" "$WORK" &
peer=$!
wait_for 10 "the peer's listeners" ip netns exec "$b" sh -c "ss -ltn | grep -q ':5202 '"
ip netns exec "$a" ping -c 1 -W 2 10.81.0.2 >/dev/null || fail "the peer's echo replies do not arrive"

secs=80
SOAK_SETUP_S=3 timeout $((secs + 60)) ip netns exec "$a" sh scripts/soak-load.sh a "$secs" "$secs" \
  b@10.81.0.2 b@10.81.0.2 64K "b@10.81.0.2" "$WORK/a.log" 5 >"$WORK/load.out" 2>&1 &
load=$!
wait_for 30 "the load's UP line" grep -q "VSOAK UP" "$WORK/a.log"
up=$(python3 -c 'import time; print(f"{time.monotonic():.3f}")')
touch "$WORK/delay"
# The first minute's pings end about 60 s after UP: no replies from UP+45 s to UP+70 s.
sleep 45
touch "$WORK/drop"
sleep 25
rm "$WORK/drop"
rc=0
wait "$load" || rc=$?
kill "$peer" 2>/dev/null || true
((rc == 0)) || fail "soak-load.sh ended with $rc (124: it did not end within $((secs + 60)) s): $(tail -5 "$WORK/load.out") $(tail -5 "$WORK/a.log")"
grep -q "VSOAK DONE host=a" "$WORK/a.log" || fail "no DONE line: $(tail -5 "$WORK/a.log")"

# Pings: no gap above 2.5 s between two requests from UP until 5 s before the end.
read -r n gap at < <(python3 - "$WORK/echo.times" "$up" "$secs" <<'PY'
import sys
up, secs = float(sys.argv[2]), float(sys.argv[3])
t = [float(x) for x in open(sys.argv[1]) if up - 2 <= float(x) <= up + secs - 5]
gaps = [(b - a, a - up) for a, b in zip(t, t[1:])]
g = max(gaps, default=(99.0, 0.0))
print(len(t), f"{g[0]:.2f}", f"{g[1]:.1f}")
PY
)
((n >= secs - 10)) || fail "only $n echo requests reached the peer in $((secs - 5)) s"
python3 -c "import sys; sys.exit(0 if float('$gap') <= 2.5 else 1)" ||
  fail "the pings paused for $gap s at UP+$at s (replies 3 s late, none from UP+45 s to UP+70 s)"
sent=$(grep -ho "VSOAK PING src=a dst=b sent=[0-9]* recv=[0-9]*" "$WORK/a.log" | awk -F'[= ]' '{s += $8; r += $10} END {print s + 0, r + 0}')
read -r s r <<<"$sent"
((s >= secs - 10 && s <= secs && r < s && r >= s - 30)) || fail "ping reports: sent $s, received $r (expected about $secs sent and 25 lost): $(grep PING "$WORK/a.log")"

# iperf3: every run was cut off and retried; each stream ended with rc=98 (never connected).
for proto in tcp udp; do
  line=$(grep "VSOAK SEG proto=$proto src=a dst=b" "$WORK/a.log" | tail -1)
  [[ $line == *" rc=98 "* ]] || fail "$proto: expected a never-connected segment (rc=98): ${line:-none}"
  tries=$(sed -n 's/.* tries=\([0-9]*\) .*/\1/p' <<<"$line")
  ((tries >= 5)) || fail "$proto: $tries tries in $secs s with runs cut off after 3 s"
done
pass "pings ran without a pause ($n requests, largest gap $gap s, $s sent / $r answered); iperf3 runs that never connected were cut off and retried ($tries tries)"
