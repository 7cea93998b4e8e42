#!/bin/bash
# usage: ab.sh ROUNDS C name=PID:URL ... -> per target median rps and CPU µs/request over interleaved rounds
R=$1; C=$2; shift 2
declare -A rps cpu lat
for i in $(seq $R); do
  for t in "$@"; do
    n=${t%%=*}; r=${t#*=}; pid=${r%%:*}; url=${r#*:}
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    w=$(wrk -t1 -c$C -d3s --latency $url); out=$(echo "$w" | grep -E "Requests/sec" | awk "{print \$2}"); lat[$n]+="$(echo "$w" | grep " 50%" | awk "{print \$2}") "
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    rps[$n]+="$out "; cpu[$n]+="$(echo "($t1-$t0)*10000/($out*3)" | bc -l) "
  done
done
for t in "$@"; do n=${t%%=*}; python3 -c "import statistics as s,sys; r=[float(x) for x in sys.argv[2].split()]; c=[float(x) for x in sys.argv[3].split()]; print(f'{sys.argv[1]:10} p50s {sys.argv[4]} rps median {s.median(r):8.0f}  cpu/req median {s.median(c):5.1f} us   rps {[round(x) for x in r]}')" "$n" "${rps[$n]}" "${cpu[$n]}" "${lat[$n]}"; done
