#!/usr/bin/env bash
# Soak with real VMs: N QEMU guests (Linux virtio-net driver) on vhost-user endpoints of one
# switch, for DURATION (seconds, or 30m, 12h, 3d, 2w). Every guest sends iperf3 TCP to the
# next one and UDP at a fixed rate to the previous one (so every VM sends and receives
# both), and pings every other guest once a second. iperf3 runs in back-to-back segments
# (--segment, default 1 h; iperf3 refuses more than 24 h), gaps measured and reported.
# scripts/soak_monitor.py samples every 10 s into soak.csv (every ordered pair's Mbit/s,
# drops, endpoint memory/fds/threads), writes an hourly summary line (summary.txt) and
# redraws soak.png; it fails loudly (non-zero exit; failure.txt with `vswitchctl channels`,
# `stats` and the guests' interface counters) when a pair moves nothing for 30 s, a
# segment fails, a UDP datagram is lost without a counted reason (switch drops, the guests'
# socket and interface drops), a bad descriptor chain is seen, an endpoint's private memory,
# fds or threads keep growing, or more than 0.1% (+1) of a pair's pings are lost.
#   scripts/soak-vm.sh DURATION [--vms N] [--arch x86_64|arm64] [--config TOPOLOGY]
#                      [--out DIR] [--segment S] [--hour S] [--udp-rate R] [--tcp-floor MBPS]
#                      [--udp-floor FRACTION] [--settle S] [--tcp-rate R] [--stall S]
# Defaults: 4 VMs (the ZCU102 board's shape) on a generated topology, x86_64 guests under
# TCG, UDP 5M per stream (what TCG guests receive beside TCP without overflowing their
# sockets), a TCP stream's floor 0.1 Mbit/s and a UDP stream's half its rate (--udp-floor
# 0.5; a pair's floor is the sum of its streams'; guests nested in the emulated board move
# far less and pace late when starved, and their soak sets all lower), floors and lost
# pings judged from the start (--settle: after S seconds, for guests slow to start their
# streams), TCP as fast as it goes (--tcp-rate: capped, for guests that would otherwise
# starve each other), a pair below its floor for 30 s fails (--stall). --config takes a
# topology whose vhost-user endpoints are the guests (e.g. configs/zcu102-4vm.toml).
# Environment: VSWITCH_BIN (default build/bin),
# VSWITCH_NO_SETUP=1 (no apt, no build, no image build: inside the emulated board), and
# scripts/vm-lib.sh's VM_ACCEL, VM_MEM, VM_IMAGE, VM_QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SOAK_UDP_RATE=5M
usage="usage: $0 DURATION [--vms N] [--arch x86_64|arm64] [--config TOPOLOGY] [--out DIR] [--segment S] [--hour S] [--udp-rate R] [--tcp-floor MBPS] [--udp-floor FRACTION] [--settle S] [--tcp-rate R] [--stall S]"
soak_parse_common soak-vm "$@" || { echo "$usage" >&2; exit 2; }
vms="" arch=x86_64 cfg="" tcp_floor=0.1 udp_floor=0.5 settle=0 tcp_rate=0 stall=30
set -- "${SOAK_REST[@]}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --vms) vms=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --config) cfg=$2; shift 2 ;;
    --tcp-floor) [[ ${2:-} =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "soak-vm: --tcp-floor MBPS" >&2; exit 2; }
                 tcp_floor=$2; shift 2 ;;
    --udp-floor) [[ ${2:-} =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || { echo "soak-vm: --udp-floor FRACTION (0 to 1)" >&2; exit 2; }
                 udp_floor=$2; shift 2 ;;
    --settle) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "soak-vm: --settle SECONDS" >&2; exit 2; }
              settle=$2; shift 2 ;;
    --tcp-rate) [[ ${2:-} =~ ^[0-9]+[KMG]?$ ]] || { echo "soak-vm: --tcp-rate R (e.g. 400K)" >&2; exit 2; }
                tcp_rate=$2; shift 2 ;;
    --stall) [[ ${2:-} =~ ^[0-9]+$ && $2 -ge 10 ]] || { echo "soak-vm: --stall SECONDS (>= 10)" >&2; exit 2; }
             stall=$2; shift 2 ;;
    *) echo "soak-vm: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
