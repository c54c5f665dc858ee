#!/bin/sh
# The load a soak puts on one host (a guest, or a network namespace): POSIX sh, busybox or
# coreutils, iperf3 and ping, nothing else, so the same file runs inside the test guests.
#   soak-load.sh NAME SECONDS SEGMENT TCP_PEER UDP_PEER UDP_RATE "PING_PEERS" REPORT [LINGER [TCP_RATE]]
# PEER is name@address (or "-" for none); PING_PEERS a space-separated list of them;
# REPORT a file the lines are appended to, or "-" for stdout (a guest's console). The hosts
# start their clocks when they can reach every peer, so they end a little apart: the servers
# stay up LINGER seconds (default 30) after this host's own load has ended. TCP_RATE caps
# the TCP stream (iperf3 -b; default 0: as fast as it goes).
# It serves iperf3 TCP on port 5201 and UDP on 5202, then for SECONDS:
#   - iperf3 TCP to TCP_PEER and UDP at UDP_RATE to UDP_PEER, in back-to-back segments of at
#     most SEGMENT seconds (iperf3 refuses -t above 86400 s, so days are many segments); the
#     gap between two segments is measured and reported;
#   - ping to every PING_PEER, one a second (one ping for the whole run), summarised every
#     minute;
#   - every minute, its own drop counters (UDP socket errors, interface drops).
# One line per event, each starting with "VSOAK" (scripts/soak_monitor.py reads them):
#   VSOAK UP host=N | VSOAK SEG proto=tcp|udp src= dst= k= t= rc= tries= gap_ms= mbps= [lost= total=]
#   VSOAK LOG src= proto= <iperf3's last lines, before a failed run's SEG line>
# (each followed by " end").
#   VSOAK PING src= dst= sent= recv= p50= p99= max= | VSOAK NET host= ... | VSOAK DONE host=N
# Memory stays flat for any duration: each segment's output is parsed and forgotten.
name=$1 secs=$2 seg=$3 tcp_peer=$4 udp_peer=$5 udp_rate=$6 ping_peers=$7 report=$8 linger=${9:-30} tcp_rate=${10:-0}
tmp=${TMPDIR:-/tmp}/soak-load.$name.$$
setup_s=${SOAK_SETUP_S:-10}
mkdir -p "$tmp"

# Every line ends in " end": a line a kernel message broke into is recognised and skipped.
say() {
  if [ "$report" = "-" ]; then printf 'VSOAK %s end\n' "$*"; else printf 'VSOAK %s end\n' "$*" >>"$report"; fi
}
ms() { awk '{ printf "%.0f\n", $1 * 1000 }' /proc/uptime; }  # monotonic milliseconds
now() { cut -d. -f1 /proc/uptime; }                          # monotonic seconds (no clock steps)
addr() { echo "${1#*@}"; }
peer() { echo "${1%@*}"; }

