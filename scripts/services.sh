#!/usr/bin/env bash
# Makes sure the services the tests talk to run on loopback: RabbitMQ (5672), MariaDB (3306,
# root without password) and Redis (6379), and that the tools the suites drive are installed
# (wrk for the load suite's comparators, iptables for the chaos suite's partitions). Installs
# the Debian packages that are missing and starts what is stopped; leaves running services
# alone. Safe to run again.
#
# Usage: scripts/services.sh [rabbitmq] [mariadb] [redis] [tools]  (default: all of them; the
# main command asks only for what it uses).
set -euo pipefail

log() { printf 'services: %s\n' "$*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_port() { # port what seconds
  for _ in $(seq 1 "$3"); do listening "$1" && return 0; sleep 1; done
  log "$2 did not open port $1 within $3 s"; return 1
}

ensure_rabbitmq() {
  listening 5672 && { log "RabbitMQ is up"; return; }
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 RabbitMQ 60
  # The port opens before the node accepts work; await_startup fails until the node has
  # registered with epmd, so poll it.
  for _ in $(seq 1 30); do as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
}

ensure_mariadb() {
  if ! listening 3306; then
    command -v mariadbd >/dev/null || apt_install mariadb-server
    log "starting MariaDB"
    as_root install -d -o mysql -g mysql /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_port 3306 MariaDB 60
  fi
  # A fresh Debian install lets root in through the socket only; the tests connect over TCP.
  if ! mysql -h127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    log "allowing root without password on 127.0.0.1"
    as_root mysql -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  fi
  log "MariaDB is up"
}

ensure_redis() {
  listening 6379 && { log "Redis is up"; return; }
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  as_root install -d /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis 30
}

ensure_tools() {
  command -v wrk >/dev/null || apt_install wrk
  command -v iptables >/dev/null || apt_install iptables
  command -v chromium >/dev/null || apt_install chromium
  log "tools: wrk, iptables, chromium"
}

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(rabbitmq mariadb redis tools)
for part in "${wanted[@]}"; do
  case "$part" in
    rabbitmq|mariadb|redis|tools) "ensure_$part" ;;
    *) log "unknown part '$part' (rabbitmq, mariadb, redis, tools)"; exit 2 ;;
  esac
done
