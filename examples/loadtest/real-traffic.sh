#!/bin/bash
# real-traffic.sh runs the load program's mixed, poll-e2e and accept modes
# against the example server in another process, once per backend named,
# each opened with its package's default options, and writes every figure
# to OUTDIR. Run it from the examples module:
#
#	bash loadtest/real-traffic.sh /tmp/figures memory sqlite postgres redis
#
# The servers of docs/testing.md must be running for postgres and redis.
#
# Accept runs last, against a server started with -no-workers, as the
# in-process accept mode runs no worker either; a server with workers then
# runs the requests it left queued, so that the next run starts from an
# empty queue.
set -euo pipefail
out=${1:?usage: real-traffic.sh OUTDIR BACKEND...}
shift
mkdir -p "$out"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/server" ./server
go build -o "$bin/loadtest" ./loadtest
addr=127.0.0.1:8090

# serve BACKEND LOG [FLAG...] starts the example server and waits until it
# answers; its pid is in $pid.
serve() {
	local b=$1 log=$2
	shift 2
	"$bin/server" -addr "$addr" -backend "$b" -sqlite-path "$bin/load-$b.db" -processor noop -concurrency 100 -defaults "$@" \
		>"$log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://$addr/" && return
		sleep 0.1
	done
	echo "the server of $b did not start: see $log" >&2
	exit 1
}

# stop ends the server $pid.
stop() {
	kill "$pid"
	wait "$pid" || true
}

# drained waits until the server's queue of /jobs is empty.
drained() {
	for _ in $(seq 600); do
		depth=$(curl -s "http://$addr/metrics" | awk '/^asyncreq_queue_depth\{asyncreq_queue="jobs"/ {print $2}')
		[ "$depth" = 0 ] && return
		sleep 1
	done
	echo "the queue of /jobs was not drained in 10 minutes" >&2
	exit 1
}

for b in "$@"; do
	serve "$b" "$out/server-$b.log"
	"$bin/loadtest" -url "http://$addr/jobs" -mode mixed -n 10000 | tee "$out/mixed-$b.txt"
	"$bin/loadtest" -url "http://$addr/jobs" -mode poll-e2e -d 10s | tee "$out/poll-e2e-$b.txt"
	stop

	serve "$b" "$out/server-accept-$b.log" -no-workers
	"$bin/loadtest" -url "http://$addr/jobs" -mode accept -d 10s | tee "$out/accept-$b.txt"
	stop
	serve "$b" "$out/server-drain-$b.log"
	drained
	stop
done
