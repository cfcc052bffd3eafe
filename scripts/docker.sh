#!/usr/bin/env bash
# Makes a container engine that testcontainers 0.28 can drive answer on /var/run/docker.sock,
# for the container tests. Quiet when one already does; otherwise installs Debian's podman and
# serves its Docker-compatible API there. Safe to run again. Needs root or sudo.
#
# Why podman and not Debian's docker.io: testcontainers 0.28 (bollard 0.21) speaks Docker API
# 1.53 and never negotiates down, and bookworm's Docker 20.10 stops at API 1.41, so it refuses
# every request ("client version 1.53 is too new"). Podman 4.3's service accepts it, and the
# docker CLI (which negotiates) works against it too. A newer Docker engine that already answers
# on the socket, or at $DOCKER_HOST, is used as it is.
#
# The podman service's settings live in /run/rmq-harness/containers.conf and apply to it alone
# (CONTAINERS_CONF): runc (crun refuses this machine's hybrid cgroups), cgroupfs and a file event
# log (no systemd), and default ulimits within the service's own hard limits (runc cannot raise
# them: "error setting rlimit ... operation not permitted"). Containers use the host network.
#
# Environment: DOCKER_HOST (an engine to use instead), ENGINE_LOG (default
# /var/log/podman-service.log), ENGINE_WAIT_SECS (default 60).
set -euo pipefail

API=1.53 # what testcontainers 0.28 sends
SOCKET=/var/run/docker.sock
PODMAN_SOCKET=/run/podman/podman.sock
CONF=/run/rmq-harness/containers.conf
INIT=/usr/libexec/podman/catatonit # podman's default init_path
LOGFILE=${ENGINE_LOG:-/var/log/podman-service.log}

log() { printf 'docker: %s\n' "$*"; }
die() { printf 'docker: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# get SOCKET PATH: the body of an engine API request, failing on a refused one.
get() { curl -fsS --max-time 5 --unix-socket "$1" "http://engine$2" 2>/dev/null; }
accepts_api() { get "$1" "/v$API/_ping" >/dev/null; }
describe() { # what answers on a socket, for messages: "Podman Engine 4.3.1 (API 1.41)"
  local body name version api
  body=$(get "$1" /version) || { printf 'nothing readable'; return; }
  name=$(grep -o '"Components":\[{"Name":"[^"]*"' <<<"$body" | cut -d'"' -f6) || true
  version=$(grep -o '"Version":"[^"]*","ApiVersion":"[^"]*"' <<<"$body" | cut -d'"' -f4) || true
  api=$(grep -o '"ApiVersion":"[^"]*"' <<<"$body" | tail -n 1 | cut -d'"' -f4) || true
  printf '%s %s (API %s)' "${name:-engine}" "${version:-?}" "${api:-?}"
}

check_docker_host() {
  case "$DOCKER_HOST" in
    unix://*) ;;
    *) log "DOCKER_HOST=$DOCKER_HOST is not a unix socket; leaving it to testcontainers"; exit 0 ;;
  esac
  local sock=${DOCKER_HOST#unix://}
  accepts_api "$sock" && exit 0
  die "DOCKER_HOST=$DOCKER_HOST does not accept Docker API $API (it answers: $(describe "$sock")); unset it to let this script run podman on $SOCKET"
}

install_podman() {
  log "installing podman (apt-get)"
  as_root apt-get update -qq
  # runc: see above; catatonit: podman's --init, which the harness asks for.
  local out
  out=$(mktemp)
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc catatonit >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "installing podman failed"; }
  rm -f "$out"
}

# runc cannot give a container more than the service has; podman itself caps nproc at 32768.
limit() { # ulimit-flag cap
  local hard
  hard=$(ulimit -H "$1")
  if [ "$hard" = unlimited ] || [ "$hard" -gt "$2" ]; then echo "$2"; else echo "$hard"; fi
}

start_podman() {
  local nofile nproc
  nofile=$(limit -n 1048576)
  nproc=$(limit -u 32768)
  as_root install -d /run/podman "$(dirname "$CONF")"
  as_root tee "$CONF" >/dev/null <<EOF
# Written by scripts/docker.sh for the podman service it starts.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  log "starting podman's Docker API service (log: $LOGFILE)"
  # setsid detaches it from this script's session so it outlives the caller (CI reuses it).
  # It runs in /: conmon inherits the service's working directory and fails to start any
  # container ("Failed to get working directory") once the checkout that started it is gone.
  # shellcheck disable=SC2016 # $0 and $@ belong to the inner shell, which runs as root
  as_root sh -c 'cd / && exec "$@" >>"$0" 2>&1 </dev/null' "$LOGFILE" \
    env CONTAINERS_CONF="$CONF" setsid prlimit --nofile="$nofile" --nproc="$nproc" \
    podman system service --time=0 "unix://$PODMAN_SOCKET" &
}

wait_for() { # socket
  local secs=${ENGINE_WAIT_SECS:-60}
  for _ in $(seq 1 "$secs"); do accepts_api "$1" && return 0; sleep 1; done
  tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
  die "no engine accepted Docker API $API on $1 within ${secs} s (log: $LOGFILE)"
}

# A podman service started earlier from a checkout that is gone starts no container: conmon
# inherits its working directory. Services this script starts run in /; older ones are stopped.
stop_orphaned_podman() {
  local pid
  for pid in $(pgrep -f "podman system service" || true); do
    if [[ "$(as_root readlink "/proc/$pid/cwd" 2>/dev/null)" == *" (deleted)" ]]; then
      log "stopping podman's service $pid: its working directory is gone"
      as_root kill "$pid" || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
  done
}

command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
[ -z "${DOCKER_HOST:-}" ] || check_docker_host
stop_orphaned_podman
accepts_api "$SOCKET" && exit 0
if get "$SOCKET" /_ping >/dev/null; then
  die "the engine on $SOCKET ($(describe "$SOCKET")) refuses Docker API $API, which testcontainers 0.28 speaks; stop it so podman can serve there, or set DOCKER_HOST to a newer engine"
fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! [ -x "$INIT" ]; then
  install_podman
fi
accepts_api "$PODMAN_SOCKET" || start_podman
wait_for "$PODMAN_SOCKET"
# The path testcontainers and the docker CLI look at first; podman-docker links it the same way.
as_root ln -sfn "$PODMAN_SOCKET" "$SOCKET"
wait_for "$SOCKET"
log "$(describe "$SOCKET" | sed 's/ (API .*//') serves Docker API $API on $SOCKET"
