#!/usr/bin/env bash
# System layer of the image: Python for the cpu target (a venv in /opt/venv on a Debian/Ubuntu base),
# the shared libraries DeepMind Lab's software renderer needs (WITH_DMLAB=1), and the non-root user.
# Usage: setup_system.sh cpu|gpu   (env: WITH_DMLAB=0|1, APP_UID=1000)
set -euo pipefail
flavor=${1:?usage: setup_system.sh cpu|gpu}
with_dmlab=${WITH_DMLAB:-1}
packages=(ca-certificates)
if [ "$flavor" = cpu ]; then
  packages+=(python3 python3-venv)
fi
if [ "$with_dmlab" = 1 ]; then
  packages+=(libosmesa6 libsdl2-2.0-0 libgl1 libglib2.0-0)  # DMLab: OSMesa (software renderer), SDL
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"
rm -rf /var/lib/apt/lists/*
if [ "$flavor" = cpu ]; then
  python3 -m venv /opt/venv
fi
useradd --create-home --uid "${APP_UID:-1000}" --shell /bin/bash agent
mkdir -p /workspace/runs
chown -R agent:agent /workspace
