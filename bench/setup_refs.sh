#!/usr/bin/env bash
# Installs the reference tools skier's diagnostics are timed against (PyHessian, torch-lr-finder,
# loss-landscapes) into their own environment, bench/.refs, never into skier's.
#
# torch is pinned to the same 2.13.0 CPU build as skier's environment and every later install is
# constrained to it, so no tool can pull another torch.
# Usage: bash bench/setup_refs.sh   (then: bench/.refs/bin/python bench/bench_reference_tools.py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
env="${SKIER_REFS_ENV:-$here/.refs}"
python="${PYTHON:-python3.11}"
[ -x "$env/bin/python" ] || "$python" -m venv "$env"
pip=("$env/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
"${pip[@]}" -c "$constraints" numpy scikit-learn matplotlib
# PyHessian 0.1 and loss-landscapes declare old pins or none; their code needs only torch/numpy.
"${pip[@]}" -c "$constraints" --no-deps PyHessian==0.1 loss-landscapes==3.0.6
"${pip[@]}" -c "$constraints" torch-lr-finder==0.2.2 tqdm
# skier itself, for the data, models and diagnostics (no extras: dev tools stay out).
"${pip[@]}" -c "$constraints" -e "$here/.."
"$env/bin/python" - <<'PY'
import importlib
for name in ("pyhessian", "torch_lr_finder", "loss_landscapes", "skier"):
    module = importlib.import_module(name)
    print(f"{name:16s} {getattr(module, '__version__', 'ok')}")
PY
