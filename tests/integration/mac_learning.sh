#!/usr/bin/env bash
# With no MAC declared, each endpoint learns where the namespaces' MACs live, and
# vswitchctl fdb shows it.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/learn.toml"
ip netns exec vsit-a ping -c 2 -i 0.05 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
ip netns exec vsit-a ping -c 2 -i 0.05 -W 2 -q 10.78.0.3 >/dev/null || fail "ping a -> c"
learned() {  # learned ENDPOINT MAC PORT: the endpoint's FDB has MAC learned behind PORT
  ctl fdb --json | python3 -c "
import json, sys
f = json.load(sys.stdin)['fdb']
sys.exit(0 if any(e['endpoint'] == '$1' and e['mac'] == '$2' and e['port'] == '$3' and not e['static'] for e in f) else 1)"
}
# FDB snapshots are published when the loop goes idle; poll for them.
wait_for 5 "a to learn b's MAC behind b" learned a 02:00:00:00:0a:02 b
wait_for 5 "a to learn c's MAC behind c" learned a 02:00:00:00:0a:03 c
wait_for 5 "b to learn a's MAC behind a" learned b 02:00:00:00:0a:01 a
wait_for 5 "a to learn its own namespace behind a" learned a 02:00:00:00:0a:01 a
ctl fdb
[[ $(stat a 'e["mac_learned"]') -ge 3 ]] || fail "mac_learned counter below 3 on a"
# vswitchctl maps the channels read-only; it still reads every one of them.
ctl channels --json | python3 -c "
import json, sys
c = json.load(sys.stdin)['channels']
sys.exit(0 if len(c) == 6 and all(x['head'] >= x['tail'] and x['capacity'] > 0 for x in c) else 1)" ||
  fail "vswitchctl channels did not read the six channels"
pass "MACs learned behind the right ports and shown by vswitchctl fdb and channels"