case $arch in x86_64|amd64) arch=x86_64 ;; arm64|aarch64) arch=arm64 ;; *) echo "soak-vm: --arch x86_64|arm64" >&2; exit 2 ;; esac
[[ -z $vms || $vms =~ ^[0-9]+$ ]] || { echo "soak-vm: --vms N" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "soak-vm: needs root (vhost-user sockets in /run)" >&2; exit 1; }
out=$SOAK_OUT secs=$SOAK_SECS
bin=${VSWITCH_BIN:-build/bin}
image=${VM_IMAGE:-build/vm}
[[ $arch == arm64 ]] && image=${VM_IMAGE:-build/vm-arm64}
if [[ -z ${VSWITCH_NO_SETUP:-} ]]; then
  scripts/setup.sh >/dev/null
  if [[ $arch == arm64 ]]; then scripts/vm-image.sh --arch arm64 "$image" >/dev/null; else scripts/vm-image.sh "$image" >/dev/null; fi
  soak_plot_deps
fi
# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh
export VM_ARCH=$arch

# The guests: name, MAC and vhost-user socket of each, from the topology (given or made).
if [[ -z $cfg ]]; then
  cfg=$out/topology.toml
  n=${vms:-4}
  ((n >= 2 && n <= 62)) || { echo "soak-vm: --vms must be 2..62" >&2; exit 2; }
  cores=$(nproc)
  { echo "# Made by scripts/soak-vm.sh: $n guests on vhost-user endpoints."
    echo "[switch]"; echo "name = \"soakvm$$\""  # its own switch: two soaks never share sockets
    echo "[fabric]"; echo "ring_bytes = 2097152"; echo "max_frame = 65536"
    for ((i = 0; i < n; i++)); do
      printf '[[endpoint]]\nname = "vm%d"\ncore = %d\nmac = "52:54:00:00:06:%02x"\nfrontend = "vhost-user"\n' \
        "$i" $((i % cores)) $((i + 1))
      printf '[endpoint.vhost_user]\nsocket = "/run/vswitch/soakvm%d-vm%d.sock"\nqueue_size = 256\n' $$ "$i"
    done; } >"$cfg"