net_report() {
  dev=$(ip route get "$(addr "${tcp_peer:-127.0.0.1}")" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
  [ -n "$dev" ] || return 0
  # Udp SndbufErrors / RcvbufErrors (InErrors would count RcvbufErrors twice).
  udp=$(awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["SndbufErrors"], $c["RcvbufErrors"] }' /proc/net/snmp)
  set -- $udp
  # Where a lost ping went (shown in a failure's dump, not judged): the host's ICMP echo
  # counters (requests and replies, in and out) and its raw sockets' receive drops (a ping
  # that was not scheduled in time to read its replies).
  icmp=$(awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["OutEchos"], $c["InEchos"], $c["OutEchoReps"], $c["InEchoReps"] }' /proc/net/snmp)
  raw=$(awk 'NR > 1 { d += $NF } END { print d + 0 }' /proc/net/raw 2>/dev/null)
  say "NET host=$name dev=$dev udp_sndbuf=${1:-0} udp_rcvbuf=${2:-0}" \
      "rx_dropped=$(cat /sys/class/net/$dev/statistics/rx_dropped) tx_dropped=$(cat /sys/class/net/$dev/statistics/tx_dropped)" \
      "$(echo $icmp | awk '{ printf "icmp_out_echos=%s icmp_in_echos=%s icmp_out_echoreps=%s icmp_in_echoreps=%s", $1 + 0, $2 + 0, $3 + 0, $4 + 0 }') raw_drops=${raw:-0}"
}

# iperf3 segments until the end: seg_loop PROTO PEER PORT [iperf3 options...]
seg_loop() {
  proto=$1 p=$2 port=$3; shift 3
  k=0 last_end=""
  while :; do
    # A run that never got its stream connected (a server still closing the previous
    # test, a setup datagram dropped under load) is retried; the time counts in the gap (up
    # to the attempt that connected) and the retries are reported. A run that failed after
    # connecting is a failure; so is one that could not connect for 30 s before the end.
    tries=0 first_try=$(now)
    while :; do
      left=$((end - $(now)))
      t=$seg; [ "$left" -lt "$t" ] && t=$left
      if [ "$t" -lt 1 ]; then
        [ $tries -eq 0 ] && break 2                        # the end, between two runs
        [ $(($(now) - first_try)) -lt 30 ] && break 2      # the end came while retrying
        rc=98; echo "iperf3 never connected in the last $(($(now) - first_try)) s" >"$tmp/$proto.out"; break
      fi
      tries=$((tries + 1))
      start=$(ms)
      gap=0; [ -n "$last_end" ] && gap=$((start - last_end))
      # iperf3 3.12 waits forever for a UDP stream's setup datagram that was lost (the path
      # saturated): a run whose stream has not connected within SOAK_SETUP_S seconds (default
      # 10) is cut off and retried, well inside the monitor's 30 s stall bound. iperf3 flushes
      # its output only at interval reports (--forceflush, -i 1): it goes through a fifo to
      # a shell loop (read takes a line as soon as it arrives; awk may wait for a block),
      # which marks the stream connected at iperf3's "connected to" line; from there one
      # tail keeps the last lines (a line a second would grow a file for a day's segment,
      # and a shell loop per line costs a starved guest's CPU).
      rm -f "$tmp/$proto.connected" "$tmp/$proto.fifo"
      : >"$tmp/$proto.out"
      mkfifo "$tmp/$proto.fifo"
      {
        while IFS= read -r line; do
          printf '%s\n' "$line" >>"$tmp/$proto.out"
          case $line in *"connected to"*) : >"$tmp/$proto.connected"; break ;; esac
        done
        tail -n 16 >>"$tmp/$proto.out"
      } <"$tmp/$proto.fifo" &
      apid=$!
      iperf3 -c "$(addr "$p")" -p "$port" -t "$t" -i 1 --forceflush -f m "$@" >"$tmp/$proto.fifo" 2>&1 &
      ipid=$! t0=$(now) cut=0
      while kill -0 "$ipid" 2>/dev/null && [ ! -e "$tmp/$proto.connected" ]; do
        if [ $(($(now) - t0)) -ge "$setup_s" ]; then
          kill "$ipid" 2>/dev/null
          cut=1
          break
        fi
        sleep 1
      done
      wait "$ipid"
      rc=$?
      wait "$apid"
      rm -f "$tmp/$proto.fifo"
      # A run cut off is retried even if it connected in the last moment (its line came
      # late): the cut was this script's, not a failure of the path.
      if [ $cut -eq 1 ]; then
        echo "iperf3: no stream connected in $setup_s s (cut off)" >>"$tmp/$proto.out"
      else
        [ $rc -eq 0 ] && break
        [ -e "$tmp/$proto.connected" ] && break
      fi
      if [ $tries -ge 100 ]; then break; fi
      sleep 1
    done
    last_end=$(ms)
    k=$((k + 1))
    if [ "$proto" = udp ]; then
      extra=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) { split($i, a, "/"); print "lost=" a[1] " total=" a[2] } }' "$tmp/$proto.out")
      [ -n "$extra" ] || extra="lost=0 total=0"
    else
      extra=""
    fi
    mbps=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' "$tmp/$proto.out")
    [ $rc -eq 0 ] || tail -4 "$tmp/$proto.out" | tr -s ' ' | while read -r l; do say "LOG src=$name proto=$proto $l"; done
    say "SEG proto=$proto src=$name dst=$(peer "$p") k=$k t=$t rc=$rc tries=$tries gap_ms=$gap mbps=${mbps:-0} $extra"
  done
}

