#!/usr/bin/env bash
# The GPU path checked on a machine with a CUDA GPU, in one command (under 8 minutes on one GPU,
# installs included when the registry is near):
#
#   bench/gpu/check.sh [--dry-run] [OUT_DIR]        (or OUT=DIR bench/gpu/check.sh)
#
# 1. an environment: $PYTHON if set (used as it is, nothing installed), else the venv
#    $SKIER_GPU_VENV (default .venv-gpu in the checkout; made with --system-site-packages, so a
#    CUDA torch the machine already has is used), into which it installs torch built for the
#    driver's CUDA when no CUDA torch is importable, then skier with .[dev] (torch pinned, so
#    pip never swaps it);
# 2. pytest -m cuda tests/gpu (training on cuda, fp16 + grad scaler, bf16 autocast, checkpoints
#    GPU -> CPU -> GPU, DDP over NCCL with every GPU present);
# 3. W1 on the GPU: skier fit / a plain PyTorch loop, interleaved rounds (bench/gpu/w1.py).
#
# Results land in OUT_DIR (first argument, else $OUT, else bench/gpu/results/<UTC time>):
# summary.json, w1.json, pytest.xml, pytest.log, w1.log, env.json, nvidia-smi.txt.
# Exit status: 0 when the tests passed and W1 ran, 1 otherwise, 2 for bad arguments.
#
# --dry-run (or SKIER_GPU_DRY_RUN=1) runs the same steps on the CPU in seconds with $PYTHON (or
# python3) and installs nothing: the cuda tests are collected and skip with their reason, W1 runs
# at the suite's smoke size. tests/gpu/test_check_script.py runs it.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DRY="${SKIER_GPU_DRY_RUN:-0}"
OUT_ARG=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
        *) if [ -n "$OUT_ARG" ]; then echo "check.sh: one OUT_DIR only; got $arg" >&2; exit 2; fi
           OUT_ARG="$arg" ;;
    esac
done
OUT_DIR="${OUT_ARG:-${OUT:-$ROOT/bench/gpu/results/$(date -u +%Y%m%dT%H%M%SZ)}}"
mkdir -p "$OUT_DIR" || { echo "check.sh: cannot create $OUT_DIR" >&2; exit 2; }
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
STARTED=$(date +%s)
say() { echo "[check.sh $(( $(date +%s) - STARTED ))s] $*"; }

# skier trains with deterministic algorithms by default: cuBLAS needs a fixed workspace for that.
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"
export CI=true  # no progress bars in the logs

cuda_torch() {  # does $1 import a torch that sees a GPU?
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

install_cuda_torch() {  # torch for this driver: PyPI's default build, else PyTorch's indexes
    local py="$1" driver tag
    driver="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1\2/p' | head -1)"
    say "installing torch (the driver supports CUDA ${driver:-unknown})"
    "$py" -m pip install --upgrade torch && cuda_torch "$py" && return 0
    for tag in 130 129 128 126 124 121 118; do
        if [ -n "$driver" ] && [ "$driver" -ge "$tag" ]; then
            say "trying https://download.pytorch.org/whl/cu$tag"
            "$py" -m pip install --upgrade --force-reinstall torch \
                --index-url "https://download.pytorch.org/whl/cu$tag" && cuda_torch "$py" && return 0
        fi
    done
    return 1
}

if [ -n "${PYTHON:-}" ] || [ "$DRY" = 1 ]; then
    PY="${PYTHON:-python3}"
    say "using $PY as it is (nothing installed)"
    "$PY" -c 'import skier, torch' || { echo "check.sh: $PY cannot import skier and torch" >&2; exit 1; }
else
    VENV="${SKIER_GPU_VENV:-$ROOT/.venv-gpu}"
    if [ ! -x "$VENV/bin/python" ]; then
        BASE=""
        for candidate in python3 python3.13 python3.12 python3.11; do  # skier needs >= 3.11
            if command -v "$candidate" >/dev/null && "$candidate" -c \
                'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
                BASE="$candidate"; break
            fi
        done
        [ -n "$BASE" ] || { echo "check.sh: skier needs Python >= 3.11; none found" >&2; exit 1; }
        say "creating $VENV with $BASE"
        "$BASE" -m venv --system-site-packages "$VENV" || exit 1
    fi
    PY="$VENV/bin/python"
    "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    if ! cuda_torch "$PY"; then
        install_cuda_torch "$PY" || { echo "check.sh: no torch with CUDA could be installed" >&2; exit 1; }
    fi
    TORCH_PIN="torch==$("$PY" -c 'import torch; print(torch.__version__)')"
    say "installing skier with .[dev] ($TORCH_PIN kept)"
    "$PY" -m pip install --quiet -e "$ROOT[dev]" "$TORCH_PIN" || exit 1
fi

cd "$ROOT" || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1
"$PY" - "$OUT_DIR/env.json" <<'PYEOF'
import json, platform, sys, torch
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
       "gpus": gpus}
if gpus:
    try:
        nccl = torch.cuda.nccl.version()
        env["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    except Exception as exc:  # no NCCL in this build: the DDP test will say so
        env["nccl"] = f"unavailable: {exc}"
    env["cudnn"] = torch.backends.cudnn.version()
    env["bf16"] = torch.cuda.is_bf16_supported()
    env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
json.dump(env, open(sys.argv[1], "w"), indent=2)
print("environment:", env)
PYEOF

say "pytest -m cuda tests/gpu"
timeout 420 "$PY" -m pytest -m cuda tests/gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT_DIR/pytest.xml" > "$OUT_DIR/pytest.log" 2>&1
PYTEST_RC=$?
tail -n 25 "$OUT_DIR/pytest.log"

say "W1: skier fit / plain loop"
W1_ARGS=(--out "$OUT_DIR")
[ "$DRY" = 1 ] && W1_ARGS+=(--dry-run)
timeout 240 "$PY" bench/gpu/w1.py "${W1_ARGS[@]}" > "$OUT_DIR/w1.log" 2>&1
W1_RC=$?
tail -n 5 "$OUT_DIR/w1.log"

"$PY" - "$OUT_DIR" "$PYTEST_RC" "$W1_RC" "$DRY" "$(( $(date +%s) - STARTED ))" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out, pytest_rc, w1_rc, dry, wall = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
tests = {}
if (out / "pytest.xml").is_file():
    for case in ET.parse(out / "pytest.xml").iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                status, detail = kind, (found.get("message") or "")[:500]
        tests[name] = {"status": status, "seconds": float(case.get("time") or 0), "detail": detail}
w1 = json.loads((out / "w1.json").read_text()) if (out / "w1.json").is_file() else None
summary = {
    "dry_run": dry, "wall_s": wall, "pytest_returncode": pytest_rc, "w1_returncode": w1_rc,
    "tests": tests,
    "counts": {s: sum(t["status"] == s for t in tests.values()) for s in ("passed", "failure", "error", "skipped")},
    "w1_skier_over_loop_b": w1["skier_over_loop_b"] if w1 else None,
    "w1_target": w1["target"] if w1 else None,
    "env": json.loads((out / "env.json").read_text()) if (out / "env.json").is_file() else None,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({k: summary[k] for k in ("counts", "w1_skier_over_loop_b", "wall_s")}))
PYEOF

say "results in $OUT_DIR"
if [ "$W1_RC" -ne 0 ] || [ "$PYTEST_RC" -ne 0 ]; then exit 1; fi
exit 0
