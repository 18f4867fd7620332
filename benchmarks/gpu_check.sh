#!/usr/bin/env bash
# The prepared GPU check: one script for a lent GPU machine (run from the repository root), printing
#   1. training throughput at 224 px and at 64 px (benchmarks/throughput.py: the pipeline's train step against a
#      bare PyTorch loop on the same device, precision and batches; the loader's rate beside it);
#   2. what train.scenario=auto chooses on CUDA and what it scores (benchmarks/recipes.py, the recipe study's
#      protocol: 3 seeds, choice on validation, a fixed test set of 100/class), beside the CPU recipe on the GPU.
# Such a machine has its own Python with torch but not the rest of the stack: wheels in .whl/ (python 3.12,
# manylinux) are installed into /tmp/site when present, and .gpu/cache/ stands for ~/.cache/headstart (the
# Fashion-MNIST IDX files under debs/extract/...). Output: stdout, and $OUT/gpu-check.log when $OUT is set.
# Knobs (environment): ROUNDS (throughput rounds, 3), SIZES (200), SEEDS ("0 1 2"), AUTO_ONLY=1 (skip the CPU recipe).
set -uo pipefail
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 DO_NOT_TRACK=1
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .gpu/cache ] && export HEADSTART_CACHE=$PWD/.gpu/cache
log=${OUT:-/tmp}/gpu-check.log
workers=$(( $(nproc) / 2 ))
recipes=("auto (default)" plain-finetune)  # the CUDA choice beside the CPU's recipe on the same GPU
[ -n "${AUTO_ONLY:-}" ] && recipes=("auto (default)")

phase() {  # phase SECONDS TITLE COMMAND...: a phase that fails or overruns does not stop the next
    local limit=$1 title=$2
    shift 2
    echo "=== $title ($(date -u +%T))"
    timeout "$limit" "$@" 2>&1
    echo "=== exit $?"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $python -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
    phase 110 "throughput 224 px" $python benchmarks/throughput.py --device cuda --size 224 --batch 128 \
        --images 4096 --workers "$workers" --rounds ${ROUNDS:-3}
    phase 150 "auto at ${SIZES:-200}/class on CUDA" $python benchmarks/recipes.py \
        --sizes ${SIZES:-200} --seeds ${SEEDS:-0 1 2} --recipes "${recipes[@]}" \
        --out /tmp/recipes.json --set train.device=cuda "train.num_workers=$workers"
} 2>&1 | tee "$log"
