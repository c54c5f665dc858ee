# Sourced after lib.sh: the three namespaces of three-ns.toml / learn.toml.
setup_three() {
  add_netns vsit-a vsit-a 02:00:00:00:0a:01 10.78.0.1
  add_netns vsit-b vsit-b 02:00:00:00:0a:02 10.78.0.2
  add_netns vsit-c vsit-c 02:00:00:00:0a:03 10.78.0.3
}
