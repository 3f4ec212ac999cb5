#!/usr/bin/env bash
# Goodput of several builds of the compare binary side by side, each against quinn in the
# same run: rounds of every binary in a random order, one bulk run per implementation and
# mode per binary and round, then min / median / max of phantom/quinn goodput per binary
# and mode.
#
# Usage: bench/compare/versions.sh [-r ROUNDS] [-l MAX_LOAD] [-o OUT_DIR] \
#            LABEL=BINARY [LABEL=BINARY ...] [-- ARGS FOR EVERY BINARY]
#
# BINARY is a compare bench executable, e.g. the one
#   cargo bench --locked --manifest-path bench/compare/Cargo.toml --bench compare --no-run
# names (target/release/deps/compare-*); build each version with a target directory of
# its own. ARGS default to one bulk run each of phantom and quinn, both modes, default
# controllers, 4 MiB socket buffers:
#   --only bulk --rounds 1 --cc default --buffers equal --modes shared,split \
#   --impls phantom,quinn
# Before each round the script waits (at most 5 minutes) for the 1-minute load average to
# drop to MAX_LOAD (default: no wait) and records the load the round started at.
# OUT_DIR (default: a new temporary directory) keeps each run's full output and
# ratios.tsv: round, label, mode, phantom MB/s, quinn MB/s, phantom/quinn goodput,
# phantom/quinn bytes per CPU-second (split: the sender thread's), load.
set -euo pipefail

rounds=5
max_load=""
out=""
while getopts "r:l:o:" opt; do
    case "$opt" in
    r) rounds="$OPTARG" ;;
    l) max_load="$OPTARG" ;;
    o) out="$OPTARG" ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))

labels=()
declare -A bin
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    label="${1%%=*}"
    path="${1#*=}"
    if [ "$label" = "$1" ] || [ ! -x "$path" ]; then
        echo "versions.sh: expected LABEL=EXECUTABLE, got '$1'" >&2
        exit 2
    fi
    labels+=("$label")
    bin[$label]="$path"
    shift
