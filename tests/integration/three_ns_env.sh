# Sourced after lib.sh: the three namespaces of three-ns.toml / learn.toml.
setup_three() {
  add_netns vsit-a vsit-a 02:00:00:00:0a:01 10.78.0.1
  add_netns vsit-b vsit-b 02:00:00:00:0a:02 10.78.0.2
  add_netns vsit-c vsit-c 02:00:00:00:0a:03 10.78.0.3
}

# static_neighbours: each namespace knows the others' addresses for good
# (permanent_neighbour), for a test that counts every frame between them.
static_neighbours() {
  local n m
  for n in a b c; do
    for m in a b c; do
      [[ $n == "$m" ]] && continue
      permanent_neighbour "vsit-$n" "vsit-$n" "10.78.0.$(_three_index "$m")" "02:00:00:00:0a:0$(_three_index "$m")"
    done
  done
}
_three_index() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; esac; }
