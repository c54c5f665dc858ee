#!/usr/bin/env bash
# Three namespaces on three TAP endpoints: every pair pings every other.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
ips=([1]=10.78.0.1 [2]=10.78.0.2 [3]=10.78.0.3)
names=([1]=a [2]=b [3]=c)
for i in 1 2 3; do
  for j in 1 2 3; do
    ((i == j)) && continue
    ip netns exec "vsit-${names[$i]}" ping -c 3 -i 0.05 -W 2 -q "${ips[$j]}" >/dev/null ||
      fail "ping ${names[$i]} -> ${names[$j]}"
  done
done
drops=$(stat a 'e["drops_total"]')
[[ $drops -eq 0 ]] || fail "endpoint a dropped $drops frames during pings"
pass "all six directions ping, no drops"
