#!/usr/bin/env bash
# `vswitchctl capture` read by a real tshark. Against a reference capture tshark itself
# takes on the namespace's TAP, the switch port's capture holds the same frames (fields
# and payload bytes), with the right direction (rx inbound, tx outbound); --count returns
# after exactly N frames; -w - feeds `tshark -r -`; --snaplen cuts the copy and keeps the
# frame's length; a second capture of the same endpoint is refused while one runs; a
# capture killed with SIGKILL leaves nothing behind that stops the next one; SIGTERM ends
# a capture with its summary; a TCP stream captured at full speed wakes the capture from
# an endpoint under its system call filter (no restart) and loses nothing; the traffic
# loses nothing while it is captured; the timestamps are wall-clock time; the file is
# the caller's alone (0600); usage mistakes are refused.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
command -v tshark >/dev/null || fail "tshark is missing (scripts/setup.sh installs it)"

setup_three
# Static neighbours: no ARP, so every frame on the wire is one this test sent.
permanent_neighbour vsit-a vsit-a 10.78.0.2 02:00:00:00:0a:02
permanent_neighbour vsit-b vsit-b 10.78.0.1 02:00:00:00:0a:01
start_daemon "$HERE/three-ns.toml"

# capture_bg NAME ARGS...: a capture in the background, its standard error in
# $WORK/NAME.err; returns once the capture says it is attached (its request is written,
# so every frame from now on is copied).
capture_bg() {
  local name=$1; shift
  "$BIN/vswitchctl" --config "$CONFIG" capture "$@" 2>"$WORK/$name.err" &  # not ctl: $! must be vswitchctl
  CAP_PID=$!
  wait_for 10 "capture $name to attach" attached_or_gone "$name" "$CAP_PID"
  grep -q "capturing on" "$WORK/$name.err" || fail "capture $name did not start: $(cat "$WORK/$name.err")"
}
attached_or_gone() { grep -q "capturing on" "$WORK/$1.err" || ! kill -0 "$2" 2>/dev/null; }
# wait_exit PID SECONDS: waits for a capture (ours or tshark's) to return by itself; its status.
wait_exit() {
  local pid=$1 limit=$2 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || { kill -9 "$pid"; fail "capture still running after ${limit}s"; }
    sleep 0.05
  done
  wait "$pid"
}
fields() { tshark -r "$1" -T fields -E separator=' ' "${@:2}"; }

# 1. Both directions of a's port against tshark's own capture on a's TAP: 20 pings of
# 1000 bytes with a pattern, so the payload is checked too.
ip netns exec vsit-a tshark -i vsit-a -f icmp -c 40 -w "$WORK/ref.pcapng" 2>"$WORK/ref.err" &
ref=$!
wait_for 20 "tshark to capture on vsit-a" grep -q "Capturing on" "$WORK/ref.err"
capture_bg both a --count 40 -w "$WORK/a.pcapng"
cap=$CAP_PID
ip netns exec vsit-a ping -q -c 20 -i 0.02 -s 1000 -p 5657534954434821 10.78.0.2 >"$WORK/ping1" ||
  fail "pings through the switch failed while captured: $(cat "$WORK/ping1")"
grep -q " 0% packet loss" "$WORK/ping1" || fail "pings lost while captured: $(cat "$WORK/ping1")"
wait_exit "$cap" 20 || fail "capture a failed: $(cat "$WORK/both.err")"
wait_exit "$ref" 20 || fail "the reference tshark failed: $(cat "$WORK/ref.err")"
grep -q "40 frames written; endpoint a copied 40, missed 0" "$WORK/both.err" ||
  fail "capture a's summary: $(cat "$WORK/both.err")"
