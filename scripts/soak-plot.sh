#!/usr/bin/env bash
# Draws a soak's PNG from its CSVs (scripts/soak_monitor.py writes them):
#   scripts/soak-plot.sh OUTDIR [TITLE]   ->   OUTDIR/soak.png
# Top: every pair's throughput in 10 s intervals over the last one to two days (soak.csv.1
# and soak.csv); bottom: each hour's average and lowest 10 s interval over the whole run
# (hourly.csv). Needs gnuplot (gnuplot-nox); the emulated board has none, so its soak is
# drawn on the host from the shared folder.
set -euo pipefail
out=$1 title=${2:-vswitch soak}
csv=$out/soak.csv
[[ -s $csv ]] || { echo "soak-plot: no $csv" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "soak-plot: gnuplot not found, $out/soak.png not drawn" >&2; exit 0; }
header=$(head -1 "$csv")
IFS=, read -r -a cols <<<"$header"
data=$(mktemp)
trap 'rm -f "$data"' EXIT
{ [[ -s $csv.1 ]] && tail -n +2 "$csv.1"; tail -n +2 "$csv"; } >"$data"
# Hours on the x axis once the run is longer than two.
last=$(tail -1 "$data" | cut -d, -f1)
x='($1)' unit=seconds
[[ ${last%.*} -gt 7200 ]] && x='($1/3600)' unit=hours
hx=${x/1/2}
plots=()
for i in "${!cols[@]}"; do
  c=${cols[$i]}
  [[ $c == *_to_*_mbps ]] || continue
  plots+=("\"$data\" using $x:$((i + 1)) with lines title \"${c%_mbps}\"")
done
hourly=()
if [[ -s $out/hourly.csv ]]; then
  IFS=, read -r -a hcols <<<"$(head -1 "$out/hourly.csv")"
  for i in "${!hcols[@]}"; do
    c=${hcols[$i]}
    [[ $c == *_avg || $c == *_min ]] || continue
    hourly+=("\"$out/hourly.csv\" using $hx:$((i + 1)) with linespoints title \"$c\"")
  done
fi
{
  echo 'set terminal pngcairo size 1400,900 noenhanced'
  echo "set output \"$out/soak.png\""
  echo 'set datafile separator ","'
  echo 'set key outside'
  echo 'set multiplot layout 2,1'
  echo "set title \"$title: Mbit/s per pair, 10 s intervals (last 1-2 days)\""
  echo "set xlabel \"$unit since start\""
  echo 'set ylabel "Mbit/s"'
  (IFS=,; echo "plot ${plots[*]}")
  if ((${#hourly[@]})); then
    echo "set title \"$title: hourly average and lowest 10 s interval per pair\""
    (IFS=,; echo "plot ${hourly[*]}")
  fi
  echo 'unset multiplot'
} | gnuplot 2>&1 | grep -v 'empty x range' >&2 || true
echo "soak-plot: $out/soak.png"
