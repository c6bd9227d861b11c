#!/usr/bin/env bash
# The GPU check for a host with one CUDA GPU and no network (docs/training.md, "GPU check"), < 10 minutes:
#
#   bash scripts/gpu_check.sh --prepare DIR    # where pip reaches the index: the wheels the host may lack
#                                              # (TRL, datasets, transformers at the project's pin, ...) and
#                                              # the synthetic task's base model, into DIR
#   bash scripts/gpu_check.sh --wheels DIR     # on the GPU host: install DIR's wheels offline, then check
#   bash scripts/gpu_check.sh                  # check with what is installed
#
# Checks, results in --out (default runs/gpu_check/): the versions; the gpu-marked tests; 4 GRPO steps of
# the synthetic task on CUDA in bf16 with gradient checkpointing, and the same 4 on the CPU (fp32), with
# their seconds per optimizer step side by side in gpu_check.json. Without CUDA it runs the CPU side only
# and exits 1 (0 with --allow-no-gpu). --prepare's Python must match the host's, or give --python-version
# (and --platform) for pip download.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
PREPARE="" WHEELS="" OUT="runs/gpu_check" ALLOW_NO_GPU=0 PIP_TARGET=()
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) PREPARE="${2:?--prepare needs a folder}"; shift 2 ;;
        --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
        --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
        --allow-no-gpu) ALLOW_NO_GPU=1; shift ;;
        --python-version|--platform) PIP_TARGET+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# ---- --prepare: wheels for what the project and TRL need beyond torch, pinned to this environment ----------
if [ -n "$PREPARE" ]; then
    mkdir -p "$PREPARE/wheels"
    # The dependency closure of the project, TRL and pytest, minus torch's own (the host has torch), at the
    # versions installed here: the versions the tests pass with.
    "$PY" - "$PREPARE/requirements.txt" <<'PY'
import importlib.metadata as md
import sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

def closure(roots):
    seen, todo = {}, list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            seen[name] = md.version(name)
        except md.PackageNotFoundError:
            continue  # an optional dependency not installed here
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen

import tomllib  # the project's own requirements, whether or not it is pip-installed here
project = [Requirement(r).name for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]]
needed = closure([*project, "trl", "pytest", "pexpect"])
host_has = closure(["torch"])
pins = sorted(f"{n}=={v}" for n, v in needed.items() if n not in host_has)
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print(f"{len(pins)} packages: {' '.join(pins)}")
PY
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: "${PIP_TARGET[@]}" -d "$PREPARE/wheels" \
        -r "$PREPARE/requirements.txt"
    # The synthetic base model, trained here once (minutes on a CPU) so that the host need not.
    "$PY" - "$PREPARE/synthetic-base" <<'PY'
import shutil, sys
from prover.tasks.synthetic.base_model import ensure_base_model
shutil.copytree(ensure_base_model(progress=False), sys.argv[1], dirs_exist_ok=True)
PY
    echo "prepared $PREPARE: $(ls "$PREPARE/wheels" | wc -l) wheels, synthetic-base/; on the GPU host:"
    echo "  bash scripts/gpu_check.sh --wheels $PREPARE"
    exit 0
fi

# ---- --wheels: install, offline, the wheels the host lacks or has at another version ------------------
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS/wheels" ] || { echo "gpu_check.sh: $WHEELS/wheels not found: run --prepare first" >&2; exit 2; }
    mapfile -t TO_INSTALL < <("$PY" - "$WHEELS/wheels" <<'PY'
import importlib.metadata as md
import pathlib, sys

# The project's pins and what they bind must match; anything else is installed only where missing, so the
# host's own numpy, accelerate, ... stay (pip check below reports a conflict).
MATCH = {"trl", "transformers", "tokenizers", "huggingface_hub", "safetensors", "datasets"}
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]  # name-version-pythontag-abi-platform.whl
    try:
        installed = md.version(name)
    except md.PackageNotFoundError:
        installed = None
    if installed is None or (name.lower() in MATCH and installed != version):
        print(wheel)
