#!/usr/bin/env bash
# Runs the engine benchmarks and their raw PostgreSQL baselines back to back, in release.
#
#   api/benches/run-all.sh [SECTION...]     sections: command bulk fanout (default: all three)
#
# PostgreSQL must listen on 127.0.0.1:5432 with trust authentication for the user postgres (or
# set OPENCITY_TEST_PG); every round creates and drops its own database. The variables
# DURATION, REPEATS, BULK_TICKETS, FANOUT_SUBSCRIBERS, FANOUT_EVENTS and FANOUT_INTERVAL_MS are
# passed on (see api/benches/engine/main.rs). With the defaults a full run takes about
# 15 minutes on 2 cores. The log goes to target/bench-engine/run-<time>.log, and the result
# table ends it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

for tool in psql pgbench python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is not installed; the raw baselines need the PostgreSQL client tools and python3" >&2
    exit 2
  fi
done

# 1,000 subscribers hold 2,000 sockets in the benchmark process (client and server ends).
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
  if ! ulimit -n 8192 2>/dev/null; then
    echo "cannot raise the open-file limit to 8192 (hard limit $(ulimit -Hn)); lower FANOUT_SUBSCRIBERS" >&2
    exit 2
  fi
fi

mkdir -p target/bench-engine
LOG="target/bench-engine/run-$(date -u +%Y%m%dT%H%M%SZ).log"
{
  echo "# machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "# PostgreSQL: $(psql -X -h 127.0.0.1 -U postgres -d postgres -Atc 'SHOW server_version')"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "# load before the build: $(uptime)"
} | tee "$LOG"

cargo build --release -p opencity-replay-tool 2>&1 | tail -n 1
# The binary is run directly, so that the run neither waits for the build lock of other builds
# nor rebuilds in the middle.
BENCH="$(cargo bench -p opencity-api --bench engine --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)"
if [ ! -x "$BENCH" ]; then
  echo "the engine bench binary was not built" >&2
  exit 2
fi
export OPENCITY_REPLAY="$ROOT/target/release/opencity-replay"

echo "# load before the run: $(uptime)" | tee -a "$LOG"
"$BENCH" --bench "$@" 2>&1 | tee -a "$LOG"
echo "# load after the run: $(uptime)" | tee -a "$LOG"
echo "log: $LOG"
