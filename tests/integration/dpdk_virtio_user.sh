#!/usr/bin/env bash
# DPDK's virtio-user driver (dpdk-testpmd) as an independent vhost-user front-end on our
# virtio-net device emulation. Hugepages are reserved here and released at the end.
#  1. our generator -> vhost-user endpoint -> testpmd rxonly, at a moderate rate: no frame
#     dropped once traffic flows (a guest short of buffers makes the frame wait, it is not
#     dropped), and the frames testpmd counts equal the frames the endpoint put into it;
#  2. testpmd txonly -> vhost-user endpoint -> generator endpoint (which counts them as
#     foreign frames): every frame testpmd's queue handed us is forwarded or a counted drop;
#  3. testpmd txonly -> switch -> testpmd rxonly: what the receiver counts equals what the
#     endpoint delivered (the sender's excess is dropped, counted, where it is flooded).
source "$(dirname "$0")/lib.sh"
require_root
command -v dpdk-testpmd >/dev/null || fail "dpdk-testpmd missing (scripts/setup.sh installs dpdk-dev)"
hp=/proc/sys/vm/nr_hugepages
hp_before=$(cat $hp)
mounted=0
TESTPMDS=()
dpdk_cleanup() {
  for p in "${TESTPMDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${TESTPMDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f /dev/hugepages/vsit*  # our testpmds' --file-prefix files
  echo "$hp_before" >$hp
  ((mounted)) && umount /dev/hugepages || true
}
trap 'dpdk_cleanup; cleanup' EXIT
echo $((hp_before + 512)) >$hp
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || { mount -t hugetlbfs nodev /dev/hugepages && mounted=1; }
(( $(awk '/HugePages_Free/ {print $2}' /proc/meminfo) >= 256 )) || fail "could not reserve hugepages"

CONFIG="$WORK/vu.toml"
cat >"$CONFIG" <<TOML
[switch]
name = "itvu$$"
[fabric]
ring_bytes = 1048576
max_frame = 9000
[[endpoint]]
name = "vu1"
core = 0
mac = "02:00:00:00:0e:01"
# testpmd sends from its own address, not this one: no port security on vu1.
port_security = false
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vu1.sock"
queue_size = 1024
[[endpoint]]
name = "vu2"
core = 1
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vu2.sock"
queue_size = 1024
[[endpoint]]
name = "gen"
core = 1
mac = "02:00:00:00:0e:03"
frontend = "generator"
[endpoint.generator]
rate_fps = 5000
sizes = [64, 1500, 512]
peer = "vu1"
TOML
start_daemon "$CONFIG"

testpmd() {  # testpmd NAME SOCKET MODE: starts one in the background, its log in $WORK/NAME.log
  # stdbuf: testpmd's periodic statistics must reach the log as they are printed (a file
  # would otherwise hold them in a 4 KiB stdio buffer and the waits below would starve).
  stdbuf -oL dpdk-testpmd -l 0-1 -n 1 -m 256 --no-pci --single-file-segments --file-prefix "vsit$1$$" \
    --vdev "net_virtio_user0,path=$2,queues=1,queue_size=1024" -- \
    --forward-mode="$3" --auto-start --stats-period 1 --total-num-mbufs=8192 >"$WORK/$1.log" 2>&1 &
  TESTPMDS+=($!)
}
stop_testpmd() {  # stop_testpmd PID: SIGINT, then its final statistics are in the log
  kill -INT "$1"
  wait "$1" || true
}
last() {  # last LOG FIELD: the last value testpmd printed for FIELD (RX-packets, TX-packets)
  grep -o "$2: *[0-9]*" "$1" | tail -1 | awk '{print $2}'
}
connected() { stat_is "$1" 'e["vu_connections"]' -ge "$2"; }