# One ping per peer for the whole run (not a ping a minute): a starved guest took tens of
# seconds to start the next ping and its helpers, and a ping that lost a reply waited two
# round trips (seconds, on the emulated board) before it exited, so a pair that only pings
# went silent for up to half a minute with nothing wrong on the path. Its replies are
# summarised a minute of sequence numbers at a time (60 requests, 1 a second): a window is
# reported when the first reply of a later window arrives, so a reply that comes later than
# that is counted lost, as one that never comes. The last window counts the requests the
# ping said it sent ("N packets transmitted"); a ping that is restarted starts its windows
# again. busybox numbers from seq=0, iputils from icmp_seq=1.
ping_base=0
ping -V 2>/dev/null | grep -q iputils && ping_base=1
ping_loop() {
  p=$1
  while :; do
    left=$((end - $(now)))
    n=$((left - 1))
    [ "$n" -ge 5 ] || break
    started=$(now)
    # No -w: with it iputils counts replies, not requests, and goes on past the end.
    ping -c "$n" -i 1 -W 5 "$(addr "$p")" 2>/dev/null |
      awk -v base="$ping_base" -v src="$name" -v dst="$(peer "$p")" '
        function report(sent,   i, j, t, i50, i99) {
          for (i = 2; i <= r; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
          if (r == 0) printf "PING src=%s dst=%s sent=%d recv=0 p50=0 p99=0 max=0\n", src, dst, sent
          else {
            i50 = int((r - 1) * 0.50 + 1.5); i99 = int((r - 1) * 0.99 + 1.5)
            printf "PING src=%s dst=%s sent=%d recv=%d p50=%s p99=%s max=%s\n", src, dst, sent, r, v[i50], v[i99], v[r]
          }
          fflush()
          r = 0; split("", v); got = 0
        }
        BEGIN { cur = 0; r = 0; got = 0; last = -1; tx = -1 }
        / time=/ && !/DUP/ {
          s = -1; ms = ""
          for (i = 1; i <= NF; i++) {
            if ($i ~ /seq=[0-9]+$/) { s = $i; sub(/.*seq=/, "", s); s += 0 }
            else if ($i ~ /^time=/) { ms = $i; sub(/^time=/, "", ms) }
          }
          if (s < base || ms == "") next
          w = int((s - base) / 60)
          if (w < cur) next
          while (w > cur) { report(60); cur++ }
          v[++r] = ms + 0; got = 1; last = s
        }
        /packets transmitted/ { tx = $1 + 0 }
        END {
          sent = tx >= 0 ? tx - 60 * cur : (got ? last - base - 60 * cur + 1 : 0)
          if (sent > 0 || r > 0) report(sent < r ? r : sent)
        }' | while read -r line; do say "$line"; done
    # A ping that ended early (the address unreachable for a moment) is started again,
    # at most once a second.
    [ "$(now)" -gt "$started" ] || sleep 1
  done
}

# Servers first; a peer's client retries until they answer. A server that died is started
# again at the next minute's report.
srv1="" srv2=""
servers() {
  { [ -n "$srv1" ] && kill -0 "$srv1" 2>/dev/null; } || { iperf3 -s -p 5201 -i 0 >/dev/null 2>&1 & srv1=$!; }
  { [ -n "$srv2" ] && kill -0 "$srv2" 2>/dev/null; } || { iperf3 -s -p 5202 -i 0 >/dev/null 2>&1 & srv2=$!; }
}
servers
trap 'kill $srv1 $srv2 2>/dev/null; rm -rf "$tmp"' EXIT
# On a guest's console a kernel message could break into a report line: only emergencies.
[ "$report" = "-" ] && echo 1 >/proc/sys/kernel/printk 2>/dev/null
for p in $ping_peers; do
  i=0
  until ping -c 1 -W 1 "$(addr "$p")" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { say "SEG proto=reach src=$name dst=$(peer "$p") k=0 t=0 rc=99 gap_ms=0"; exit 1; }
  done
done
say "UP host=$name"
end=$(($(now) + secs))
pids=""
[ "$tcp_peer" = "-" ] || { seg_loop tcp "$tcp_peer" 5201 -b "$tcp_rate" & pids="$pids $!"; }
[ "$udp_peer" = "-" ] || { seg_loop udp "$udp_peer" 5202 -u -b "$udp_rate" -l 1200 --udp-counters-64bit & pids="$pids $!"; }
for p in $ping_peers; do ping_loop "$p" & pids="$pids $!"; done
while [ "$(now)" -lt $end ]; do
  net_report
  servers
  s=$((end - $(now))); [ $s -gt 60 ] && s=60; [ $s -gt 0 ] && sleep $s
done
# shellcheck disable=SC2086
wait $pids
net_report
say "DONE host=$name"
sleep "$linger"  # serve the peers' last segments
