#!/usr/bin/env bash
# Builds the local RabbitMQ image the container tests use where no registry can be reached:
# a Debian bookworm root filesystem made by debootstrap with rabbitmq-server and tini, imported
# with `docker import`. Does nothing when the image is already there.
#
# The root filesystem tarball is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/rmq-harness/, so a
# later run on the same machine only re-imports it (seconds) instead of running debootstrap
# again (minutes).
#
# Usage: scripts/rabbitmq-image.sh [--rebuild] [IMAGE]
#   IMAGE      image name (default $HARNESS_RABBITMQ_IMAGE, else rmq-harness/rabbitmq:3.10-bookworm)
#   --rebuild  drop the cached tarball and the image, then build both again
# Environment: DEBIAN_MIRROR overrides the mirror read from /etc/apt/sources.list*.
# Needs a running Docker engine (scripts/docker.sh) and root or sudo for debootstrap.
set -euo pipefail

SUITE=bookworm
PACKAGES=rabbitmq-server,tini
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/rmq-harness
# The name carries what went into the tarball so a change of suite or packages misses the cache.
TARBALL=$CACHE_DIR/rootfs-$SUITE-${PACKAGES//,/-}.tar

# The docker CLI when there is one (it talks to whatever serves the socket), else podman's own.
engine() { if command -v docker >/dev/null; then docker "$@"; else podman "$@"; fi; }

log() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

rebuild=""
named=""
image=${HARNESS_RABBITMQ_IMAGE:-rmq-harness/rabbitmq:3.10-bookworm}
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) image=$arg; named=1 ;;
  esac
done
case "$image" in
  rabbitmq|rabbitmq:*|library/rabbitmq*|docker.io/*)
    # The environment may select the official image where a registry is reachable.
    [ -n "$named" ] || { log "HARNESS_RABBITMQ_IMAGE=$image is an official image: nothing to build"; exit 0; }
    die "refusing to name the local build $image: it would shadow the official image" ;;
esac

# The first http(s) URI that serves $SUITE itself (not -security or -updates), from either the
# one-line format or the deb822 .sources format.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [ -r "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*deb[[:space:]]/ {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }
      /^[[:space:]]*$/ { uri = ""; ok = 0; bin = 0 }
      /^Types:/ { for (j = 2; j <= NF; j++) if ($j == "deb") bin = 1 }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (j = 2; j <= NF; j++) if ($j == suite) ok = 1 }
      uri != "" && ok && bin { print uri; exit }
    ' "$f"
  done | grep -m1 -E '^https?://' || true
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  log "installing debootstrap (apt-get)"
  as_root apt-get update -qq
  local out
  out=$(mktemp)
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "installing debootstrap failed"; }
  rm -f "$out"
}

# debootstrap mounts /proc and /sys inside the target; a failed run can leave them mounted, and
# removing the tree then would reach into the host's, so unmount before deleting.
mounts_under() { findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r; }
remove_tree() {
  local dir=$1 m
  [ -d "$dir" ] || return 0
  for m in $(mounts_under "$dir"); do as_root umount -l "$m"; done
  [ -z "$(mounts_under "$dir")" ] || die "mounts remain under $dir; not deleting it"
  as_root rm -rf "$dir"
}

# Package scripts may start daemons (epmd) inside the chroot; end those of this tree only.
stop_chroot_processes() {
  local root=$1 pid
  for pid in $(as_root find /proc -maxdepth 1 -regex '/proc/[0-9]+' -printf '%f\n'); do
    if [ "$(as_root readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ]; then
      log "stopping process $pid left running in the chroot"
      as_root kill "$pid" 2>/dev/null || true
    fi
  done
}

# What an image does not need: package caches and lists, documentation, state from the build.
strip_rootfs() {
  local r=$1
  as_root rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/rabbitmq/* \
    "$r"/var/lib/rabbitmq/.erlang.cookie "$r"/var/lib/rabbitmq/mnesia "$r"/tmp/* "$r"/var/tmp/*
  # The engine provides these per container.
  as_root sh -c ": > '$r/etc/resolv.conf'; : > '$r/etc/hostname'"
}

build_tarball() {
  ensure_debootstrap
  local mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
  [ -n "$mirror" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list*; set DEBIAN_MIRROR"
  mkdir -p "$CACHE_DIR"
  local work
  work=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now: it is local
  trap "remove_tree '$work'" EXIT
  log "debootstrap $SUITE with $PACKAGES from $mirror (takes minutes)"
  if ! as_root debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    stop_chroot_processes "$work/rootfs"
    die "debootstrap failed (log above)"
  fi
  stop_chroot_processes "$work/rootfs"
  for f in usr/lib/rabbitmq/bin/rabbitmq-server usr/bin/tini; do
    [ -x "$work/rootfs/$f" ] || die "debootstrap left no /$f"
  done
  strip_rootfs "$work/rootfs"
  log "packing the root filesystem"
  as_root tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$TARBALL"
  remove_tree "$work"
  trap - EXIT
  log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

# rabbitmq-server runs as the rabbitmq user the package created, directly (the /usr/sbin wrapper
# would send its output to a file), logging to stdout so `docker logs` and readiness checks see
# it. tini forwards SIGTERM (RabbitMQ as PID 1 ignores it); -s keeps it working under the
# engine's own --init too.
import_image() {
  log "importing $TARBALL as $image"
  engine import \
    --change 'ENTRYPOINT ["/usr/bin/tini", "-s", "--"]' \
    --change 'CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]' \
    --change 'ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/var/lib/rabbitmq' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV RABBITMQ_LOGS=-' \
    --change 'USER rabbitmq' \
    --change 'WORKDIR /var/lib/rabbitmq' \
    --change 'EXPOSE 5672' \
    --change "LABEL rmq-harness.rootfs=$(basename "$TARBALL")" \
    --message "rmq-harness: debootstrap $SUITE + $PACKAGES" \
    "$TARBALL" "$image" >/dev/null || die "importing $TARBALL failed (engine error above)"
  log "$image ready ($(engine image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
}

engine info >/dev/null 2>&1 || die "no container engine answers; run scripts/docker.sh first"
if [ -n "$rebuild" ]; then
  log "--rebuild: removing $image and $TARBALL"
  engine image rm -f "$image" >/dev/null 2>&1 || true
  rm -f "$TARBALL"
fi
engine image inspect "$image" >/dev/null 2>&1 && exit 0
[ -s "$TARBALL" ] || build_tarball
import_image
