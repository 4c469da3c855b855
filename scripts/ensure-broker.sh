#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on POSTAGE_HOST:POSTAGE_PORT (default 127.0.0.1:5672).
# If none does: installs rabbitmq-server from Debian's packages when missing, starts it
# detached, and waits for it. Development tooling: never imported at run time.
set -euo pipefail
host="${POSTAGE_HOST:-127.0.0.1}"
host="${host%%,*}"
port="${POSTAGE_PORT:-5672}"

reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if reachable; then
  exit 0
fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "ensure-broker: no broker at $host:$port, and it is not local: start it yourself" >&2
  exit 69
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
  echo "ensure-broker: installing rabbitmq-server from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
fi
export PATH="$PATH:/usr/sbin"
echo "ensure-broker: starting rabbitmq-server" >&2
$SUDO rabbitmq-server -detached || true
$SUDO rabbitmqctl await_startup --timeout 120 >/dev/null
for _ in $(seq 1 60); do
  if reachable; then exit 0; fi
  sleep 1
done
echo "ensure-broker: RabbitMQ did not come up on $host:$port" >&2
exit 69
