#!/usr/bin/env bash
# iperf3 through the switch: TCP, then UDP at full offered load with 1400-byte and 64-byte
# datagrams. Every UDP datagram iperf3 reports lost must be accounted for by a counter:
# the sender's UDP send-buffer errors, qdisc and TAP drops (a TAP the switch reads too
# slowly drops at its queue), the switch's drop counters, the receiver's TAP drops and UDP
# receive-buffer errors (InErrors would count those twice).
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
SECONDS_PER_RUN=${IPERF_SECONDS:-5}
setup_three
start_daemon "$HERE/three-ns.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"

qdisc_drops() {  # a TAP is usually noqueue (no qdisc, empty output): then 0
  ip netns exec "$1" tc -s -j qdisc show dev "$2" | python3 -c "
import json, sys
t = sys.stdin.read().strip()
print(sum(q.get('drops', 0) for q in json.loads(t)) if t else 0)"
}
switch_drops() { echo $(( $(stat a 'e["drops_total"]') + $(stat b 'e["drops_total"]') )); }
components() {
  echo "sndbuf=$(snmp vsit-a SndbufErrors) tapa_txdrop=$(linkstat vsit-a vsit-a tx dropped) qdisc=$(qdisc_drops vsit-a vsit-a)" \
       "switch=$(switch_drops) tapb_rxdrop=$(linkstat vsit-b vsit-b rx dropped) rcvbuf=$(snmp vsit-b RcvbufErrors)"
}
accounted() {
  echo $(( $(snmp vsit-a SndbufErrors) + $(linkstat vsit-a vsit-a tx dropped) + $(qdisc_drops vsit-a vsit-a) + \
           $(switch_drops) + $(linkstat vsit-b vsit-b rx dropped) + $(snmp vsit-b RcvbufErrors) ))
}

settled() {  # b's loop did no work for 0.2 s (its final counters are published)
  local before; before=$(stat b 'e["loops"]'); sleep 0.2; [[ $before == "$(stat b 'e["loops"]')" ]]
}
server() { ip netns exec vsit-b iperf3 -s -1 -D -I "$WORK/iperf3.pid" >/dev/null;
           wait_for 10 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q ":5201 "'; }

server
ip netns exec vsit-a iperf3 -c 10.78.0.2 -t "$SECONDS_PER_RUN" -J >"$WORK/tcp.json" || fail "iperf3 TCP"
tcp=$(python3 -c "import json; print(round(json.load(open('$WORK/tcp.json'))['end']['sum_received']['bits_per_second'] / 1e9, 2))")
python3 -c "import json,sys; sys.exit(0 if json.load(open('$WORK/tcp.json'))['end']['sum_received']['bytes'] > 0 else 1)" ||
  fail "TCP moved no data"
echo "TCP: $tcp Gbit/s"

for len in 1400 64; do
  wait_for 10 "previous iperf3 server to exit" sh -c "! ip netns exec vsit-b ss -ltn | grep -q ':5201 '"
  server
  before=$(accounted)
  components >&2
  ip netns exec vsit-a iperf3 -c 10.78.0.2 -u -b 0 -l "$len" -t "$SECONDS_PER_RUN" -J >"$WORK/udp$len.json" ||
    fail "iperf3 UDP -l $len"
  # The switch's counters reach the stats region when its loops go idle after the run.
  wait_for 5 "counters to settle" settled
  after=$(accounted)
  components >&2
  read -r sent lost gbps < <(python3 -c "
import json
s = json.load(open('$WORK/udp$len.json'))['end']['sum']
print(s['packets'], s['lost_packets'], round(s['bits_per_second'] / 1e9, 3))")
  counted=$((after - before))
  echo "UDP -l $len: $gbps Gbit/s sent by client, $sent datagrams, iperf3 lost $lost, counters account for $counted"
  # No silent loss: every datagram iperf3 lost is a counted drop (1% slack for a datagram
  # merely late at the end of the run). The counters may exceed iperf3's figure by the
  # datagrams dropped after the last one the server received, which no gap reveals.
  (( lost <= counted + lost / 100 + 20 )) || fail "UDP -l $len: iperf3 lost $lost datagrams but counters explain only $counted"
  (( counted <= lost + lost / 20 + 1000 )) || fail "UDP -l $len: counters show $counted drops but iperf3 lost only $lost"
  (( sent > 0 && lost < sent )) || fail "UDP -l $len: nothing got through"
done
pass "TCP and UDP through the switch; every lost UDP datagram is a counted drop"
