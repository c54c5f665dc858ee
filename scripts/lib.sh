# Sourced by the scripts: small helpers more than one of them needs.

# duration_seconds D: D as seconds; D is a number of seconds or one with a unit (90s,
# 30m, 12h, 3d, 2w). Returns 1, printing nothing, for anything else.
duration_seconds() {
  [[ $1 =~ ^([0-9]+)([smhdw]?)$ ]] || return 1
  local n=$((10#${BASH_REMATCH[1]}))
  case ${BASH_REMATCH[2]} in
    w) echo $((n * 604800)) ;; d) echo $((n * 86400)) ;; h) echo $((n * 3600)) ;; m) echo $((n * 60)) ;;
    *) echo "$n" ;;
  esac
}

# Soak options shared by scripts/soak.sh and scripts/soak-vm.sh. soak_parse_common NAME ARG...
# consumes DURATION and the common options, leaving what it does not know in SOAK_REST:
#   --out DIR        results (default NAME-<date>/)
#   --segment S      longest iperf3 run (default 3600 s; at most 86400, iperf3's own limit):
#                    a soak of any length is back-to-back segments, their gaps measured
#   --hour S         summary period (default 3600 s; shorter only to test the summaries)
#   --udp-rate R     iperf3 UDP rate of each stream (iperf3 -b syntax)
soak_parse_common() {
  local name=$1; shift
  [[ $# -ge 1 ]] || return 2
  SOAK_SECS=$(duration_seconds "$1") || { echo "$name: bad DURATION '$1' (seconds, or 30m, 12h, 3d, 2w)" >&2; return 2; }
  ((SOAK_SECS > 0)) || { echo "$name: DURATION must be positive" >&2; return 2; }
  shift
  SOAK_OUT="$name-$(date +%Y%m%d-%H%M%S)" SOAK_SEGMENT=3600 SOAK_HOUR=3600 SOAK_REST=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --out) SOAK_OUT=$2; shift 2 ;;
      --segment) SOAK_SEGMENT=$(duration_seconds "$2") || { echo "$name: bad --segment '$2'" >&2; return 2; }; shift 2 ;;
      --hour) SOAK_HOUR=$(duration_seconds "$2") || { echo "$name: bad --hour '$2'" >&2; return 2; }; shift 2 ;;
      --udp-rate) SOAK_UDP_RATE=$2; shift 2 ;;
      *) SOAK_REST+=("$1"); shift ;;
    esac
  done
  # iperf3 3.12: "test duration too long (maximum = 86400 seconds)".
  if ((SOAK_SEGMENT < 5 || SOAK_SEGMENT > 86400)); then
    echo "$name: --segment must be 5..86400 s (iperf3 refuses -t above 86400)" >&2; return 2
  fi
  ((SOAK_HOUR >= 10)) || { echo "$name: --hour must be at least 10 s" >&2; return 2; }
  mkdir -p "$SOAK_OUT"
  SOAK_OUT=$(cd "$SOAK_OUT" && pwd)
}

# rotate_log FILE: copies stdin to FILE, keeping at most about 20 MiB: past 10 MiB the file
# becomes FILE.1 (replacing the older one) and a new FILE starts. For days-long runs.
rotate_log() {
  awk -v f="$1" -v max=10485760 '{ print > f; fflush(f); n += length($0) + 1
    if (n > max) { close(f); system("mv -f \"" f "\" \"" f ".1\""); n = 0 } }'
}

# soak_plot_deps: gnuplot for the PNGs (not on the emulated board: its host draws them).
soak_plot_deps() {
  dpkg-query -W -f='${Status}' gnuplot-nox 2>/dev/null | grep -q "install ok installed" ||
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends gnuplot-nox >/dev/null
}

# rate_mbps R: an iperf3 -b rate (50M, 500K, 1G, or bits/s) in Mbit/s.
rate_mbps() {
  awk -v r="$1" 'BEGIN { n = r + 0; u = substr(r, length(r)); m = (u == "G" || u == "g") ? 1000 : (u == "M" || u == "m") ? 1 : (u == "K" || u == "k") ? 0.001 : 0.000001; print n * m }'
}