done
[ "${1:-}" = "--" ] && shift
if [ $# -gt 0 ]; then
    args=("$@")
else
    args=(--only bulk --rounds 1 --cc default --buffers equal --modes shared,split
        --impls phantom,quinn)
fi
if [ ${#labels[@]} -eq 0 ]; then
    echo "versions.sh: no LABEL=EXECUTABLE given" >&2
    exit 2
fi
[ -n "$out" ] || out="$(mktemp -d)"
mkdir -p "$out"
tsv="$out/ratios.tsv"
printf 'round\tlabel\tmode\tphantom_MBps\tquinn_MBps\tgoodput_ratio\tcpu_ratio\tload1\n' >"$tsv"
ptsv="$out/phantom.tsv"
printf 'round\tlabel\tmode\tphantom_MBps\tphantom_us_per_dgram\tload1\n' >"$ptsv"

load1() { cut -d' ' -f1 /proc/loadavg; }

wait_for_load() {
    [ -n "$max_load" ] || return 0
    local waited=0
    while awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l > m) }'; do
        [ "$waited" -ge 300 ] && return 0
        sleep 10
        waited=$((waited + 10))
    done
}

echo "versions.sh: ${labels[*]}; $rounds rounds; args: ${args[*]}; output in $out"
for round in $(seq 1 "$rounds"); do
    wait_for_load
    load="$(load1)"
    order=$(printf '%s\n' "${labels[@]}" | shuf)
    echo "round $round (load $load): $(echo $order)"
    seed=$((RANDOM * 32768 + RANDOM))
    for label in $order; do
        log="$out/round$round-$label.txt"
        "${bin[$label]}" --bench --seed "$seed" "${args[@]}" >"$log" 2>&1 || {
            echo "versions.sh: $label failed in round $round (see $log)" >&2
            continue
        }
        # Per-run rows: "<impl> <condition> <mode> <round> <MB/s> <CPU s> ...", impl
        # "phantom" or "quinn 0.11"; one row per implementation and mode with --rounds 1.
        # The summary rows ("<impl> <condition> <mode> <dgram> <min> / ...") are skipped.
        awk -v r="$round" -v lab="$label" -v load="$load" '
            $1 == "phantom" && ($3 == "shared" || $3 == "split") && $6 != "/" { p[$3] = $5; pc[$3] = $9 }
            $1 == "quinn" && ($4 == "shared" || $4 == "split") && $7 != "/" { q[$4] = $6; qc[$4] = $10 }
            END {
                for (m in p) if (m in q && q[m] > 0 && qc[m] > 0)
                    printf "%s\t%s\t%s\t%.1f\t%.1f\t%.4f\t%.4f\t%s\n", r, lab, m, p[m], q[m],
                        p[m] / q[m], pc[m] / qc[m], load
            }' "$log" >>"$tsv"
        awk -v r="$round" -v lab="$label" -v load="$load" '
            $1 == "phantom" && ($3 == "shared" || $3 == "split") && $6 != "/" {
                printf "%s\t%s\t%s\t%s\t%s\t%s\n", r, lab, $3, $5, $10, load
            }' "$log" >>"$ptsv"
    done
done

echo
echo "phantom/quinn, min / median / max over rounds ($tsv)"
printf '%-12s %-7s %4s %23s %23s %20s %20s\n' label mode runs "goodput ratio" "bytes/CPU-s ratio" \
    "phantom MB/s" "quinn MB/s"
for label in "${labels[@]}"; do
    for mode in shared split; do
        stats() { # column -> "min / median / max"
            awk -F'\t' -v l="$label" -v m="$mode" -v c="$1" 'NR > 1 && $2 == l && $3 == m { print $c }' "$tsv" |
                sort -g | awk -v p="$2" '{ v[NR] = $1 } END {
                    if (NR == 0) { print "-"; exit }
                    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                    printf "%." p "f / %." p "f / %." p "f\n", v[1], med, v[NR] }'
        }
        n=$(awk -F'\t' -v l="$label" -v m="$mode" 'NR > 1 && $2 == l && $3 == m' "$tsv" | wc -l)
        printf '%-12s %-7s %4s %23s %23s %20s %20s\n' "$label" "$mode" "$n" "$(stats 6 3)" \
            "$(stats 7 3)" "$(stats 4 0)" "$(stats 5 0)"
    done
done

echo
echo "phantom alone, min / median / max over rounds ($ptsv); medians relative to ${labels[0]}"
printf '%-12s %-7s %4s %20s %9s %20s %9s\n' label mode runs "MB/s" "rel" "us/datagram" "rel"
median() { # tsv column of label and mode -> median
    awk -F'\t' -v l="$1" -v m="$2" -v c="$3" 'NR > 1 && $2 == l && $3 == m { print $c }' "$ptsv" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0;
            else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for label in "${labels[@]}"; do
    for mode in shared split; do
        n=$(awk -F'\t' -v l="$label" -v m="$mode" 'NR > 1 && $2 == l && $3 == m' "$ptsv" | wc -l)
        [ "$n" -gt 0 ] || continue
        range() {
            awk -F'\t' -v l="$label" -v m="$mode" -v c="$1" 'NR > 1 && $2 == l && $3 == m { print $c }' \
                "$ptsv" | sort -g | awk -v p="$2" '{ v[NR] = $1 } END {
                    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                    printf "%." p "f / %." p "f / %." p "f\n", v[1], med, v[NR] }'
        }
        rel() {
            awk -v a="$(median "$label" "$mode" "$1")" -v b="$(median "${labels[0]}" "$mode" "$1")" \
                'BEGIN { if (b > 0) printf "%.3f\n", a / b; else print "-" }'
        }
        printf '%-12s %-7s %4s %20s %9s %20s %9s\n' "$label" "$mode" "$n" "$(range 4 0)" "$(rel 4)" \
            "$(range 5 2)" "$(rel 5)"
    done
done
echo "load average (1 min) at round starts: $(awk -F'\t' 'NR > 1 { print $6 }' "$ptsv" | sort -u -g | tr '\n' ' ')"