PY
)
    if [ ${#TO_INSTALL[@]} -gt 0 ]; then
        echo "installing ${#TO_INSTALL[@]} wheels from $WHEELS/wheels (no index, no dependencies resolved)"
        "$PY" -m pip install --quiet --no-index --no-deps "${TO_INSTALL[@]}"
    fi
    "$PY" -m pip check || echo "gpu_check.sh: pip check reports conflicts (above); the check goes on"
fi

mkdir -p "$OUT"
MODEL_ARGS=()
if [ -n "$WHEELS" ] && [ -f "$WHEELS/synthetic-base/config.json" ]; then
    MODEL_ARGS=(--model "$WHEELS/synthetic-base")
fi

# ---- the checks -------------------------------------------------------------------------------------------
"$PY" - "$OUT/environment.json" <<'PY'
import importlib.metadata as md, json, sys
import torch
env = {"python": sys.version.split()[0], "cuda": torch.cuda.is_available(),
       "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
       **{name: md.version(name) for name in ("torch", "transformers", "trl", "accelerate", "datasets")}}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print("environment:", json.dumps(env))
if env["trl"] != "1.16.0" or not env["transformers"].startswith("5.19."):
    sys.exit("gpu_check.sh: needs trl 1.16.0 and transformers 5.19 (the project's pins): use --wheels DIR")
PY
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")

# 4 optimizer steps = 2 generation batches x 2 PPO epochs, every one trained (dynamic update off).
steps() {  # steps <device> <extra overrides...>
    local device=$1; shift
    "$PY" -m prover.train --config recipes/synthetic/grpo-unlikeliness/cpu.yaml "${MODEL_ARGS[@]}" \
        --grpo.output_dir "$OUT/$device" --grpo.max_steps 4 --grpo.logging_steps 1 --grpo.save_steps 4 \
        --grpo.dynamic_update false --grpo.disable_tqdm true --grpo.report_to none \
        --eval.enabled false --rank_bias.enabled false --resume false "$@" > "$OUT/$device.log" 2>&1 \
        || { echo "gpu_check.sh: training on $device failed, see $OUT/$device.log" >&2; tail -20 "$OUT/$device.log" >&2; exit 1; }
}

TESTS_RC=skipped
if [ "$HAS_CUDA" = 1 ]; then
    echo "gpu-marked tests"
    set +e
    # only the files that hold gpu-marked tests: collecting the others would import what such a host lacks
    mapfile -t GPU_TEST_FILES < <(grep -l "pytest.mark.gpu" tests/test_*.py)
    "$PY" -m pytest -q -m gpu -p no:cacheprovider "${GPU_TEST_FILES[@]}" 2>&1 | tee "$OUT/pytest_gpu.log" | tail -5
    TESTS_RC=${PIPESTATUS[0]}
    set -e
    echo "4 GRPO steps of the synthetic task on CUDA (bf16, gradient checkpointing)"
    steps cuda --grpo.use_cpu false --grpo.bf16 true --grpo.gradient_checkpointing true
fi
echo "the same 4 steps on the CPU (fp32)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} steps cpu --grpo.use_cpu true --grpo.bf16 false --grpo.gradient_checkpointing false

"$PY" - "$OUT" "$TESTS_RC" <<'PY'
import json, math, pathlib, statistics, sys
out, tests_rc = pathlib.Path(sys.argv[1]), sys.argv[2]
summary = {"environment": json.loads((out / "environment.json").read_text()),
           "gpu_tests": {"exit_status": tests_rc}}
if (out / "pytest_gpu.log").is_file():
    summary["gpu_tests"]["summary"] = (out / "pytest_gpu.log").read_text().strip().splitlines()[-1]
for device in ("cuda", "cpu"):
    state = out / device / "checkpoint-4" / "trainer_state.json"
    if not (out / f"{device}.log").is_file():
        continue
    # transformers keeps one record per optimizer step (logging_steps 1) in the checkpoint's log history;
    # the console shows short progress lines instead when it is not a terminal
    history = json.loads(state.read_text())["log_history"] if state.is_file() else []
    rows = [r for r in history if "loss" in r]
    step_time = [float(r["step_time"]) for r in rows if "step_time" in r]
    summary[device] = {
        "steps": len(rows), "losses_finite": all(math.isfinite(float(r["loss"])) for r in rows),
        "seconds_per_step": step_time,
        # the first step also builds the CUDA context, compiles kernels and samples: leave it out
        "median_after_first": statistics.median(step_time[1:]) if len(step_time) > 1 else None,
    }
if "cuda" in summary and summary["cuda"]["median_after_first"] and summary["cpu"]["median_after_first"]:
    summary["cpu_over_cuda"] = summary["cpu"]["median_after_first"] / summary["cuda"]["median_after_first"]
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
ok = all(summary[d]["steps"] == 4 and summary[d]["losses_finite"] for d in ("cuda", "cpu") if d in summary)
sys.exit(0 if ok and tests_rc in ("0", "skipped") else 1)
PY

if [ "$HAS_CUDA" != 1 ]; then
    echo "no CUDA device: the GPU checks did not run (CPU side only)"
    [ "$ALLOW_NO_GPU" = 1 ] || exit 1
fi
