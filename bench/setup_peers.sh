#!/usr/bin/env bash
# Installs the peers the suite compares skier with (PyTorch Lightning, skorch, Keras 3 on the torch
# backend, fastai) into their own environment, bench/.peers, never into skier's.
#
# torch is pinned to the same 2.13.0 CPU build as skier's environment, and every later install is
# constrained to it, so no peer can pull another torch. fastai declares torchvision, whose PyPI
# wheels do not work beside this torch: fastai is installed without its declared dependencies and
# with the ones its training loop imports; the suite reports it as not installed if it will not
# import.  Usage: bash bench/setup_peers.sh   (then: bench/run, or python bench/suite.py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
env="${SKIER_PEERS_ENV:-$here/.peers}"
python="${PYTHON:-python3.11}"
[ -x "$env/bin/python" ] || "$python" -m venv "$env"
pip=("$env/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
"${pip[@]}" -c "$constraints" numpy scikit-learn pandas pyyaml
"${pip[@]}" -c "$constraints" lightning || echo "setup_peers: lightning did not install" >&2
"${pip[@]}" -c "$constraints" skorch || echo "setup_peers: skorch did not install" >&2
"${pip[@]}" -c "$constraints" keras || echo "setup_peers: keras did not install" >&2
"${pip[@]}" -c "$constraints" --no-deps fastai \
  && "${pip[@]}" -c "$constraints" fastcore fastprogress fastdownload fasttransform plum-dispatch \
     matplotlib pillow requests packaging cloudpickle \
  || echo "setup_peers: fastai did not install" >&2
# skier itself, for the data and models the workloads share (no extras: dev tools stay out).
"${pip[@]}" -c "$constraints" -e "$here/.."
"$env/bin/python" - <<'PY'
import importlib
for name in ("lightning", "skorch", "keras", "fastai.learner"):
    try:
        module = importlib.import_module(name)
        print(f"{name:15s} {getattr(module, '__version__', 'ok')}")
    except Exception as error:  # noqa: BLE001 - report, do not fail the set-up
        print(f"{name:15s} not usable: {type(error).__name__}: {error}")
PY
