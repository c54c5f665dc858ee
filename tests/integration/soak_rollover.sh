#!/usr/bin/env bash
# The soaks run for days by chaining iperf3 runs (iperf3 3.12 refuses -t above 86400 s).
# Without waiting days: a DURATION of days or weeks is accepted and planned as segments of
# at most 86400 s; a segment above iperf3's limit is refused; a 50 s soak in 12 s segments
# rolls over (at least three runs per stream) with every run accounted and the gaps measured, and writes its
# CSV, hourly summaries (every 20 s here) and PNG; and a soak whose endpoint freezes
# (SIGSTOP) fails loudly, naming the stalled pair, with the channels' state.
source "$(dirname "$0")/lib.sh"
require_root
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Parsing: days and weeks, and the segment bound.
soak_parse_common t 3d --out "$WORK/p1" || fail "3d refused"
[[ $SOAK_SECS == 259200 && $SOAK_SEGMENT == 3600 ]] || fail "3d parsed as $SOAK_SECS s in $SOAK_SEGMENT s segments"
soak_parse_common t 2w --segment 24h --out "$WORK/p2" || fail "2w --segment 24h refused"
[[ $SOAK_SECS == 1209600 && $SOAK_SEGMENT == 86400 ]] || fail "2w parsed as $SOAK_SECS s / $SOAK_SEGMENT s"
if msg=$(scripts/soak.sh 3d --segment 86401 --out "$WORK/p3" 2>&1); then fail "a 86401 s segment was accepted"; fi
grep -q "86400" <<<"$msg" || fail "the refusal does not name iperf3's limit: $msg"

# A short soak that rolls over: 50 s in 12 s segments.
out=$WORK/soak
VSWITCH_BIN=$BIN scripts/soak.sh 50 --segment 12 --hour 20 --out "$out" >"$WORK/soak.log" 2>&1 ||
  { tail -40 "$WORK/soak.log"; fail "scripts/soak.sh 50 --segment 12 failed"; }
for stream in "tcp src=ns1 dst=ns2" "tcp src=ns2 dst=ns1" "udp src=ns1 dst=ns2" "udp src=ns2 dst=ns1"; do
  proto=${stream%% *} rest=${stream#* }
  segs=$(grep -h "VSOAK SEG proto=$proto $rest " "$out"/reports/*.log | grep -c " rc=0 " || true)
  # Four 12 s runs fill 50 s; a loaded machine stretches each run by its set-up and wind-down.
  ((segs >= 3)) || fail "$stream: $segs successful segments in 50 s of 12 s segments (expected >= 3)"
  # Every segment after the first reports the gap since the previous one ended.
  grep -h "VSOAK SEG proto=$proto $rest k=[2-9]" "$out"/reports/*.log | grep -qE "gap_ms=[0-9]+" ||
    fail "$stream: no measured gap"
done
# A run whose stream connected at once follows the previous one within 10 s. One that had
# to be retried reports its tries, and its gap includes them: iperf3 waits forever for a
# UDP setup datagram lost on a saturated path, so soak-load.sh cuts such a run off after
# SOAK_SETUP_S (10 s) and starts again, which a loaded 2-core machine sees now and then
# (an 11.2 s gap with tries=2). Such a gap may hold one cut-off more per retry, no more.
while read -r tries gap; do
  limit=$((10000 + (tries - 1) * 11000))
  ((gap < limit)) || fail "a gap between segments of $gap ms after $tries tries (limit $limit ms)"
done < <(grep -h "VSOAK SEG" "$out"/reports/*.log | sed -n 's/.* tries=\([0-9]*\) gap_ms=\([0-9]*\) .*/\1 \2/p')
hours=$(grep -c "^hour " "$out/summary.txt")
((hours >= 2)) || fail "$hours summary lines for 50 s at one per 20 s"
rows=$(($(wc -l <"$out/soak.csv") - 1))
((rows >= 4)) || fail "$rows CSV rows in 50 s"
[[ -s $out/soak.png ]] || fail "no PNG"
max_gap=$(grep -ho "gap_ms=[0-9]*" "$out"/reports/*.log | cut -d= -f2 | sort -n | tail -1)
echo "rollover: 4 streams x >= 3 segments, largest gap $max_gap ms, $hours summaries, $rows rows"

# A frozen endpoint: the soak must fail within its 30 s stall window, loudly. vswitchd's
# watchdog (10 s by default) kills and restarts the frozen endpoint first, and a restart
# fails a soak by itself.
out=$WORK/stall
VSWITCH_BIN=$BIN scripts/soak.sh 120 --segment 60 --out "$out" >"$WORK/stall.log" 2>&1 &
soak=$!
wait_for 60 "the stall soak's load" sh -c "cat '$out'/reports/*.log 2>/dev/null | grep -q 'VSOAK UP'"
CONFIG=configs/soak.toml
frozen=$(pid_of ns2)
kill -STOP "$frozen"
wait_for 90 "the soak to notice the stall" test -s "$out/failure.txt"
kill -CONT "$frozen" 2>/dev/null || true  # the watchdog has normally killed it by now
if wait "$soak"; then fail "the soak passed with a frozen endpoint"; fi
grep -qE "moved .* for [0-9]+ s|endpoint ns2 was restarted [0-9]+ times \(it crashed or hung\)" "$out/failure.txt" ||
  fail "failure.txt names neither the stall nor the hung endpoint's restart: $(head -3 "$out/failure.txt")"
grep -q "^CHANNEL" "$out/failure.txt" || fail "failure.txt lacks vswitchctl channels"
CONFIG=""
pass "a soak of days is planned as iperf3 segments under 24 h; segments roll over with gaps measured; a stall fails loudly"
