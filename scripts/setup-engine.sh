#!/usr/bin/env bash
# Install and start what the harness needs on a Debian/Ubuntu host, idempotently:
#   - a Docker engine (Debian's docker.io) with BuildKit support, started if not running
#   - mmdebstrap, which builds the Python base rootfs from Debian's archive (no registry)
# Safe to run again: installs only what is missing and starts dockerd only if it is down.
# Needs root (or sudo). Used by .ci/run and by a fresh developer machine.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E bash "$0" "$@"
fi

need=()
{ [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || need+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
dpkg -s debian-archive-keyring >/dev/null 2>&1 || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup-engine: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

engine_up() { /usr/bin/docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! engine_up; then
  if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
    :
  else
    echo "setup-engine: starting dockerd (log: /var/log/dockerd.log)"
    nohup /usr/sbin/dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 0.5
  done
fi

if ! engine_up; then
  echo "setup-engine: dockerd did not come up; last log lines:" >&2
  tail -n 20 /var/log/dockerd.log >&2 || true
  exit 1
fi
echo "setup-engine: Docker engine $(/usr/bin/docker version --format '{{.Server.Version}}') ready; mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
