#!/usr/bin/env bash
# A bounded mixed load against a local `opencity serve --demo` (release build, SQLite in a
# temporary directory): wrk sends the GraphQL queries and mutations of load.lua while a few
# WebSocket subscribers stay connected, and the server's resident memory is sampled.
#
#   api/benches/load.sh
#
# Variables: LOAD_SECONDS (60), CONNECTIONS (16), THREADS (2), SUBSCRIBERS (5),
# RSS_INTERVAL (seconds between memory samples, 5), PORT (default: a free port),
# DEMO_TICKETS (3000), READ_ONLY (1 sends only queries, to watch memory without new data).
# Exits with 1 when a response was not 2xx, carried GraphQL errors, or a subscriber saw an
# error or missed an event. Each subscriber must have received every ticket event of the log
# from its first one on, which the script counts in `opencity-replay export`. Memory is
# reported, not judged. After a failure the server log and the data stay in the directory it
# names.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
LOAD_SECONDS="${LOAD_SECONDS:-60}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
SUBSCRIBERS="${SUBSCRIBERS:-5}"
RSS_INTERVAL="${RSS_INTERVAL:-5}"
DEMO_TICKETS="${DEMO_TICKETS:-3000}"

if ! command -v wrk >/dev/null; then
  echo "wrk is not installed; on Debian: apt-get install -y wrk" >&2
  exit 2
fi

cargo build --release -p opencity-api -p opencity-replay-tool 2>&1 | tail -n 1
# The bench binary is run directly: `cargo bench` would wait for the build lock while other
# builds run, and the load would start without subscribers.
BENCH="$(cargo bench -p opencity-api --bench engine --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n 1)"
if [ ! -x "$BENCH" ]; then
  echo "the engine bench binary was not built" >&2
  exit 2
fi

WORK="$(mktemp -d)"
KEEP_WORK=0
SERVER=""
SUBSCRIBER_PID=""
SAMPLER=""
cleanup() {
  for pid in "$SAMPLER" "$SUBSCRIBER_PID" "$SERVER"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  if [ "$KEEP_WORK" -eq 0 ]; then
    rm -rf "$WORK"
  else
    echo "# server log and data kept in $WORK" >&2
  fi
}
trap cleanup EXIT

PORT="${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE="http://127.0.0.1:$PORT"
echo "# load before the run: $(uptime)"
# Every GraphQL request and subscription carries an administrator token.
OPENCITY_TOKEN="$(target/release/opencity tokens create --role admin --subject load --data-dir "$WORK/data" 2>/dev/null)"
export OPENCITY_TOKEN
AUTH="Authorization: Bearer $OPENCITY_TOKEN"
target/release/opencity serve --demo --demo-tickets "$DEMO_TICKETS" --data-dir "$WORK/data" \
  --listen "127.0.0.1:$PORT" --rate-limit 0 --max-connections-per-token 0 >"$WORK/server.log" 2>&1 &
SERVER=$!

for _ in $(seq 1 600); do
  if curl -sf "$BASE/healthz" >/dev/null; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -sf "$BASE/healthz" >/dev/null

# Open tickets only: closed and cancelled tickets reject comments.
curl -sf "$BASE/graphql" -H 'content-type: application/json' -H "$AUTH" \
  -d '{"query":"{ tickets(first: 500) { edges { node { id status } } } }"}' |
  python3 -c 'import json, sys; [print(edge["node"]["id"]) for edge in json.load(sys.stdin)["data"]["tickets"]["edges"] if edge["node"]["status"] not in ("closed", "cancelled")]' \
  >"$WORK/ids.txt"
echo "# server on $BASE with $(wc -l <"$WORK/ids.txt") open tickets for queries and comments"

"$BENCH" subscribers "ws://127.0.0.1:$PORT/graphql/ws" "$SUBSCRIBERS" "$((LOAD_SECONDS + 20))" \
  >"$WORK/subscribers.log" 2>&1 &
SUBSCRIBER_PID=$!
for _ in $(seq 1 120); do
  if grep -q '^subscribed' "$WORK/subscribers.log"; then break; fi
  if ! kill -0 "$SUBSCRIBER_PID" 2>/dev/null; then
    echo "the subscribers exited:" >&2
    cat "$WORK/subscribers.log" >&2
    exit 1
  fi
  sleep 0.5