# The same frames: type, sequence, length, addresses and payload bytes, in order within
# each direction. The reference sees them on the namespace's side of the TAP; ours on the
# switch's.
cols=(-e frame.len -e eth.src -e eth.dst -e ip.src -e ip.dst -e icmp.type -e icmp.seq -e data.data)
fields "$WORK/ref.pcapng" "${cols[@]}" >"$WORK/ref.txt"
fields "$WORK/a.pcapng" "${cols[@]}" >"$WORK/a.txt"
[[ $(wc -l <"$WORK/a.txt") == 40 ]] || fail "capture a holds $(wc -l <"$WORK/a.txt") frames, not 40"
# Each direction in its own order. Between the two the order may differ: the TAP has
# request n+1 from the namespace while the switch's reply n is on its way to the TAP,
# and the port takes that request only after it wrote the reply.
for type in 8 0; do
  awk -v t=$type '$6 == t' "$WORK/ref.txt" >"$WORK/ref.$type"
  awk -v t=$type '$6 == t' "$WORK/a.txt" >"$WORK/a.$type"
  [[ $(wc -l <"$WORK/a.$type") == 20 ]] || fail "capture a holds $(wc -l <"$WORK/a.$type") frames of ICMP type $type, not 20"
  diff "$WORK/ref.$type" "$WORK/a.$type" >"$WORK/diff" ||
    fail "the port's capture of ICMP type $type differs from tshark's on the TAP: $(head "$WORK/diff")"
done
grep -q 5657534954434821 "$WORK/a.txt" || fail "the ping pattern is not in the captured payload"
# Direction: echo requests came from a's namespace into the switch (inbound), replies
# went out to it (outbound); pcapng's epb_flags carry it.
fields "$WORK/a.pcapng" -e frame.packet_flags_direction -e icmp.type | sort | uniq -c >"$WORK/dirs"
grep -Eq '^ +20 (1|0x0*1) 8$' "$WORK/dirs" || fail "requests are not 20 inbound frames: $(cat "$WORK/dirs")"
grep -Eq '^ +20 (2|0x0*2) 0$' "$WORK/dirs" || fail "replies are not 20 outbound frames: $(cat "$WORK/dirs")"
tshark -r "$WORK/a.pcapng" -T fields -e frame.interface_name -c 1 | grep -qx a || fail "the interface is not named after the endpoint"
# Timestamps: wall-clock nanoseconds, within the few seconds this capture took.
first=$(tshark -r "$WORK/a.pcapng" -T fields -e frame.time_epoch -c 1)
python3 -c "import sys, time; t = float('$first'); sys.exit(0 if abs(time.time() - t) < 30 else 1)" ||
  fail "the first frame's time $first is not now ($(date +%s))"
[[ $(command stat -c %a "$WORK/a.pcapng") == 600 ]] || fail "the capture file is mode $(command stat -c %a "$WORK/a.pcapng"), not 600"
pass "capture of both directions matches tshark on the TAP (40 frames, payload, directions, times)"

# 2. One direction to standard output, read by tshark as it comes; --snaplen.
ctl capture b --direction tx --count 10 --snaplen 64 -w - 2>"$WORK/pipe.err" |
  tshark -r - -T fields -E separator=' ' -e frame.cap_len -e frame.len -e icmp.type >"$WORK/pipe.txt" 2>"$WORK/tshark.err" &
pipe=$!
wait_for 10 "capture b to attach" grep -q "capturing on" "$WORK/pipe.err"
ip netns exec vsit-a ping -q -c 10 -i 0.02 -s 1000 10.78.0.2 >/dev/null || fail "pings failed"
wait_exit "$pipe" 20 || fail "capture b | tshark failed: $(cat "$WORK/pipe.err" "$WORK/tshark.err")"
[[ $(grep -c '^64 1042 8$' "$WORK/pipe.txt") == 10 ]] ||
  fail "tshark -r - did not read 10 echo requests cut to 64 of 1042 bytes: $(head -3 "$WORK/pipe.txt")"
pass "capture -w - | tshark -r -: 10 frames of b's tx, 64 of 1042 bytes each"

# 3. One capture per endpoint; a capture killed with SIGKILL leaves nothing behind.
capture_bg first c -w "$WORK/c.pcapng"
first=$CAP_PID
if ctl capture c -w "$WORK/c2.pcapng" 2>"$WORK/second.err"; then fail "a second capture of c started"; fi
grep -q 'endpoint "c" is already being captured' "$WORK/second.err" || fail "second capture: $(cat "$WORK/second.err")"
kill -9 "$first"
wait "$first" 2>/dev/null || true
capture_bg again c --count 5 -w "$WORK/c3.pcapng"
again=$CAP_PID
ip netns exec vsit-a ping -q -c 5 -i 0.02 10.78.0.3 >/dev/null 2>&1 || true  # no static neighbour: ARP too
wait_exit "$again" 20 || fail "the capture after a killed one failed: $(cat "$WORK/again.err")"
[[ $(tshark -r "$WORK/c3.pcapng" | wc -l) == 5 ]] || fail "the capture after a killed one did not write 5 frames"
pass "a second capture is refused; after kill -9 the next one works"

