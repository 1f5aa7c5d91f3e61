#!/bin/bash
# What a monitor costs the bus: `microsocket bench` against a release
# `microsocket serve` with no monitor, with a monitor reading everything, and
# with a monitor stopped by SIGSTOP (its events are dropped), three rounds
# side by side. Build first: cargo build --release -p microsocket-cli
set -euo pipefail
B="$(dirname "$0")/../target/release/microsocket"
S=$(mktemp -d)/bus.sock
$B serve $S & SP=$!
sleep 0.5
run() { $B bench $S -d 2 -c 4 -k 16 -n 10 --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s req/s %.0f deliv/s %.0f" % (sys.argv[1], r["requests"]["requests_per_second"], r["fan_out"]["deliveries_per_second"]))' "$1"; }
for i in 1 2 3; do
  run none
  $B monitor $S > /dev/null 2>/tmp/mon.err & MP=$!; sleep 0.3
  run active
  kill -STOP $MP
  run stopped
  kill -CONT $MP; kill $MP; wait $MP 2>/dev/null || true
done
kill $SP