# 1. generator -> vu1 -> testpmd rxonly
testpmd rx1 "$WORK/vu1.sock" rxonly
rx1=${TESTPMDS[-1]}
wait_for 30 "testpmd to connect to vu1" connected vu1 1
# Frames that met a ring the driver had not filled yet are counted drops; from here on,
# with traffic flowing, none may be.
wait_for 30 "vu1 to deliver 1000 frames" stat_is vu1 'e["tx_frames"]' -gt 1000
refused0=$(stat vu1 'e["drops_total"]')
wait_for 30 "vu1 to deliver 10000 frames" stat_is vu1 'e["tx_frames"]' -gt 10000
gen_pid=$(pid_of gen)
kill -STOP "$gen_pid"  # the source pauses; the switch and testpmd drain
settle() { local a; a=$(stat "$1" 'e["tx_frames"]'); sleep 0.2; [[ $a == "$(stat "$1" 'e["tx_frames"]')" ]]; }
wait_for 10 "vu1 to drain" settle vu1
delivered=$(stat vu1 'e["tx_frames"]')
# testpmd prints its cumulative counts every second: wait until it has taken them all.
drained() { [[ $(last "$1" RX-packets) == "$2" ]]; }
wait_for 10 "testpmd to receive all $delivered frames" drained "$WORK/rx1.log" "$delivered"
# Read before the guest goes: frames the resumed generator sends to a vu1 without a guest
# are dropped as guest_not_ready (and counted) by design.
refused=$(( $(stat vu1 'e["drops_total"]') - refused0 ))
waits=$(stat vu1 'e["vu_rx_no_buffers"]')
stop_testpmd "$rx1"
kill -CONT "$gen_pid"
echo "1. generator -> testpmd rxonly: vu1 delivered $delivered = testpmd received; dropped while flowing: $refused; waits for guest buffers: $waits"
[[ $refused -eq 0 ]] || fail "$refused frames dropped at 5000 frames/s"
[[ $(stat vu1 'e["vu_bad_chains"]') -eq 0 ]] || fail "bad descriptor chains from DPDK"

# 2. testpmd txonly -> vu1 -> gen
foreign0=$(stat gen 'e["gen_foreign"]')
testpmd tx2 "$WORK/vu1.sock" txonly
tx2=${TESTPMDS[-1]}
wait_for 30 "testpmd to reconnect to vu1" connected vu1 2
wait_for 30 "gen to receive 100000 frames from testpmd" stat_is gen 'e["gen_foreign"]' -gt $((foreign0 + 100000))
stop_testpmd "$tx2"
settle_rx() { local a; a=$(stat vu1 'e["rx_frames"]'); sleep 0.2; [[ $a == "$(stat vu1 'e["rx_frames"]')" ]]; }
wait_for 10 "vu1 to drain" settle_rx
sent=$(last "$WORK/tx2.log" TX-packets)
read -r rx flooded out_gen out_vu2 flood_drops < <(stat vu1 'e["rx_frames"], e["flooded"], e["peers"]["gen"]["out_frames"], e["peers"]["vu2"]["out_frames"], e["drops"]["flood_peer_full"]' | tr -d '(),')
echo "2. testpmd txonly -> gen: testpmd sent $sent, vu1 took $rx, flooded $flooded: to gen $out_gen, to vu2 $out_vu2, flood drops $flood_drops"
(( rx <= sent && sent - rx <= 1024 )) || fail "vu1 took $rx of the $sent frames testpmd queued (more than a queue in flight)"
# testpmd's destination is unknown to the switch: every frame is flooded to both peers,
# and every copy is in a channel or a counted drop (the generator's 5000 fps to vu1 are
# unicast and not part of this sum).
(( 2 * flooded == out_gen + out_vu2 + flood_drops )) || fail "flood copies do not add up"
[[ $(stat vu1 'e["vu_bad_chains"]') -eq 0 ]] || fail "bad descriptor chains from DPDK"

# 3. testpmd txonly -> vu1 -> vu2 -> testpmd rxonly
testpmd rx3 "$WORK/vu2.sock" rxonly
rx3=${TESTPMDS[-1]}
wait_for 30 "testpmd to connect to vu2" connected vu2 1
d0=$(stat vu2 'e["tx_frames"]')
testpmd tx3 "$WORK/vu1.sock" txonly
tx3=${TESTPMDS[-1]}
wait_for 30 "vu2 to deliver 100000 frames" stat_is vu2 'e["tx_frames"]' -gt $((d0 + 100000))
stop_testpmd "$tx3"
wait_for 10 "vu2 to settle" settle vu2
delivered=$(stat vu2 'e["tx_frames"]')
wait_for 10 "testpmd to receive all $delivered frames" drained "$WORK/rx3.log" "$delivered"
stop_testpmd "$rx3"
waits=$(stat vu2 'e["vu_rx_no_buffers"]')
echo "3. testpmd txonly -> testpmd rxonly: vu2 delivered $delivered = testpmd received; waits for guest buffers: $waits"
pass "DPDK virtio-user on both sides: every frame delivered is a frame received, every other one counted"
