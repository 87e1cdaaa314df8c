#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of Larder from Debian 12.
# Idempotent: a package already present is skipped by apt-get.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(
  build-essential cmake pkg-config git
  libboost1.81-dev libhiredis-dev libpq-dev libspdlog-dev libfmt-dev libyaml-cpp-dev catch2
  prometheus-cpp-dev libssl-dev
  redis-server redis-tools postgresql-15 postgresql-client-15
  nutcracker python3-redis procps psmisc
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian starts the packaged servers; Larder's tests and demo run their own on
# other ports, so the system ones are left alone.