# 4. SIGTERM ends a capture that has no --count, with its summary and status 0.
capture_bg term a -w "$WORK/term.pcapng"
term=$CAP_PID
ip netns exec vsit-a ping -q -c 3 -i 0.02 10.78.0.2 >/dev/null || fail "pings failed"
kill -TERM "$term"
wait_exit "$term" 10 || fail "a capture ended by SIGTERM exited with $?: $(cat "$WORK/term.err")"
grep -q "frames written" "$WORK/term.err" || fail "no summary after SIGTERM: $(cat "$WORK/term.err")"
pass "SIGTERM ends a capture with its summary"

# 5. A TCP stream at full speed, captured: the endpoint copies while iperf3 runs, wakes
# the capture (a futex wake from under its system call filter), is not restarted, and
# the stream's frames are forwarded whatever the capture misses.
restarts_before=$(ctl ports --json | python3 -c "import json,sys; print(sum(p['restarts'] for p in json.load(sys.stdin)['ports']))")
ip netns exec vsit-b iperf3 -s -1 -D -p 5299 >/dev/null
wait_for 10 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q ":5299 "'
capture_bg tcp a -w /dev/null
tcp=$CAP_PID
ip netns exec vsit-a iperf3 -c 10.78.0.2 -p 5299 -t 2 -J >"$WORK/iperf3.json" || fail "iperf3 failed while captured"
kill -INT "$tcp"
wait_exit "$tcp" 10 || fail "the TCP capture failed: $(cat "$WORK/tcp.err")"
restarts_after=$(ctl ports --json | python3 -c "import json,sys; print(sum(p['restarts'] for p in json.load(sys.stdin)['ports']))")
[[ $restarts_after == "$restarts_before" ]] || fail "an endpoint restarted during the captured TCP stream"
copied=$(sed -n 's/.*endpoint a copied \([0-9]*\),.*/\1/p' "$WORK/tcp.err")
((copied > 1000)) || fail "the TCP capture copied ${copied:-nothing}: $(cat "$WORK/tcp.err")"
gbps=$(python3 -c "import json; print(round(json.load(open('$WORK/iperf3.json'))['end']['sum_received']['bits_per_second'] / 1e9, 2))")
pass "a captured TCP stream ($gbps Gbit/s): $(tail -1 "$WORK/tcp.err" | sed 's/^vswitchctl: //')"

# 6. Usage mistakes: exit status 2, the mistake named.
usage() {
  local want=$1; shift
  if ctl capture "$@" >/dev/null 2>"$WORK/usage.err"; then fail "capture $* was accepted"; fi
  grep -q -- "$want" "$WORK/usage.err" || fail "capture $*: $(head -1 "$WORK/usage.err")"
}
usage "needs -w FILE" a
usage "must be rx, tx or both" a --direction up -w /dev/null
usage "count must be" a --count 0 -w /dev/null
usage 'has no endpoint "zz"' zz -w /dev/null
pass "usage mistakes are refused"

# 7. The counters: every copy counted by its endpoint; what a's captures missed (only the
# full-speed TCP one can have) is its capture_dropped.
missed=$(sed -n 's/.*, missed \([0-9]*\) for lack.*/\1/p' "$WORK/tcp.err")
wait_for 5 "a's counters to show its copies" stat_is a 'e["captured"]' -ge $((40 + copied))
[[ $(stat a 'e["capture_dropped"]') == "$missed" ]] ||
  fail "a's capture_dropped is $(stat a 'e["capture_dropped"]'), its captures missed $missed"
pass "vswitchctl stats counts the copies and the misses"

# 8. vswitchd stops during a capture: the capture notices (its object is gone) and ends,
# status 1, saying why, instead of waiting forever.
capture_bg orphan b -w "$WORK/orphan.pcapng"
orphan=$CAP_PID
stop_daemon
rc=0
wait_exit "$orphan" 10 || rc=$?
[[ $rc == 1 ]] || fail "a capture whose vswitchd stopped exited with $rc: $(cat "$WORK/orphan.err")"
grep -q "vswitchd stopped" "$WORK/orphan.err" || fail "no reason given: $(cat "$WORK/orphan.err")"
pass "a capture ends when vswitchd stops"
