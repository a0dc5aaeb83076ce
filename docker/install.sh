#!/usr/bin/env bash
# Package layer of the image: torch, then the package itself (`pip install .`), then the DeepMind Lab wheel
# when the dmlab stage built one; ends with an import check.
# Usage: install.sh cpu|gpu SRC_DIR [WHEEL_DIR]
#   cpu: pip install "$TORCH_SPEC" (default torch==2.13.0), from $TORCH_INDEX_URL when set
#        (default in the Dockerfile: PyTorch's CPU wheel index, so no CUDA libraries are pulled);
#   gpu: keep the CUDA torch the base image ships (pytorch/pytorch), fail if there is none.
# A CA bundle mounted as the build secret `ca_bundle` is used for pip's HTTPS (proxies that re-sign TLS).
set -euo pipefail
flavor=${1:?usage: install.sh cpu|gpu SRC_DIR [WHEEL_DIR]}
src=${2:?usage: install.sh cpu|gpu SRC_DIR [WHEEL_DIR]}
wheels=${3:-}
if [ -f /run/secrets/ca_bundle ]; then
  export PIP_CERT=/run/secrets/ca_bundle
fi
pip=(python -m pip install --no-cache-dir --disable-pip-version-check)
if [ "$flavor" = cpu ]; then
  "${pip[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
else
  python -c "import torch" || { echo "install.sh: the gpu base image has no torch; use a pytorch/pytorch image" >&2; exit 1; }
fi
"${pip[@]}" "$src"
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" > /dev/null; then
  "${pip[@]}" "$wheels"/*.whl
fi
python - <<'PY'
import importlib.util

import envpool
import torch

import agent.train  # noqa: F401
import envs

dmlab = importlib.util.find_spec("deepmind_lab") is not None
print(f"installed: torch {torch.__version__} (cuda {torch.version.cuda}), envpool {envpool.__version__}, "
      f"families {sorted(envs.FAMILIES)}, deepmind_lab {'yes' if dmlab else 'no'}")
PY
