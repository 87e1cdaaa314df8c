#!/usr/bin/env bash
# Plots the per-second CSVs of larder_read_bench (one file per mode, as
# read_bench.sh writes them) with gnuplot: throughput, hit ratio and p99 latency
# over time, cold and warm phases shaded.
#
#   plot.sh OUT.png TITLE DURATION COLD WARM MODE.csv...
#
# A mode's name is its file's base name (larder.csv -> larder).
set -euo pipefail
[[ $# -ge 6 ]] || { echo "usage: $0 OUT.png TITLE DURATION COLD WARM MODE.csv..." >&2; exit 2; }
out=$1 title=$2 duration=$3 cold=$4 warm=$5
shift 5
command -v gnuplot >/dev/null || { echo "gnuplot not installed (apt-get install -y gnuplot-nox)" >&2; exit 3; }

declare -A color=([larder]="#1b9e77" [cache-aside]="#d95f02" [postgres]="#7570b3")
tput="" hit="" p99=""
for f in "$@"; do
  mode=$(basename "$f" .csv); c=${color[$mode]:-black}
  style="with linespoints pt 7 ps 0.6 lw 2 lc rgb '$c' title '$mode'"
  tput+="${tput:+, }'$f' using (\$2-0.5):3 $style"
  [[ $mode == postgres ]] || hit+="${hit:+, }'$f' using (\$2-0.5):6 $style"
  p99+="${p99:+, }'$f' using (\$2-0.5):(\$10/1000) $style"
done
warm_from=$(( duration > warm ? duration - warm : 0 ))

mkdir -p "$(dirname "$out")"
gnuplot <<GP
set terminal pngcairo size 1100,1050 font 'DejaVu Sans,11' noenhanced
set output '$out'
set datafile separator ','
set datafile missing ''
set grid
set xrange [0:$duration]
set xtics 5
set lmargin 12
set rmargin 3
set style rect fc rgb '#ececec' fs solid 1.0 noborder
set object 1 rect from first 0, graph 0 to first $cold, graph 1 behind
set object 2 rect from first $warm_from, graph 0 to first $duration, graph 1 behind fc rgb '#e3ecfa'
set key outside top center horizontal
set multiplot layout 3,1 title "$title"
set ylabel 'requests / s'
set yrange [0:*]
set label 1 'cold' at first 0.3, graph 0.92
set label 2 'warm' at first $warm_from.3, graph 0.92
plot $tput
unset label 1
unset label 2
set key inside bottom right vertical opaque box
set ylabel 'hit ratio'
set yrange [0:1]
plot $hit
set key inside top right vertical opaque box
set ylabel 'p99 latency, ms (log)'
set xlabel 'seconds since the cold start (each point: one second)'
set logscale y
set yrange [*:*]
plot $p99
unset multiplot
GP
