#!/usr/bin/env bash
# vswitchd's /metrics scraped by a real Prometheus server. A metrics port another process
# holds at start delays the metrics, not the switch. The exposition passes
# `promtool check metrics`, Prometheus scrapes it every second with the target up, and
# during a ping flood between two namespaces a PromQL rate() over the scraped counters
# matches the flood's rate; afterwards the counters Prometheus holds equal what
# `vswitchctl stats` reads, and a killed endpoint's restart shows in
# vswitch_endpoint_restarts_total. A reload that moves metrics.listen moves the listener
# and restarts no endpoint.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup.sh installs it)"
done

free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
dport=$(free_port)
pport=$(free_port)
[[ $dport != "$pport" ]] || pport=$(free_port)

setup_three
cfg=$WORK/metrics.toml
cp "$HERE/three-ns.toml" "$cfg"
printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$dport" >>"$cfg"

# Another process holds the port when vswitchd starts: forwarding must not wait for
# metrics. vswitchd warns, comes up, and binds once the port is free.
python3 -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $dport)); s.listen()
print('holding', flush=True); time.sleep(600)" >"$WORK/holder.out" 2>&1 &
holder=$!
wait_for 10 "the port holder to bind" grep -q holding "$WORK/holder.out"
start_daemon "$cfg"
grep -q "warning: .*metrics.listen.*Address already in use.*binding again" "$WORK/vswitchd.log" ||
  fail "no warning about the held metrics port: $(grep metrics "$WORK/vswitchd.log")"
kill "$holder"
wait "$holder" 2>/dev/null || true
wait_for 15 "vswitchd to bind the freed metrics port" curl -sf -o /dev/null "http://127.0.0.1:$dport/metrics"
grep -q "metrics: Prometheus text at http://127.0.0.1:$dport/metrics (bound after" "$WORK/vswitchd.log" ||
  fail "vswitchd did not say it bound the metrics port after retrying"

curl -sf "http://127.0.0.1:$dport/metrics" >"$WORK/first.txt" || fail "GET /metrics failed"
promtool check metrics <"$WORK/first.txt" || fail "promtool check metrics rejects the exposition"
grep -q '^vswitch_endpoint_up{endpoint="a",frontend="tap"} 1$' "$WORK/first.txt" || fail "endpoint a not up in /metrics"
grep -q '^vswitch_metrics_connections_closed_total{reason="evicted"} 0$' "$WORK/first.txt" ||
  fail "no count of connections the metrics endpoint closed early"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$dport/")
[[ $code == 404 ]] || fail "GET / answered $code, not 404"

# A throwaway Prometheus: its own port, directory and configuration (the Debian package's
# service, where one runs, keeps its own).
mkdir -p "$WORK/prom"
cat >"$WORK/prom/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: vswitch
    static_configs: [{targets: ['127.0.0.1:$dport']}]
EOF
promtool check config "$WORK/prom/prometheus.yml" >/dev/null || fail "promtool rejects the test's configuration"
prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
  --web.listen-address="127.0.0.1:$pport" >"$WORK/prom/log" 2>&1 &
prom_pid=$!
trap 'kill "$prom_pid" 2>/dev/null; wait "$prom_pid" 2>/dev/null; cleanup' EXIT
wait_for 60 "Prometheus to be ready" curl -sf "http://127.0.0.1:$pport/-/ready"

# query PROMQL: the first result's value (empty when there is none).
query() {
  curl -sf -G "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" | python3 -c "
import json, sys
d = json.load(sys.stdin)
r = d['data']['result'] if d.get('status') == 'success' else []
print(r[0]['value'][1] if r else '')"
}
target_up() {
  curl -sf "http://127.0.0.1:$pport/api/v1/targets?state=active" | python3 -c "
import json, sys
t = json.load(sys.stdin)['data']['activeTargets']
sys.exit(0 if t and all(x['health'] == 'up' for x in t) else 1)"
}
wait_for 30 "Prometheus to scrape vswitchd (target up)" target_up
up=$(query 'vswitch_endpoint_up{endpoint="b"}')
[[ $up == 1 ]] || fail "Prometheus reads vswitch_endpoint_up{endpoint=\"b\"} as '$up'"

