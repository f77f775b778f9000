#!/usr/bin/env bash
# make bench-load: plain reverse_proxy (:9181) vs session_queue (:9182) in
# one Caddy, in turn with a control (:9184, plain reverse_proxy again), for
# each session mix. Prints one line per mix: req/s ratio of session_queue to
# plain (median; quartiles and min-max over rounds), the control's ratio to
# plain (what the same work measures on this machine: any distance of its
# median from 1 is the method's own error), p50/p99 latencies, Caddy's CPU
# time per request (user + system, from /proc), and for the hot session the
# handoff (release -> next request at the backend). VERBOSE=1 prints every
# round on stderr. A round's ratio moves by +-10% on a shared 2-core
# machine: for a median within about 1.5%, ROUNDS=42 (a multiple of 3, as
# the default, gives each side the first place equally often).
set -euo pipefail
ROUNDS=${ROUNDS:-9} DURATION=${DURATION:-3s} CONNS=${CONNS:-32} THREADS=${THREADS:-2}
MIXES=${MIXES:-"unique many none hot"}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
go build -o bin/caddy ./cmd/caddy
go build -o bin/nullbackend ./bench/nullbackend
./bin/nullbackend & backend=$!
./bin/caddy run --config bench/Caddyfile.bench --adapter caddyfile >/dev/null 2>&1 & caddy=$!
trap 'kill $backend $caddy 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fs localhost:9182/ >/dev/null 2>&1 && break; sleep 0.1; done
# Caddy's CPU time (user + system), in clock ticks.
cputicks() { awk '{print $14 + $15}' "/proc/$caddy/stat"; }
run() { # port mode -> "rps p50_us p99_us cpu_us_per_request"
	local before out; before=$(cputicks)
	out=$(SQ_MODE=$2 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/cookies.lua "http://127.0.0.1:$1/")
	awk -v ticks="$(( $(cputicks) - before ))" -v hz="$(getconf CLK_TCK)" '
	     function us(v){ if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; return v*1e6 }
	     /Requests\/sec/ {rps=$2} $1=="50%" {p50=us($2)} $1=="99%" {p99=us($2)} / requests in / {n=$1}
	     END {printf "%d %.0f %.0f %.1f\n", rps, p50, p99, ticks * 1e6 / hz / n}' <<<"$out"
}
echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t$THREADS -c$CONNS, $ROUNDS rounds of $DURATION"
printf "%-7s %10s %10s %32s %22s %14s %14s %18s %s\n" mix plain_rps queue_rps "ratio med (q1-q3, min-max)" "control med (q1-q3)" "p50 us pl/q" "p99 us pl/q" "Caddy CPU us/req" "handoff p50/p99 us"
SIDES=(plain queue control)
ratio() { awk -v x="$1" -v y="$2" 'BEGIN{printf "%.3f", x/y}'; } # x/y
for mix in $MIXES; do
	ratios=() ; controls=() ; pr=() ; qr=(); p50p=(); p50q=(); p99p=(); p99q=(); h50=(); h99=(); cpup=(); cpuq=()
	for round in $(seq "$ROUNDS"); do
		# Each round runs the three sides in turn, each round's order
		# rotated by one, so that drift hits them alike.
		for i in 0 1 2; do
			case ${SIDES[$(( (round + i) % 3 ))]} in
			plain) a=$(run 9181 "$mix") ;;
			queue)
				curl -fs 127.0.0.1:9190/__gaps >/dev/null
				b=$(run 9182 "$mix"); read -r g50 g99 _ < <(curl -fs 127.0.0.1:9190/__gaps) ;;
			control) c=$(run 9184 "$mix") ;;
			esac
		done
		h50+=("$g50"); h99+=("$g99")
		read -r ar a50 a99 acpu <<<"$a"; read -r br b50 b99 bcpu <<<"$b"; read -r cr _ <<<"$c"
		pr+=("$ar"); qr+=("$br"); p50p+=("$a50"); p50q+=("$b50"); p99p+=("$a99"); p99q+=("$b99"); cpup+=("$acpu"); cpuq+=("$bcpu")
		ratios+=("$(ratio "$br" "$ar")"); controls+=("$(ratio "$cr" "$ar")")
		[ -n "${VERBOSE:-}" ] && echo "# $mix round $round: plain $ar req/s ${acpu} us/req, queue $br req/s ${bcpu} us/req, ratio ${ratios[-1]}, control $cr req/s, ratio ${controls[-1]}" >&2
	done
	med() { printf "%s\n" "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
	mn() { printf "%s\n" "$@" | sort -g | head -1; }
	mx() { printf "%s\n" "$@" | sort -g | tail -1; }
	# quartile q (1 or 3), the nearest rank
	qt() { local q=$1; shift; printf "%s\n" "$@" | sort -g | awk -v q="$q" '{v[NR]=$1} END{i=int(NR*q/4+0.5); if(i<1)i=1; print v[i]}'; }
	handoff=-
	[ "$mix" = hot ] && handoff="$(med "${h50[@]}")/$(med "${h99[@]}")"
	printf "%-7s %10s %10s %8s (%s-%s, %s-%s) %8s (%s-%s) %6s/%-6s %6s/%-6s %8s/%-9s %s\n" "$mix" "$(med "${pr[@]}")" "$(med "${qr[@]}")" \
		"$(med "${ratios[@]}")" "$(qt 1 "${ratios[@]}")" "$(qt 3 "${ratios[@]}")" "$(mn "${ratios[@]}")" "$(mx "${ratios[@]}")" \
		"$(med "${controls[@]}")" "$(qt 1 "${controls[@]}")" "$(qt 3 "${controls[@]}")" \
		"$(med "${p50p[@]}")" "$(med "${p50q[@]}")" "$(med "${p99p[@]}")" "$(med "${p99q[@]}")" \
		"$(med "${cpup[@]}")" "$(med "${cpuq[@]}")" "$handoff"
done
