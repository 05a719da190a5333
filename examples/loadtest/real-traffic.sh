#!/bin/bash
# real-traffic.sh runs the load program's mixed and poll-e2e modes against
# the example server in another process, once per backend named, each
# opened with its package's default options, and writes every figure to
# OUTDIR. Run it from the examples module:
#
#	bash loadtest/real-traffic.sh /tmp/figures memory sqlite postgres redis
#
# The servers of docs/testing.md must be running for postgres and redis.
set -euo pipefail
out=${1:?usage: real-traffic.sh OUTDIR BACKEND...}
shift
mkdir -p "$out"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/server" ./server
go build -o "$bin/loadtest" ./loadtest
addr=127.0.0.1:8090
for b in "$@"; do
	db="$bin/load-$b.db"
	"$bin/server" -addr "$addr" -backend "$b" -sqlite-path "$db" -processor noop -concurrency 100 -defaults \
		>"$out/server-$b.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://$addr/" && break
		sleep 0.1
	done
	"$bin/loadtest" -url "http://$addr/jobs" -mode mixed -n 10000 | tee "$out/mixed-$b.txt"
	"$bin/loadtest" -url "http://$addr/jobs" -mode poll-e2e -d 10s | tee "$out/poll-e2e-$b.txt"
	kill "$pid"
	wait "$pid" || true
done