# A flood of 500 requests a second for 8 s: a's endpoint reads 500 frames/s from its TAP.
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
ip netns exec vsit-a ping -q -i 0.002 -c 4000 -W 1 10.78.0.2 >"$WORK/ping.txt" 2>&1 &
ping_pid=$!
# Judged against the rate the switch itself counted over the same 5 s, not the offered
# 500/s: ping does not catch up once it falls behind, so a loaded machine sends fewer.
sleep 1  # the flood under way, not a wait for an event
f0=$(stat a 'e["rx_frames"]') t0=$(date +%s.%N)
sleep 5  # the window rate() looks at (5 s) filled with flood, not a wait for an event
f1=$(stat a 'e["rx_frames"]') t1=$(date +%s.%N)
rate=$(query 'rate(vswitch_rx_frames_total{endpoint="a"}[5s])')
counted=$(python3 -c "print(round(($f1 - $f0) / ($t1 - $t0)))")
echo "PromQL rate(vswitch_rx_frames_total{endpoint=\"a\"}[5s]) during the flood: $rate frames/s" \
  "(vswitchctl stats over the same 5 s: $counted/s; offered: 500/s)"
python3 -c "import sys; r = float('${rate:-0}'); c = $counted; sys.exit(0 if c >= 100 and abs(r - c) <= 0.4 * c else 1)" ||
  fail "the rate Prometheus computes (${rate:-none}/s) is not the $counted/s the switch counted (or no flood)"
wait "$ping_pid" || true
tail -2 "$WORK/ping.txt"

# After the flood: Prometheus's latest sample of a's counter equals vswitchctl's reading
# (both from the same stats slice; the next scrapes catch up within a few seconds).
want=$(stat a 'e["rx_frames"]')
same_as_ctl() { [[ $(query 'vswitch_rx_frames_total{endpoint="a"}') == "$(stat a 'e["rx_frames"]')" ]]; }
wait_for 15 "Prometheus's vswitch_rx_frames_total for a to equal vswitchctl's ($want)" same_as_ctl
peer=$(query 'vswitch_peer_out_frames_total{endpoint="a",peer="b"}')
[[ ${peer:-0} -ge 4000 ]] || fail "vswitch_peer_out_frames_total{a->b} is '$peer', below the 4000 requests"

# A killed endpoint is restarted; the restart shows in Prometheus.
kill -9 "$(pid_of c)"
restarted() { [[ $(query 'vswitch_endpoint_restarts_total{endpoint="c"}') == 1 ]]; }
wait_for 30 "vswitch_endpoint_restarts_total{endpoint=\"c\"} to reach 1 in Prometheus" restarted
# A reload (nothing changed) shows as vswitch_reloads_total{outcome="unchanged"}.
[[ $(ctl reload) == "reload: unchanged" ]] || fail "vswitchctl reload"
reloaded() { [[ $(query 'vswitch_reloads_total{outcome="unchanged"}') == 1 ]]; }
wait_for 30 "vswitch_reloads_total{outcome=\"unchanged\"} to reach 1 in Prometheus" reloaded
pass "Prometheus scrapes /metrics (target up, promtool clean), rate() = $rate/s for a 500/s flood, counters equal vswitchctl's, a restart and a reload show"

# The metrics address moved by a reload: vswitchd's own setting, applied without
# restarting an endpoint; the new address serves, the old one is closed.
nport=$(free_port)
pids_before=$(ctl ports --json | python3 -c 'import json, sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["ports"]))')
sed -i "s/^listen = \"127.0.0.1:$dport\"$/listen = \"127.0.0.1:$nport\"/" "$cfg"
grep -q "^listen = \"127.0.0.1:$nport\"$" "$cfg" || fail "could not edit $cfg"
out=$(ctl reload) || fail "vswitchctl reload (metrics.listen moved) exited $?: $out"
[[ $out == "reload: applied 1 change(s); no endpoint restarted (each change in vswitchd's log)" ]] || fail "reload said: $out"
curl -sf -o /dev/null "http://127.0.0.1:$nport/metrics" || fail "nothing serves /metrics at the new address :$nport"
! curl -s -o /dev/null "http://127.0.0.1:$dport/metrics" || fail "the old address :$dport still serves /metrics"
pids_after=$(ctl ports --json | python3 -c 'import json, sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["ports"]))')
[[ $pids_after == "$pids_before" ]] || fail "an endpoint was restarted for metrics.listen: $pids_before -> $pids_after"
grep -q "reload: $cfg:[0-9]*: metrics.listen: \"127.0.0.1:$dport\" -> \"127.0.0.1:$nport\"" "$WORK/vswitchd.log" ||
  fail "the change is not logged with its line"
pass "metrics.listen moved by reload: served at :$nport, :$dport closed, no endpoint restarted"
