#!/usr/bin/env bash
# The vhost-user socket directory (no root needed; the ownership case runs as root only):
# vswitchd creates a missing one (mode 0755, each socket 0600) before starting the
# endpoints, and refuses to start, naming the directory, when it is writable by group or
# others or (as root) owned by another user: either would let a local user replace the
# socket QEMU connects to.
source "$(dirname "$0")/lib.sh"
name="itsock$$"
dir="$WORK/run/vswitch"
CONFIG="$WORK/sock.toml"
cat >"$CONFIG" <<TOML
[switch]
name = "$name"
[fabric]
ring_bytes = 65536
max_frame = 1500
[[endpoint]]
name = "vm1"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$dir/vm1.sock"
[[endpoint]]
name = "vm2"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$dir/vm2.sock"
TOML

# 1. Missing directory (and its parent): created, both endpoints listen.
[[ ! -e $WORK/run ]] || fail "test setup: $WORK/run exists"
start_daemon "$CONFIG"
sockets_there() { [[ -S $dir/vm1.sock && -S $dir/vm2.sock ]]; }
wait_for 10 "both vhost-user sockets in $dir" sockets_there
[[ $(command stat -c %a "$dir") == 755 ]] || fail "socket directory mode $(command stat -c %a "$dir"), expected 755"
[[ $(command stat -c %a "$WORK/run") == 755 ]] || fail "parent created with mode $(command stat -c %a "$WORK/run"), expected 755"
[[ $(command stat -c %a "$dir/vm1.sock") == 600 ]] || fail "socket mode $(command stat -c %a "$dir/vm1.sock"), expected 600"
grep -q "created socket directory $dir (mode 0755)" "$WORK/vswitchd.log" || fail "no message for the created directory"
grep -q "bind" "$WORK/vswitchd.log" && fail "an endpoint failed to bind: $(grep bind "$WORK/vswitchd.log")"
stop_daemon
pass "a missing socket directory is created (0755, sockets 0600)"

# refused MODE_OR_OWNER EXPECTED_MESSAGE: vswitchd exits 1 before starting any endpoint.
refused() {
  set +e
  timeout 20 "$BIN/vswitchd" --config "$CONFIG" 2>"$WORK/refused.log"
  local rc=$?
  set -e
  [[ $rc -eq 1 ]] || fail "vswitchd exited $rc with $1, expected 1: $(cat "$WORK/refused.log")"
  grep -qF "$2" "$WORK/refused.log" || fail "with $1 vswitchd said: $(cat "$WORK/refused.log")"
  grep -q "up (pid" "$WORK/refused.log" && fail "an endpoint started with $1"
  [[ ! -e $dir/vm1.sock ]] || fail "a socket was created with $1"
  return 0
}

# 2. World- and group-writable directories are refused.
chmod 0777 "$dir"
refused "mode 0777" "socket directory $dir (mode 0777) is writable by group or others"
chmod 0775 "$dir"
refused "mode 0775" "socket directory $dir (mode 0775) is writable by group or others"
chmod 0755 "$dir"
pass "a group- or world-writable socket directory is refused"

# 3. As root: a directory owned by another user is refused.
if [[ $(id -u) -eq 0 ]]; then
  chown 65534 "$dir"
  refused "owner 65534" "socket directory $dir is owned by uid 65534, not by root"
  chown 0 "$dir"
  pass "a socket directory owned by another user is refused (root)"
else
  echo "note: not root: the foreign-owner case is not checked"
fi

# 4. A path that is not a directory.
rm -rf "$dir" && touch "$dir"
refused "a file" "socket directory $dir is not a directory"
pass "a socket directory that is a file is refused"

# 5. A file at a configured socket path stops vswitchd before anything starts, and stays.
rm -f "$dir" && mkdir -m 0755 "$dir"
echo "not a socket" >"$dir/vm2.sock"
set +e
timeout 20 "$BIN/vswitchd" --config "$CONFIG" 2>"$WORK/refused.log"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "vswitchd exited $rc with a file at vm2's socket path, expected 1"
grep -qF "$dir/vm2.sock exists and is not a socket" "$WORK/refused.log" || fail "vswitchd said: $(cat "$WORK/refused.log")"
[[ $(cat "$dir/vm2.sock") == "not a socket" ]] || fail "the file at vm2's socket path was changed"
pass "a file at a socket path is refused and left as it was"

# 6. Shutdown removes only the sockets of this switch: what lies at a socket path by then
#    (here a file put in place of vm2's socket while running) is left.
rm -f "$dir/vm2.sock"
start_daemon "$CONFIG"
rm "$dir/vm2.sock" && echo "not a socket" >"$dir/vm2.sock"
stop_daemon
[[ $(cat "$dir/vm2.sock" 2>/dev/null) == "not a socket" ]] || fail "shutdown removed or changed the file at vm2's socket path"
[[ ! -e $dir/vm1.sock ]] || fail "shutdown left vm1's socket"
grep -q "endpoint vm2: left $dir/vm2.sock in place: not the socket this switch made" "$WORK/vswitchd.log" ||
  fail "no message for the file left in place"
pass "shutdown unlinks the endpoints' sockets and leaves anything else at a socket path"
