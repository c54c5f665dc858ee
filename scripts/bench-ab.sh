#!/usr/bin/env bash
# Benchmark (not a test): this tree (A) against an earlier commit (B) on the same machine,
# interleaved (A B, then B A, ...), so that a change can show what it costs. B is checked
# out as a git worktree in build-ab/<commit>/ and built there by its own scripts/setup.sh;
# A is this tree's build/ (scripts/setup.sh). In every round each side runs each bench once:
#   ring   build/bin/vswitch-bench ring --json: the shared-memory ring alone (frames/s per
#          frame size and mode; its ratio to Boost's spsc_queue measured in the same run)
#   netns  scripts/bench-netns.sh --paths vswitch --rounds 1 --json: two TAP endpoints
#          between namespaces, iperf3 TCP/UDP and the switch's CPU (root)
#   vhost  scripts/bench-vhost.sh --rounds 1 --no-vm --json: DPDK virtio-user guests on
#          the vhost-user endpoints, frames/s and CPU per frame, 64 B and 1500 B (root)
#   gen    two generator endpoints flooding each other (rate_fps = 0) through that side's
#          vswitchd for 6 s after 2 s of warm-up, 64 B and 1500 B: frames delivered per
#          second and the endpoints' CPU per frame. No kernel, no guest: the switch's own
#          per-frame cost, with less noise than the others
# Each figure printed is the median over rounds of that round's A/B ratio (1.00: the same;
# for CPU and latency figures lower is better, for rates higher is), with the spread.
# The machine moves between placements (the ring's probe_rtt_ns says which): a round's
# two sides run back to back, so a ratio compares like with like.
#   scripts/bench-ab.sh COMMIT [--rounds N] [--benches "ring netns vhost gen"] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 COMMIT [--rounds N] [--benches \"ring netns vhost gen\"] [--out DIR]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
rev=$(git rev-parse --verify --quiet "$1^{commit}") || { echo "bench-ab: no commit '$1'" >&2; exit 2; }
shift
rounds=4 benches="ring netns vhost" out=""
while (($#)); do
  case $1 in
    --rounds) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; rounds=$2; shift 2 ;;
    --benches) [[ $# -ge 2 ]] || usage; benches=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
    *) usage ;;
  esac
done
for b in $benches; do
  case $b in ring|netns|vhost|gen) ;; *) echo "bench-ab: unknown bench '$b'" >&2; exit 2 ;; esac
done
for b in $benches; do
  [[ $b == ring || $b == gen || $(id -u) -eq 0 ]] || { echo "bench-ab: netns and vhost need root" >&2; exit 1; }
done

