#!/usr/bin/env bash
# The NATS example end to end: starts a local nats-server with JetStream (a
# free loopback port, a temporary store), runs the shipping service and the
# order service, kills the server with SIGKILL in the middle of the stream
# and starts it again, then prints both summaries. Exits 0 when every order
# was shipped once, after being placed and paid.
#
#   examples/nats/run.sh [BUILD_DIR] [ORDERS]
#
# BUILD_DIR holds examples/nats_orders and examples/nats_shipping (default:
# build/dev). Needs nats-server (Debian: apt-get install nats-server).
set -euo pipefail

build=${1:-build/dev}
orders=${2:-10000}
orders_bin=$build/examples/nats_orders
shipping_bin=$build/examples/nats_shipping
server_bin=${NATS_SERVER:-$(command -v nats-server || true)}
for f in "$orders_bin" "$shipping_bin"; do
  [[ -x $f ]] || { echo "run.sh: $f is missing: build the examples with libnats-dev installed" >&2; exit 2; }
done
[[ -n $server_bin ]] || { echo "run.sh: nats-server is missing (apt-get install nats-server)" >&2; exit 2; }

dir=$(mktemp -d /tmp/sluice-nats-example-XXXXXX)
server_pid=
shipping_pid=
orders_pid=
cleanup() {
  for p in $orders_pid $shipping_pid $server_pid; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# A free port: one that nothing answers on.
port=$(
  for p in $(shuf -i 20000-60000 -n 50); do
    (exec 4<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; break; }
  done
)
url=nats://127.0.0.1:$port

start_server() {
  "$server_bin" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" -l "$dir/server.log" &
  server_pid=$!
  for _ in $(seq 1 500); do
    (exec 4<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.02
  done
  echo "run.sh: nats-server did not start (see $dir/server.log)" >&2
  exit 1
}

start_server
echo "== nats-server on $url"
"$shipping_bin" --url "$url" --orders "$orders" --timeout 120 &
shipping_pid=$!
"$orders_bin" --url "$url" --orders "$orders" --rate 5000 &
orders_pid=$!

sleep 1
echo "== killing nats-server (SIGKILL) in the middle of the stream"
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
sleep 0.5
echo "== starting it again on the same port and store"
start_server

status=0
wait "$orders_pid" || status=$?
orders_pid=
wait "$shipping_pid" || status=$?
shipping_pid=
if [[ $status -eq 0 ]]; then
  echo "== every order shipped once, after being placed and paid, across a server crash"
else
  echo "== FAILED (status $status)"
fi
exit "$status"