done
grep -q '^subscribed' "$WORK/subscribers.log"

rss_kib() { ps -o rss= -p "$SERVER" | tr -d ' '; }
(
  started=$(date +%s)
  while kill -0 "$SERVER" 2>/dev/null; do
    printf '%s\t%s\n' "$(( $(date +%s) - started ))" "$(rss_kib)"
    sleep "$RSS_INTERVAL"
  done
) >"$WORK/rss.tsv" &
SAMPLER=$!

tickets_before="$(curl -sf "$BASE/graphql" -H 'content-type: application/json' -H "$AUTH" -d '{"query":"{ tickets(first: 1) { totalCount } }"}')"
IDS_FILE="$WORK/ids.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${LOAD_SECONDS}s" --latency \
  -s api/benches/load.lua "$BASE/graphql" | tee "$WORK/wrk.txt"
sleep 2
tickets_after="$(curl -sf "$BASE/graphql" -H 'content-type: application/json' -H "$AUTH" -d '{"query":"{ tickets(first: 1) { totalCount } }"}')"

subscribers_ok=0
wait "$SUBSCRIBER_PID" || subscribers_ok=$?
SUBSCRIBER_PID=""
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
SAMPLER=""

echo "# subscribers: $(grep '^subscribers=' "$WORK/subscribers.log" || tail -n 1 "$WORK/subscribers.log")"
echo "# tickets before: $tickets_before; after: $tickets_after"
echo "# server RSS in KiB by second (first, middle, last, max):"
awk -F'\t' '{ t[NR] = $1; r[NR] = $2; if ($2 > max) max = $2 }
  END { m = int((NR + 1) / 2); printf "#   %ss %s, %ss %s, %ss %s, max %s (%d samples)\n", t[1], r[1], t[m], r[m], t[NR], r[NR], max, NR }' \
  "$WORK/rss.tsv"
echo "# load after the run: $(uptime)"

# Every subscriber must have received each ticket event of the log from its first one to the
# last: SQLite numbers the log in commit order, so that is a count between two positions.
kill "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
SERVER=""
target/release/opencity-replay --data-dir "$WORK/data" export --output "$WORK/log.jsonl"
delivery="$(python3 - "$WORK/log.jsonl" "$WORK/subscribers.log" <<'PY'
import json, re, sys
positions = []
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        event = json.loads(line)
        if event["stream_type"] == "ticket":
            positions.append(event["position"])
positions.sort()
last = positions[-1] if positions else None
tallies = []
for line in open(sys.argv[2], encoding="utf-8"):
    m = re.match(r"subscriber=(\d+) received=(\d+) first=(\S+) last=(\S+)", line)
    if m:
        tallies.append(m.groups())
firsts = [int(first) for _, _, first, _ in tallies if first != "none"]
# A subscriber that received nothing should have received what the others did.
earliest = min(firsts) if firsts else None
missing = 0 if tallies else 1
for index, received, first, last_received in tallies:
    start = earliest if first == "none" else int(first)
    expected = 0 if start is None else sum(1 for p in positions if p >= start)
    if int(received) != expected or (start is not None and last_received != str(last)):
        missing += 1
        print(f"subscriber {index}: received {received} of {expected} events, last {last_received} of {last}", file=sys.stderr)
print(f"subscribers_missing_events={missing} log_ticket_events={len(positions)}")
PY
)"
echo "# $delivery"

result_line="$(grep '^checked_responses=' "$WORK/wrk.txt" || true)"
if [ -z "$result_line" ] || ! grep -q 'non_2xx=0 graphql_errors=0 socket_errors=0' <<<"$result_line" \
  || [ "$subscribers_ok" -ne 0 ] || ! grep -q 'subscribers_missing_events=0 ' <<<"$delivery"; then
  echo "FAILED: $result_line; subscriber exit code $subscribers_ok; $delivery" >&2
  KEEP_WORK=1
  exit 1
fi
echo "OK: $result_line; $delivery"
