#!/usr/bin/env bash
# Start the servers the tests talk to (DESIGN.md §7) when they are not answering; wait until they do.
set -uo pipefail

up() { # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}

wait_up() { # name port seconds
  for _ in $(seq 1 "$3"); do up 127.0.0.1 "$2" && return 0; sleep 1; done
  echo "services: $1 did not come up on port $2" >&2
  return 1
}

if ! up 127.0.0.1 6379; then
  echo "services: starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_up redis 6379 30
fi
if ! up 127.0.0.1 5432; then
  echo "services: starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_up postgresql 5432 60
fi
if ! up 127.0.0.1 3306; then
  echo "services: starting mariadb"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_up mariadb 3306 60
fi
if ! up 127.0.0.1 5672; then
  echo "services: starting rabbitmq"
  rabbitmq-server -detached
  wait_up rabbitmq 5672 120
fi
exit 0
