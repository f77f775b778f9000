#!/usr/bin/env bash
# make bench-cluster: what cluster mode costs, local mode and cluster mode
# in alternating rounds of one run. Two Caddy instances (bin/caddy) in
# front of bench/nullbackend, each with a local-mode site (:9201, :9202)
# and a cluster-mode site (:9211, :9212) whose zone shares one
# redis-server on a unix socket.
#
# latency: one instance, its local site vs its cluster site, wrk with each
#   of $LAT_CONNS connections (1: the added latency alone; more: under
#   load); per mix: req/s ratio, p50 and p99.
# pair: both instances at once, one wrk on each (-t1 -c$((CONNS/2))), the
#   local pair vs the cluster pair; per mix: summed req/s and their ratio,
#   and in the cluster rounds Redis round trips per request (INFO
#   commandstats), the coordinators' calls by operation (their metrics),
#   and for the hot session the handoff seen at the backend.
# Mixes (bench/cluster.lua): unique (a new session per request), many (one
# of 1,000 sessions shared by both wrk processes), hot (one session).
set -euo pipefail
ROUNDS=${ROUNDS:-7} DURATION=${DURATION:-3s} CONNS=${CONNS:-32} LAT_CONNS=${LAT_CONNS:-"1 8"}
LAT_MIXES=${LAT_MIXES:-"unique hot"} MIXES=${MIXES:-"unique many hot"}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server" >&2; exit 1; }
go build -o bin/caddy ./cmd/caddy
go build -o bin/nullbackend ./bench/nullbackend
tmp=$(mktemp -d /tmp/sq-bench-cluster.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
sock=$tmp/redis.sock
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no --daemonize no --logfile "$tmp/redis.log" & pids+=($!)
./bin/nullbackend & pids+=($!)
for i in 1 2; do
	cat >"$tmp/Caddyfile$i" <<-EOF
	{
		admin 127.0.0.1:329$i
		persist_config off
		auto_https off
		log {
			level ERROR
		}
	}
	:920$i {
		session_queue {
			zone local
		}
		reverse_proxy 127.0.0.1:9190
	}
	:921$i {
		session_queue {
			zone shared
			cluster redis {
				address unix/$sock
				secret bench-cluster-secret-0123456789
			}
		}
		reverse_proxy 127.0.0.1:9190
	}
	EOF
	XDG_CONFIG_HOME=$tmp XDG_DATA_HOME=$tmp ./bin/caddy run --config "$tmp/Caddyfile$i" --adapter caddyfile >"$tmp/caddy$i.log" 2>&1 & pids+=($!)
done
for port in 9201 9202 9211 9212; do
	for _ in $(seq 100); do curl -fs "127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
	curl -fs "127.0.0.1:$port/" >/dev/null || { echo "nothing serves :$port" >&2; cat "$tmp"/caddy*.log >&2; exit 1; }
done

# wrk_run threads conns port mix seed -> "requests rps p50_us p99_us"
wrk_run() {
	SQ_MODE=$4 SQ_SEED=$5 wrk -t"$1" -c"$2" -d"$DURATION" --latency -s bench/cluster.lua "http://127.0.0.1:$3/" |
	awk 'function us(v){ if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; return v*1e6 }
	     / requests in / {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=us($2)} $1=="99%" {p99=us($2)}
	     END {printf "%d %d %.0f %.0f\n", n, rps, p50, p99}'
}
# pair_run base_port mix -> "requests rps p50_us p99_us", p50/p99 the mean of the two wrk processes'
pair_run() {
	wrk_run 1 $((CONNS / 2)) $(($1 + 1)) "$2" 1 >"$tmp/w1" & local w1=$!
	wrk_run 1 $((CONNS / 2)) $(($1 + 2)) "$2" 2 >"$tmp/w2" & local w2=$!
	wait $w1 $w2
	cat "$tmp/w1" "$tmp/w2" | awk '{n+=$1; r+=$2; p50+=$3; p99+=$4} END {printf "%d %d %.0f %.0f\n", n, r, p50/2, p99/2}'
}
# round_trips: top-level Redis commands since the last CONFIG RESETSTAT
# (the scripts' own commands are counted apart by Redis; not these).
round_trips() {
	redis-cli -s "$sock" INFO commandstats | tr -d '\r' |
	awk -F'[:=,]' '$1 ~ /^cmdstat_(evalsha|eval|script\|load|ping|subscribe|hello|client\|setinfo)$/ {n+=$3} END {print n+0}'
}
scripts() {
	redis-cli -s "$sock" INFO commandstats | tr -d '\r' |
	awk -F'[:=,]' '$1 ~ /^cmdstat_(evalsha|eval)$/ {n+=$3} END {print n+0}'
}
# calls op -> the coordinators' Redis calls of op so far, both instances
calls() {
	for i in 1 2; do curl -fs "127.0.0.1:329$i/metrics"; done |
	awk -v op="$1" '$1 ~ "^caddy_session_queue_redis_seconds_count" && $1 ~ "op=\""op"\"" {n+=$2} END {print n+0}'
}
med() { printf "%s\n" "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
mn() { printf "%s\n" "$@" | sort -g | head -1; }
mx() { printf "%s\n" "$@" | sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b/a}'; }

echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(redis-server --version | cut -d' ' -f3); $ROUNDS rounds of $DURATION, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for conns in $LAT_CONNS; do
threads=$(( conns < 2 ? conns : 2 ))
echo "## latency: one instance, local (:9201) vs cluster (:9211), wrk -t$threads -c$conns"
printf "%-7s %10s %10s %22s %14s %16s\n" mix local_rps cluster_rps "ratio med (min-max)" "p50 us l/c" "p99 us l/c"
for mix in $LAT_MIXES; do
	lr=(); cr=(); rs=(); l50=(); c50=(); l99=(); c99=()
	for round in $(seq "$ROUNDS"); do
		# Alternate which side goes first, so drift hits both alike.
		if (( round % 2 )); then
			a=$(wrk_run "$threads" "$conns" 9201 "$mix" 0); b=$(wrk_run "$threads" "$conns" 9211 "$mix" 0)
		else
			b=$(wrk_run "$threads" "$conns" 9211 "$mix" 0); a=$(wrk_run "$threads" "$conns" 9201 "$mix" 0)
		fi
		read -r _ ar a50 a99 <<<"$a"; read -r _ br b50 b99 <<<"$b"
		lr+=("$ar"); cr+=("$br"); l50+=("$a50"); c50+=("$b50"); l99+=("$a99"); c99+=("$b99"); rs+=("$(ratio "$ar" "$br")")
	done
	printf "%-7s %10s %10s %8s (%s-%s) %6s/%-7s %7s/%-8s\n" "$mix" "$(med "${lr[@]}")" "$(med "${cr[@]}")" \
		"$(med "${rs[@]}")" "$(mn "${rs[@]}")" "$(mx "${rs[@]}")" \
		"$(med "${l50[@]}")" "$(med "${c50[@]}")" "$(med "${l99[@]}")" "$(med "${c99[@]}")"
done
done

echo "## pair: both instances, one wrk -t1 -c$((CONNS / 2)) on each, local (:9201+:9202) vs cluster (:9211+:9212)"
printf "%-7s %10s %10s %22s %14s %16s %9s %9s %22s %12s\n" mix local_rps cluster_rps "ratio med (min-max)" "p50 us l/c" "p99 us l/c" \
	"rt/req" "scr/req" "acq/rel/renew per req" "handoff us"
for mix in $MIXES; do
	lr=(); cr=(); rs=(); l50=(); c50=(); l99=(); c99=(); rt=(); sc=(); acq=(); rel=(); ren=(); h50=(); h99=()
	for round in $(seq "$ROUNDS"); do
		cluster_round() {
			redis-cli -s "$sock" CONFIG RESETSTAT >/dev/null
			local a0 r0 n0; a0=$(calls acquire); r0=$(calls release); n0=$(calls renew)
			curl -fs 127.0.0.1:9190/__gaps >/dev/null
			b=$(pair_run 9210 "$mix")
			read -r g50 g99 _ < <(curl -fs 127.0.0.1:9190/__gaps)
			local n; read -r n _ <<<"$b"
			rt+=("$(ratio "$n" "$(round_trips)")"); sc+=("$(ratio "$n" "$(scripts)")")
			acq+=("$(ratio "$n" $(($(calls acquire) - a0)))"); rel+=("$(ratio "$n" $(($(calls release) - r0)))")
			ren+=("$(ratio "$n" $(($(calls renew) - n0)))")
			h50+=("$g50"); h99+=("$g99")
		}
		if (( round % 2 )); then
			a=$(pair_run 9200 "$mix"); cluster_round
		else
			cluster_round; a=$(pair_run 9200 "$mix")
		fi
		read -r _ ar a50 a99 <<<"$a"; read -r _ br b50 b99 <<<"$b"
		lr+=("$ar"); cr+=("$br"); l50+=("$a50"); c50+=("$b50"); l99+=("$a99"); c99+=("$b99"); rs+=("$(ratio "$ar" "$br")")
	done
	handoff=-
	[ "$mix" = hot ] && handoff="$(med "${h50[@]}")/$(med "${h99[@]}")"
	printf "%-7s %10s %10s %8s (%s-%s) %6s/%-7s %7s/%-8s %9s %9s %22s %12s\n" "$mix" "$(med "${lr[@]}")" "$(med "${cr[@]}")" \
		"$(med "${rs[@]}")" "$(mn "${rs[@]}")" "$(mx "${rs[@]}")" \
		"$(med "${l50[@]}")" "$(med "${c50[@]}")" "$(med "${l99[@]}")" "$(med "${c99[@]}")" \
		"$(med "${rt[@]}")" "$(med "${sc[@]}")" "$(med "${acq[@]}")/$(med "${rel[@]}")/$(med "${ren[@]}")" "$handoff"
done
