#!/usr/bin/env bash
# What an endpoint process holds after vswitchd forks it and execs the endpoint program,
# read from /proc: an address-space layout of its own; it maps only its own channels, its
# own stats slice and its own capture object (not the daemon's stats object, not another
# endpoint's slice or capture object), holds
# only its own TAP and doorbell ends, runs as its own uid and gid under a seccomp filter,
# has no new privileges to gain and no capability left. Checked for every endpoint, again for one restarted by
# kill -9, with traffic through all of them; then for vhost-user endpoints, one of which
# has its socket given to another owner and group (CAP_CHOWN: vswitchd binds the socket,
# so the endpoint never needs it, and a restarted endpoint serves the same socket).
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
SWITCH=it3
ENDPOINTS=(a b c)

# stack_base PID: where PID's stack is mapped (placed anew by every exec under ASLR; a
# fork keeps the parent's).
stack_base() {
  awk '$6 == "[stack]" { split($1, r, "-"); print r[1]; exit }' "/proc/$1/maps"
}

# check_endpoint NAME PID [vhost]: fails unless PID holds exactly what endpoint NAME of
# switch $SWITCH (endpoints $ENDPOINTS) may.
check_endpoint() {
  local me=$1 pid=$2 kind=${3:-tap} other want got
  # Mappings: the channels me-x and x-me for every other x, its own stats slice
  # (stats.me) and its own capture object (capture.me); no other object of this switch:
  # not another pair's channel, not the daemon's stats object (vswitch.SWITCH.stats:
  # endpoint states, daemon pid), not another endpoint's slice (its counters and
  # heartbeat) or capture object, not the lock.
  want=$(for other in "${ENDPOINTS[@]}"; do
    [[ $other == "$me" ]] && continue
    echo "/dev/shm/vswitch.$SWITCH.$me-$other"
    echo "/dev/shm/vswitch.$SWITCH.$other-$me"
  done; echo "/dev/shm/vswitch.$SWITCH.stats.$me"; echo "/dev/shm/vswitch.$SWITCH.capture.$me")
  want=$(sort <<<"$want")
  got=$(grep -o "/dev/shm/vswitch\.$SWITCH\.[^ ]*" "/proc/$pid/maps" | sort -u)
  [[ $got == "$want" ]] || fail "endpoint $me (pid $pid) maps:"$'\n'"$got"$'\n'"expected only:"$'\n'"$want"
  # Descriptors beyond 0-2: its own TAP (told apart from the others by fdinfo's iff:),
  # or for vhost-user its listening socket; the doorbells: the read end of its own pipe
  # and the write end of each peer's (fdinfo's flags: O_RDONLY or O_WRONLY), no eventfd
  # (an eventfd's every holder can read it empty); its stop signalfd, its epoll; nothing
  # else (no other TAP, no lock file, nothing the daemon inherited).
  local fd target taps=() eventfds=0 sockets=0 ifname flags reads=() writes=()
  for fd in /proc/"$pid"/fd/*; do
    fd=${fd##*/}
    ((fd <= 2)) && continue
    target=$(readlink "/proc/$pid/fd/$fd") || continue
    case $target in
      /dev/net/tun)
        ifname=$(awk '$1 == "iff:" {print $2}' "/proc/$pid/fdinfo/$fd")
        taps+=("$ifname") ;;
      'anon_inode:[eventfd]') eventfds=$((eventfds + 1)) ;;
      pipe:*)
        flags=$(awk '$1 == "flags:" {print $2}' "/proc/$pid/fdinfo/$fd")
        case $((8#$flags & 3)) in
          0) reads+=("$target") ;;
          1) writes+=("$target") ;;
          *) fail "endpoint $me (pid $pid) holds $target open for reading and writing" ;;
        esac ;;
      socket:*) sockets=$((sockets + 1)) ;;
      'anon_inode:[signalfd]' | 'anon_inode:[eventpoll]') ;;
      *) fail "endpoint $me (pid $pid) holds fd $fd -> $target" ;;
    esac
  done
  if [[ $kind == tap ]]; then
    [[ ${taps[*]-} == "vsit-$me" ]] || fail "endpoint $me (pid $pid) holds TAPs [${taps[*]-}], expected only vsit-$me"
    ((sockets == 0)) || fail "endpoint $me (pid $pid) holds $sockets sockets"
  else
    [[ -z ${taps[*]-} ]] || fail "endpoint $me (pid $pid) holds TAPs [${taps[*]-}]"
    ((sockets == 1)) || fail "endpoint $me (pid $pid) holds $sockets sockets, expected its listening socket"
  fi
  ((eventfds == 0)) || fail "endpoint $me (pid $pid) holds $eventfds eventfds (no front-end is connected)"
  ((${#reads[@]} == 1)) || fail "endpoint $me (pid $pid) can read ${#reads[@]} pipes [${reads[*]-}], expected only its own doorbell"
  ((${#writes[@]} == ${#ENDPOINTS[@]} - 1)) ||
    fail "endpoint $me (pid $pid) can write ${#writes[@]} pipes [${writes[*]-}], expected its $((${#ENDPOINTS[@]} - 1)) peers' doorbells"
  [[ " ${writes[*]} " != *" ${reads[0]} "* ]] || fail "endpoint $me (pid $pid) can ring its own doorbell"
  BELL_READ[$me]=${reads[0]}
  BELL_WRITES[$me]=" ${writes[*]} "
  # No new privileges, no capability in any set.
  local key
  for key in CapInh CapPrm CapEff CapBnd CapAmb; do
    grep -qx "$key:[[:space:]]*0000000000000000" "/proc/$pid/status" ||
      fail "endpoint $me (pid $pid): $(grep "^$key:" "/proc/$pid/status"), expected none"
  done
  grep -qx 'NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "endpoint $me (pid $pid): NoNewPrivs is not 1"
  # Its own uid and gid (switch.endpoint_uid_base, 60600 by default, + its index) in every
  # slot, no supplementary group, and the system call filter (mode 2: a seccomp filter).
  local idx id
  for idx in "${!ENDPOINTS[@]}"; do [[ ${ENDPOINTS[idx]} == "$me" ]] && break; done
  id=$((60600 + idx))
  # A program of its own, not a copy of the daemon: vswitchd forked and then exec'd the
  # endpoint program, so it has its own command line and, with ASLR on, its own address
  # space layout (after a fork without exec the executable sits at the daemon's address).
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--endpoint-process --index $idx " ||
    fail "endpoint $me (pid $pid) is not the exec'd endpoint program: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
  if [[ $(cat /proc/sys/kernel/randomize_va_space) != 0 ]]; then
    local mine theirs
    mine=$(stack_base "$pid") theirs=$(stack_base "$DAEMON_PID")
    [[ -n $mine && $mine != "$theirs" ]] ||
      fail "endpoint $me (pid $pid) has its stack at $mine, as vswitchd (pid $DAEMON_PID) has: the same address space layout"
  fi
  grep -qx "Uid:[[:space:]]*$id[[:space:]]*$id[[:space:]]*$id[[:space:]]*$id" "/proc/$pid/status" ||
    fail "endpoint $me (pid $pid): $(grep '^Uid:' "/proc/$pid/status"), expected $id everywhere"
  grep -qx "Gid:[[:space:]]*$id[[:space:]]*$id[[:space:]]*$id[[:space:]]*$id" "/proc/$pid/status" ||
    fail "endpoint $me (pid $pid): $(grep '^Gid:' "/proc/$pid/status"), expected $id everywhere"
  grep -qx 'Groups:[[:space:]]*' "/proc/$pid/status" || fail "endpoint $me (pid $pid): $(grep '^Groups:' "/proc/$pid/status")"
  grep -qx 'Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "endpoint $me (pid $pid): $(grep '^Seccomp:' "/proc/$pid/status"), expected 2 (filter)"
}

# restart_after_kill NAME: kill -9 endpoint NAME; returns once vswitchd has restarted it
# (up again, restarts 1, another pid).
restart_after_kill() {
  local name=$1 victim
  victim=$(pid_of "$name")
  kill -9 "$victim"
  restarted() { [[ $(ctl ports --json | python3 -c "
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == '$name')
print(p['state'] == 'up' and p['restarts'] == 1 and p['pid'] != $victim)") == True ]]; }
  wait_for 10 "vswitchd to restart $name" restarted
}

# The checks are not vacuous: the daemon itself maps every channel, its stats object and
# every slice, and holds every TAP.
daemon_channels=$(grep -o '/dev/shm/vswitch\.it3\.[a-c]-[a-c]' "/proc/$DAEMON_PID/maps" | sort -u | wc -l)
((daemon_channels == 6)) || fail "vswitchd maps $daemon_channels channels, expected 6"
daemon_stats=$(grep -o '/dev/shm/vswitch\.it3\.stats[^ ]*' "/proc/$DAEMON_PID/maps" | sort -u | tr '\n' ' ')
[[ $daemon_stats == "/dev/shm/vswitch.it3.stats /dev/shm/vswitch.it3.stats.a /dev/shm/vswitch.it3.stats.b /dev/shm/vswitch.it3.stats.c " ]] ||
  fail "vswitchd maps the stats objects [$daemon_stats], expected the daemon's and one slice per endpoint"
daemon_taps=$(grep -h '^iff:' /proc/"$DAEMON_PID"/fdinfo/* 2>/dev/null | wc -l)
((daemon_taps == 3)) || fail "vswitchd holds $daemon_taps TAPs, expected 3"

# check_doorbells: after check_endpoint ran for every endpoint, each one's write ends are
# exactly its peers' doorbells (the pipes the peers read), so it can ring every peer and
# drain none.
declare -A BELL_READ=() BELL_WRITES=()
check_doorbells() {
  local me other
  for me in "${!BELL_WRITES[@]}"; do
    for other in "${!BELL_READ[@]}"; do
      [[ $other == "$me" ]] && continue
      [[ ${BELL_WRITES[$me]} == *" ${BELL_READ[$other]} "* ]] ||
        fail "endpoint $me cannot ring $other's doorbell ${BELL_READ[$other]} (it holds${BELL_WRITES[$me]})"
    done
  done
}

for e in "${ENDPOINTS[@]}"; do check_endpoint "$e" "$(pid_of "$e")"; done
check_doorbells

ping_all() {
  local from to
  for from in 1 2 3; do
    for to in 1 2 3; do
      ((from == to)) && continue
      ip netns exec "vsit-${ENDPOINTS[from - 1]}" ping -c 2 -i 0.1 -W 2 -q "10.78.0.$to" >/dev/null ||
        fail "ping ${ENDPOINTS[from - 1]} -> ${ENDPOINTS[to - 1]} ($1)"
    done
  done
}
ping_all "isolated endpoints"

restart_after_kill b
check_endpoint b "$(pid_of b)"
check_doorbells
ping_all "after b's kill -9 and restart"
# A second switch whose endpoints would run as the same ids (both at the default base)
# is refused, naming the running one: sharing a uid would let their endpoints signal each
# other.
cat >"$WORK/clash.toml" <<TOML
[switch]
name = "itclash$$"
[[endpoint]]
name = "g0"
frontend = "generator"
[[endpoint]]
name = "g1"
frontend = "generator"
TOML
rc=0
timeout 10 "$BIN/vswitchd" --config "$WORK/clash.toml" 2>"$WORK/clash.log" || rc=$?
((rc == 1)) || fail "a second switch on the same endpoint ids exited $rc, expected 1: $(cat "$WORK/clash.log")"
grep -q "endpoint id 60600 (switch.endpoint_uid_base) is used by another switch (switch \"it3\", vswitchd pid $DAEMON_PID)" \
  "$WORK/clash.log" || fail "no message naming the switch that holds the ids: $(cat "$WORK/clash.log")"
# A root vswitchd that cannot change uids (a container, systemd's CapabilityBoundingSet=)
# says so at start instead of restarting endpoints that fail forever.
rc=0
timeout 10 setpriv --bounding-set=-setuid "$BIN/vswitchd" --config "$WORK/clash.toml" 2>"$WORK/nocap.log" || rc=$?
((rc == 1)) && grep -q "needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which vswitchd lacks" "$WORK/nocap.log" ||
  fail "vswitchd without CAP_SETUID exited $rc: $(cat "$WORK/nocap.log")"
pass "each endpoint maps only its channels, its stats slice and its capture object, holds only its TAP, runs as its own uid under a seccomp filter, NoNewPrivs and no capabilities; restarted the same; traffic flows"
stop_daemon

# vhost-user: vm1's socket goes to uid/gid 65534 (needs CAP_CHOWN, the daemon's), vm2's
# stays the daemon's. No front-end connects: what matters is what the processes hold.
SWITCH="itiso$$"
ENDPOINTS=(vm1 vm2)
dir="$WORK/run"
cat >"$WORK/vhost.toml" <<TOML
[switch]
name = "$SWITCH"
[fabric]
ring_bytes = 65536
max_frame = 1500
[[endpoint]]
name = "vm1"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$dir/vm1.sock"
socket_owner = 65534
socket_group = 65534
socket_mode = "0660"
[[endpoint]]
name = "vm2"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$dir/vm2.sock"
TOML
start_daemon "$WORK/vhost.toml"
socket_given() { [[ -S $dir/vm1.sock && $(command stat -c %u:%g:%a "$dir/vm1.sock") == 65534:65534:660 ]]; }
wait_for 10 "vm1's socket owned by 65534:65534, mode 660" socket_given
for e in vm1 vm2; do check_endpoint "$e" "$(pid_of "$e")" vhost; done
inode=$(command stat -c %i "$dir/vm1.sock")
restart_after_kill vm1
socket_given || fail "vm1's socket lost its owner, group or mode over the restart"
[[ $(command stat -c %i "$dir/vm1.sock") == "$inode" ]] || fail "vm1's socket was re-created on restart, not kept by vswitchd"
check_endpoint vm1 "$(pid_of vm1)" vhost
# Shutdown removes the sockets it made, also the one it gave to another owner.
stop_daemon
[[ ! -e $dir/vm1.sock && ! -e $dir/vm2.sock ]] || fail "shutdown left a socket: $(ls -l "$dir")"
pass "vhost-user endpoints: own channels, stats slice and capture object only, no capability; vm1's socket (65534:65534) kept by vswitchd across a restart"
