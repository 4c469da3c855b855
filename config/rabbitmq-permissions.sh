#!/usr/bin/env bash
# Least-privilege RabbitMQ users for a Postage fleet on one vhost (docs/security.md):
#
#   config/rabbitmq-permissions.sh VHOST daemon USER APP...   # a postaged daemon running APP... (its own name included)
#   config/rabbitmq-permissions.sh VHOST app USER APP         # a plain library application named APP
#   config/rabbitmq-permissions.sh VHOST operator USER        # the postage CLI: send, rpc, ping, status, ps, restart, quit
#
# It only sets permissions (the user must exist: rabbitmqctl add_user USER, password from a
# file, never on a command line that others can read). Prints each rabbitmqctl command it runs.
# No user gets a tag: none can manage users, vhosts or policies.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,12p' "$0"; exit 64; }
vhost=$1 role=$2 user=$3
shift 3
ctl() { echo "rabbitmqctl $*"; rabbitmqctl -q "$@"; }
# Queue names of an application N: N, N@H, N:P@H, N#G (addressing); the exchanges it declares,
# binds and publishes to; server-named amq.gen-… reply queues (Python-style callers); the default
# exchange (amq.default) for RPC replies and retries.
app_names() {
  local out="" n
  for n in "$@"; do out="${out:+$out|}$(printf '%s' "$n" | sed 's/[.[\*^$()+?{|\\]/\\&/g')"; done
  printf '%s' "$out"
}
case "$role" in
  daemon|app)
    [ $# -ge 1 ] || { echo "give the application name(s)" >&2; exit 64; }
    names=$(app_names "$@")
    own="^(generic-application-exchange|postage\\.dead-letter(\\..+)?|($names)([@:#].+)?|amq\\.gen-.+)\$"
    write="^(generic-application-exchange|postage\\.dead-letter(\\..+)?|($names)([@:#].+)?|amq\\.gen-.+|amq\\.default)\$"
    ctl set_permissions -p "$vhost" "$user" "$own" "$write" "$own"
    ;;
  operator)
    # Publishes commands and RPCs to the application exchange (it checks that the exchange
    # exists instead of declaring it) and reads replies by direct reply-to, which needs no
    # permission. `postage topology` needs configure on the queues: run it as a daemon's user.
    ctl set_permissions -p "$vhost" "$user" '^$' '^generic-application-exchange$' '^$'
    ;;
  *) echo "role must be daemon, app or operator" >&2; exit 64 ;;
esac