short=${rev:0:12}
base=build-ab/$short
out=${out:-build-ab/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
log() { echo "bench-ab: $*" >&2; }

# The two trees, each built by its own setup script (the same build type on both sides).
if [[ ! -d $base ]]; then
  log "checking out $short in $base"
  git worktree add --detach "$base" "$rev" >/dev/null
fi
log "building A (this tree) and B ($short)"
scripts/setup.sh >/dev/null
(cd "$base" && scripts/setup.sh >/dev/null)
for side in . "$base"; do
  [[ -x $side/build/bin/vswitch-bench ]] || { log "$side has no build/bin/vswitch-bench"; exit 1; }
done

gen_bench() {  # gen_bench DIR: JSON rows {frame_size, fps, cpu_ns_per_frame} for DIR's build
  local dir=$1 size cfg d pids f0 f1 c0 c1 t0 t1 hz
  hz=$(getconf CLK_TCK)
  for size in 64 1500; do
    cfg=$out/gen-$size.toml
    cat >"$cfg" <<TOML
[switch]
name = "abgen$$"
[[endpoint]]
name = "g1"
core = 0
mac = "02:00:00:00:0d:01"
frontend = "generator"
[endpoint.generator]
rate_fps = 0
sizes = [$size]
peer = "g2"
[[endpoint]]
name = "g2"
core = 1
mac = "02:00:00:00:0d:02"
frontend = "generator"
[endpoint.generator]
rate_fps = 0
sizes = [$size]
peer = "g1"
TOML
    "$dir/build/bin/vswitchd" --config "$cfg" 2>>"$out/gen-vswitchd.log" &
    d=$!
    for _ in $(seq 100); do
      [[ $("$dir/build/bin/vswitchctl" --config "$cfg" ports 2>/dev/null | awk '$4 == "up"' | wc -l) -eq 2 ]] && break
      sleep 0.1
    done
    pids=$("$dir/build/bin/vswitchctl" --config "$cfg" ports --json | python3 -c '
import json, sys
print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)["ports"]))')
    delivered() { "$dir/build/bin/vswitchctl" --config "$cfg" stats --json | python3 -c '
import json, sys
print(sum(e["tx_frames"] for e in json.load(sys.stdin)["endpoints"]))'; }
    ticks() { local p t=0; for p in $pids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
    sleep 2  # warm-up: the window measured starts with the flood in full swing
    f0=$(delivered); c0=$(ticks); t0=$(date +%s.%N)
    sleep 6
    f1=$(delivered); c1=$(ticks); t1=$(date +%s.%N)
    kill -INT "$d"; wait "$d" || true
    python3 -c "
import json
frames = $f1 - $f0
print(json.dumps({'frame_size': $size, 'fps': frames / ($t1 - $t0),
                  'cpu_ns_per_frame': ($c1 - $c0) / $hz * 1e9 / frames if frames else 0}))"
  done
}

run_one() {  # bench side round: writes $out/<bench>-<side>-<round>.json
  local bench=$1 side=$2 r=$3 dir
  [[ $side == A ]] && dir=. || dir=$base
  local f=$out/$bench-$side-$r.json
  case $bench in
    ring) (cd "$dir" && build/bin/vswitch-bench ring --json) >"$f" ;;
    netns) (cd "$dir" && scripts/bench-netns.sh --paths vswitch --rounds 1 --json) >"$f" 2>"$f.log" ;;
    vhost) (cd "$dir" && scripts/bench-vhost.sh --rounds 1 --no-vm --json) >"$f" 2>"$f.log" ;;
    gen) gen_bench "$dir" >"$f" 2>"$f.log" ;;
  esac || { log "$bench on $side failed in round $r (see $f.log)"; return 1; }
}

for ((r = 1; r <= rounds; r++)); do
  order="A B"
  ((r % 2 == 0)) && order="B A"
  for bench in $benches; do
    for side in $order; do
      log "round $r/$rounds: $bench $side"
      run_one "$bench" "$side" "$r"
    done
  done
done

python3 - "$out" "$rounds" "$benches" "$short" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys
out, rounds, benches, short = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]

def load(bench, side, r):
    rows = []
    for line in open(f"{out}/{bench}-{side}-{r}.json"):
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows

def figures(bench, rows):
    """(name, value) of every figure a run reports."""
    f = {}
    for o in rows:
        if bench == "ring" and not o.get("summary"):
            key = f"ring {o['impl']} {o['frame_size']} B {o['mode']}"
            for m in ("frames_per_s", "ratio_vs_boost", "consumer_cpu"):
                if o.get(m):
                    f[f"{key} {m}"] = float(o[m])
        elif bench == "netns" and o.get("vswitch") is not None:
            f[f"netns {o['metric']}"] = float(o["vswitch"])
        elif bench == "gen":
            for m in ("fps", "cpu_ns_per_frame"):
                if o.get(m):
                    f[f"gen {o['frame_size']} B {m}"] = float(o[m])
        elif bench == "vhost":
            for m in ("mpps", "cpu_ns_per_frame", "ratio_dpdk_cpu_over_ours"):
                if o.get(m):
                    f[f"vhost {o['frame_size']} B {m}"] = float(o[m])
    return f

print(f"A = this tree, B = {short}; {rounds} interleaved rounds; ratio A/B per round, median [min, max]")
for bench in benches:
    ratios = {}
    for r in range(1, rounds + 1):
        a, b = figures(bench, load(bench, "A", r)), figures(bench, load(bench, "B", r))
        for k in a:
            if k in b and b[k] > 0:
                ratios.setdefault(k, []).append(a[k] / b[k])
    for k in sorted(ratios):
        v = ratios[k]
        print(f"{k:58} {statistics.median(v):6.3f}  [{min(v):.3f}, {max(v):.3f}]  n={len(v)}")
PY
log "rows and summary in $out"
