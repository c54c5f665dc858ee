# Sourced after lib.sh: the three namespaces of three-ns.toml / learn.toml.
setup_three() {
  add_netns vsit-a vsit-a 02:00:00:00:0a:01 10.78.0.1
  add_netns vsit-b vsit-b 02:00:00:00:0a:02 10.78.0.2
  add_netns vsit-c vsit-c 02:00:00:00:0a:03 10.78.0.3
}

# static_neighbours: each namespace knows the others' addresses for good (nud permanent),
# for a test that counts every frame between them: no ARP at all, so no kernel
# re-validating an entry (a unicast probe delay_first_probe_time, 5 s, after the first use
# of a stale entry, such as one learned from the peer's ARP request, and its answer)
# crosses the switch while the test counts.
static_neighbours() {
  local n m
  for n in a b c; do
    for m in a b c; do
      [[ $n == "$m" ]] && continue
      ip -n "vsit-$n" neigh replace "10.78.0.$(_three_index "$m")" \
        lladdr "02:00:00:00:0a:0$(_three_index "$m")" nud permanent dev "vsit-$n"
    done
  done
}
_three_index() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; esac; }