fi
mapfile -t guests < <(python3 - "$cfg" <<'PY'
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
for e in t["endpoint"]:
    if e.get("frontend") == "vhost-user":
        print(e["name"], e["mac"], e["vhost_user"]["socket"])
PY
)
n=${#guests[@]}
((n >= 2)) || { echo "soak-vm: $cfg has $n vhost-user endpoints; need at least 2" >&2; exit 2; }
[[ -z $vms || $vms == "$n" ]] || { echo "soak-vm: --vms $vms but $cfg has $n vhost-user endpoints" >&2; exit 2; }
names=() macs=() socks=() ips=()
for g in "${guests[@]}"; do
  read -r nm mac sock <<<"$g"
  names+=("$nm") macs+=("$mac") socks+=("$sock") ips+=("10.0.6.$((${#ips[@]} + 1))")
done

daemon_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$daemon_pid" ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { "$bin/vswitchctl" --config "$cfg" "$@"; }
dump() {
  { [[ ${1:-} == guests ]] || { echo "== vswitchctl channels"; ctl channels; echo "== vswitchctl stats"; ctl stats; }
    echo "== the guests' interface and socket drop counters (latest VSOAK NET of each)"
    for nm in "${names[@]}"; do grep -a "VSOAK NET" "$out/$nm.console" | tail -1 | tr -d '\r'; done
    for nm in "${names[@]}"; do echo "== $nm console (tail)"; tail -15 "$out/$nm.console" | tr -d '\r'; done
  } 2>&1 | tee -a "$out/failure.txt" >&2
}
die() { echo "SOAK-VM FAILED: $*" | tee -a "$out/failure.txt" >&2; dump; exit 1; }

# The guest image plus the load script, appended as a second cpio archive (the kernel
# unpacks concatenated archives in order).
mkdir -p "$out/image"
python3 - "$image/initrd.img" scripts/soak-load.sh "$out/image/initrd.img" <<'PY'
import sys
base, script, dest = sys.argv[1:]
def entry(name, data, mode):
    name_b = name.encode() + b"\0"
    fields = [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
    h = b"070701" + b"".join(b"%08X" % f for f in fields) + name_b
    h += b"\0" * (-len(h) % 4)
    return h + data + b"\0" * (-len(data) % 4)
with open(dest, "wb") as o:
    o.write(open(base, "rb").read())
    o.write(entry("soak-load.sh", open(script, "rb").read(), 0o100755) + entry("TRAILER!!!", b"", 0))
PY
ln -sf "$(cd "$image" && pwd)/vmlinuz" "$out/image/vmlinuz"

"$bin/vswitchd" --config "$cfg" 2> >(rotate_log "$out/vswitchd.log") &
daemon_pid=$!
deadline=$((SECONDS + 20))
until [[ $(ctl ports 2>/dev/null | awk 'NR > 1 && $4 == "up"' | wc -l) -eq $(grep -c '^\[\[endpoint\]\]' "$cfg") ]]; do
  ((SECONDS < deadline)) || die "vswitchd did not bring the endpoints up: $(tail -5 "$out/vswitchd.log")"
  sleep 0.2
done

for ((i = 0; i < n; i++)); do
  next=$(((i + 1) % n)) prev=$(((i + n - 1) % n))
  peers=""
  for ((j = 0; j < n; j++)); do ((j == i)) || peers+="${peers:+ }${names[j]}@${ips[j]}"; done
  VM_IMAGE=$out/image vm_boot "$out" "${names[i]}" "${macs[i]}" "${ips[i]}" \
    "SOAK_SETUP_S=${SOAK_SETUP_S:-10} sh /soak-load.sh ${names[i]} $secs $SOAK_SEGMENT ${names[next]}@${ips[next]} ${names[prev]}@${ips[prev]} $SOAK_UDP_RATE '$peers' - 30 $tcp_rate" \
    "$(vhost_netdev "${socks[i]}")"
  pids+=("$VM_PID")
done
consoles=()
for nm in "${names[@]}"; do consoles+=("$out/$nm.console"); done
deadline=$((SECONDS + 180 + 60 * n))
until [[ $(cat "${consoles[@]}" | grep -ac "VSOAK UP") -ge $n ]]; do
  ((SECONDS < deadline)) || die "the guests did not all reach each other"
  for nm in "${names[@]}"; do grep -aq "VMTEST-RC" "$out/$nm.console" && die "$nm ended early"; done
  sleep 1
done
pairs="" streams=""
for ((i = 0; i < n; i++)); do
  for ((j = 0; j < n; j++)); do ((i == j)) || pairs+="${pairs:+,}${names[i]}>${names[j]}"; done
  streams+="${streams:+,}tcp:${names[i]}>${names[(i + 1) % n]},udp:${names[i]}>${names[(i + n - 1) % n]}"
done
echo "soak-vm: $n $arch guests, $secs s in segments of $SOAK_SEGMENT s, sampling every 10 s into $out/soak.csv"
warmup=$((secs / 3 < 60 ? secs / 3 : 60))
rc=0
python3 scripts/soak_monitor.py --ctl "$bin/vswitchctl" --config "$cfg" --out "$out" --duration "$secs" \
  --hour "$SOAK_HOUR" --warmup "$warmup" --segment "$SOAK_SEGMENT" --udp-mbps "$(rate_mbps "$SOAK_UDP_RATE")" --tcp-floor "$tcp_floor" --udp-floor "$udp_floor" --settle "$settle" --stall "$stall" --title "vswitch VM soak ($n $arch guests)" \
  --pairs "$pairs" --streams "$streams" --reports "${consoles[@]}" \
  --expect-done "$n" --grace $((120 + 30 * n)) --pids "vswitchd=$daemon_pid" || rc=$?
if ((rc)); then dump guests; exit 1; fi  # the monitor wrote the switch's side
for nm in "${names[@]}"; do
  r=$(vm_rc "$out" "$nm" 120) || die "$nm did not finish"
  ((r == 0)) || die "$nm's load ended with status $r"
done
echo "soak-vm: passed; $out/soak.csv, $out/summary.txt, $out/soak.png"
