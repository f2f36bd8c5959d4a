#!/bin/bash
# bench-access-log.sh measures COPY throughput and prune time of
# custinfo.access_log for two builds, one database each: ROWS rows spread
# over the 390 days before DAY, then 200,000 rows of DAY three times, then
# six prune steps. docs/benchmarks.md ("The access log") has its results.
#
#   BEFORE=/tmp/custinfo-before AFTER=bin/custinfo ROWS=20000000 scripts/bench-access-log.sh
#
# Needs psql and a local PostgreSQL (PGHOST, PGUSER as usual; the server
# writes and reads the CSV files in WORK). Drops and
# creates the databases al_bench_before and al_bench_after.
set -euo pipefail
: "${BEFORE:?set BEFORE to the custinfo build before}" "${AFTER:?set AFTER to the custinfo build after}"
ROWS=${ROWS:-20000000}
DAY=${DAY:-2026-12-02}
WORK=${WORK:-$(mktemp -d /tmp/al-bench.XXXXXX)}
chmod 777 "$WORK" # the server writes and reads the CSV files
PSQL="psql -X -q -v ON_ERROR_STOP=1"
COLS="at, request_id, lookup, key_id, client_ip, code, status, latency_us, query_masked, query_hash, matches"

log() { echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg) $*"; }
# secs CMD... runs CMD, its output to $WORK/cmd.log, and prints its seconds.
secs() {
	local s; s=$(date +%s.%N)
	"$@" >>"$WORK/cmd.log" 2>&1
	echo "$(date +%s.%N) - $s" | bc
}

log "writing $ROWS rows to $WORK"
$PSQL -d postgres -c "COPY (SELECT timestamptz '$DAY 00:00:00+00' - interval '390 days' + (i * (interval '390 days' / $ROWS)), 'r' || lpad(to_hex(i), 15, '0'), 'customer', (i % 3) + 1, ('10.0.' || (i / 250 % 250) || '.' || (i % 250))::inet, 'ok', 200, 800 + i % 3000, '010****' || lpad((i % 10000)::text, 4, '0'), encode(sha256(int8send(i % 50000000)), 'hex'), 1 FROM generate_series(0, $ROWS - 1) i) TO '$WORK/old.csv' CSV"
$PSQL -d postgres -c "COPY (SELECT timestamptz '$DAY 00:00:00+00' + (i * (interval '14 hours' / 200000)), 's' || lpad(to_hex(i), 15, '0'), 'customer', (i % 3) + 1, ('10.1.' || (i / 250 % 250) || '.' || (i % 250))::inet, 'ok', 200, 800 + i % 3000, '010****' || lpad((i % 10000)::text, 4, '0'), encode(sha256(int8send(i % 50000000 + 7)), 'hex'), 1 FROM generate_series(0, 199999) i) TO '$WORK/today.csv' CSV"

for tree in before after; do
	bin=$BEFORE
	[ "$tree" = after ] && bin=$AFTER
	db=al_bench_$tree
	url="postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/$db?sslmode=disable"
	$PSQL -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
	"$bin" migrate up --database-url "$url" >>"$WORK/cmd.log" 2>&1
	if "$bin" access-log partitions list --help >/dev/null 2>&1; then # a build with daily partitions
		log "$tree partitions ensure: $(secs "$bin" access-log partitions ensure --database-url "$url" --from "$(date -u -d "$DAY - 391 days" +%F)" --days 1) s"
	fi
	log "$tree COPY $ROWS rows: $(secs $PSQL -d "$db" -c "COPY custinfo.access_log ($COLS) FROM '$WORK/old.csv' CSV") s"
	$PSQL -d "$db" -c CHECKPOINT
	for run in 1 2 3; do
		log "$tree COPY 200000 rows of $DAY, run $run: $(secs $PSQL -d "$db" -c "COPY custinfo.access_log ($COLS) FROM '$WORK/today.csv' CSV") s"
	done
	log "$tree size: $($PSQL -d "$db" -Atc "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'custinfo' AND c.relname LIKE 'access_log%' AND c.relkind = 'r'")"
	for age in 389d 385d 380d 375d 370d 365d; do
		log "$tree prune --older-than $age: $(secs "$bin" access-log prune --database-url "$url" --older-than $age) s"
	done
	log "$tree VACUUM: $(secs $PSQL -d "$db" -c "VACUUM custinfo.access_log") s"
	$PSQL -d postgres -c "DROP DATABASE $db"
done
rm -f "$WORK/old.csv" "$WORK/today.csv"
log "done; the commands' output is in $WORK/cmd.log"
