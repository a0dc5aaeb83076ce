#!/usr/bin/env bash
# Build DeepMind Lab's Python wheel from its source release with Bazel (the Dockerfile's dmlab stage).
# Run it on the image that will use the wheel: the wheel's extension module is built against `python3`.
# Usage: build_dmlab.sh OUT_DIR
#   env: DMLAB_REPO (https://github.com/google-deepmind/lab), DMLAB_REF (a pinned tag or commit),
#        BAZELISK_VERSION, USE_BAZEL_VERSION (the Bazel release bazelisk runs).
# Needs network access to GitHub (source, bazelisk, Bazel) and to the archives DMLab's WORKSPACE lists.
set -euo pipefail
out=${1:?usage: build_dmlab.sh OUT_DIR}
repo=${DMLAB_REPO:-https://github.com/google-deepmind/lab}
ref=${DMLAB_REF:-release-2020-12-07}
bazelisk_version=${BAZELISK_VERSION:-v1.19.0}
export USE_BAZEL_VERSION=${USE_BAZEL_VERSION:-5.4.1}
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends build-essential curl git unzip zip gettext python3-dev \
  libffi-dev libgl1-mesa-dev libosmesa6-dev libsdl2-dev ca-certificates
if [ -f /run/secrets/ca_bundle ]; then
  export PIP_CERT=/run/secrets/ca_bundle SSL_CERT_FILE=/run/secrets/ca_bundle
fi
python3 -m pip install --no-cache-dir numpy packaging wheel setuptools
curl -fsSL -o /usr/local/bin/bazel \
  "https://github.com/bazelbuild/bazelisk/releases/download/${bazelisk_version}/bazelisk-linux-amd64"
chmod +x /usr/local/bin/bazel
work=$(mktemp -d)
git clone --filter=blob:none "$repo" "$work/lab"
git -C "$work/lab" checkout --detach "$ref"
cd "$work/lab"
bazel build -c opt --python_version=PY3 //python/pip_package:build_pip_package
mkdir -p "$out"
./bazel-bin/python/pip_package/build_pip_package "$out"
ls -l "$out"
