#!/usr/bin/env bash
# tools/flamegraph.sh SCENARIO [cairn-perf run flags...]
#
# Records where the Cairn server spends its CPU while cairn-perf drives SCENARIO, and
# renders flamegraphs/SCENARIO.svg. The server is built with frame pointers so
# `perf record -g` sees whole Rust stacks (this machine has no hardware counters, so
# the cpu-clock software event samples at 999 Hz); inferno renders without Perl.
# Extra arguments go to `cairn-perf run` (default: closed loop, --max --duration 15).
set -euo pipefail

scenario="${1:?usage: tools/flamegraph.sh SCENARIO [cairn-perf run flags...]}"
shift
extra=("$@")
if [ ${#extra[@]} -eq 0 ]; then extra=(--max --duration 15 --warmup 2); fi
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno (cargo install inferno)" >&2
    cargo install inferno
fi

# The server gets its own target directory: a RUSTFLAGS change would otherwise rebuild
# (and later un-build) the normal release tree. The harness is the normal build.
cargo build --release -p cairn-perf
harness="$root/target/release/cairn-perf"
CARGO_TARGET_DIR="$root/target/frame-pointers" RUSTFLAGS="-C force-frame-pointers=yes" \
    cargo build --release --bin cairn
server="$root/target/frame-pointers/release/cairn"

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
"$server" serve --listen "$addr" --shards "${SHARDS:-2}" > "$work/server.log" 2>&1 &
server_pid=$!
cleanup() { kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q "cairn listening on" "$work/server.log" && break; sleep 0.1; done
grep -q "cairn listening on" "$work/server.log" || { echo "the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

# Record the server only, for as long as the harness runs (set-up included; it is short).
perf record -e cpu-clock -F 999 -g -p "$server_pid" -o "$work/perf.data" 2> "$work/perf.log" &
perf_pid=$!
"$harness" run --scenario "$scenario" --target cairn --addr "$addr" --quiet --out "$work/run" "${extra[@]}"
kill -INT "$perf_pid"
wait "$perf_pid" || true

mkdir -p flamegraphs
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/collapsed.txt"
inferno-flamegraph --title "cairn serve under cairn-perf $scenario (${extra[*]})" < "$work/collapsed.txt" > "flamegraphs/$scenario.svg"
echo "wrote flamegraphs/$scenario.svg ($(wc -l < "$work/collapsed.txt") distinct stacks)"
# The hottest leaf functions, for reading without a browser.
awk '{ n = $NF; sub(/ [0-9]+$/, ""); k = split($0, f, ";"); self[f[k]] += n; total += n }
     END { for (s in self) printf "%6.2f%%  %s\n", 100 * self[s] / total, s }' "$work/collapsed.txt" \
    | sort -nr | head -25 > "flamegraphs/$scenario.top.txt"
cat "flamegraphs/$scenario.top.txt"
