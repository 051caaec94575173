#!/usr/bin/env bash
# Every figure docs/performance.md awaits from a GPU, in one go on the first GPU lent (about 6 minutes on one H200):
#
#   bash benchmarks/gpu_first_look.sh            # all parts; or name some: tests vitb vitl checkpoint
#
# - tests:      tests/gpu/test_gpu.py (the official function in float32 and bf16, a run with the GPU defaults and its
#               resume, the background save's copy from the GPU, nvJPEG decoding, evaluation)
# - vitb:       the training step of ViT-B/16 lever by lever, torch.compile included (synthetic data, batch 256)
# - vitl:       ViT-L/16 lever by lever, then end to end on 6,400 JPEGs at batch 64 and 256, PIL decoding in the
#               workers against decoding on the GPU (each end-to-end row: 100 timed steps, passes over the folder)
# - checkpoint: the stall of a ViT-L checkpoint (weights and AdamW state on the GPU) saved in the background
#
# Results go to $OUT (default output/gpu): <part>.log and <part>.json, and env.txt. Nothing is downloaded; it needs
# torch, torchvision, timm, scikit-learn, scikit-image and pytest (a GPU machine's usual image has them).
# SMOKE=1 DEVICE=cpu runs the same commands on tiny models (tests/project/test_benchmarks.py does, so the script stays runnable).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
parts=${*:-tests vitb vitl checkpoint}

if [[ ${SMOKE:-0} == 1 ]]; then  # the same commands, small enough for a CPU
    B=(--model mae_vit_tiny_patch8 --input_size 32 --batch_size 4 --steps 1 --warmup 1 --ceiling_size 256 --threads 1)
    L=("${B[@]}")
    E2E=(--make_jpegs 16 --e2e_batch_sizes 2 4 --e2e_steps 4 --workers 0)
    CHECKPOINT=(--model mae_vit_tiny_patch8)
else
    B=(--model mae_vit_base_patch16 --input_size 224 --batch_size 256 --steps 20 --compile)
    L=(--model mae_vit_large_patch16 --input_size 224 --batch_size 256 --steps 20)
    E2E=(--make_jpegs 6400 --e2e_batch_sizes 64 256 --e2e_steps 100)
    CHECKPOINT=(--model mae_vit_large_patch16 --rounds 1)
fi

failed=0
run() {  # run <part> <command...>: its output to $OUT/<part>.log (and here), its status remembered
    local part=$1
    shift
    echo "== $part: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$part.log"
    local status=${PIPESTATUS[0]}
    echo "== $part: exit $status after $((SECONDS - start)) s"
    [[ $status == 0 ]] || failed=1
}

{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    "$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
    nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

jpegs=$(mktemp -d)
trap 'rm -rf "$jpegs"' EXIT
for part in $parts; do
    case $part in
    tests) run tests "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/gpu/test_gpu.py ;;
    vitb) run vitb "$PYTHON" benchmarks/pretrain_speed.py --device "$DEVICE" "${B[@]}" --rounds 1 --json "$OUT/vitb.json" ;;
    vitl) run vitl "$PYTHON" benchmarks/pretrain_speed.py --device "$DEVICE" "${L[@]}" --rounds 1 \
        --data "$jpegs" "${E2E[@]}" --json "$OUT/vitl.json" ;;
    checkpoint) run checkpoint "$PYTHON" benchmarks/checkpoint_stall.py --device "$DEVICE" "${CHECKPOINT[@]}" \
        --json "$OUT/checkpoint.json" ;;
    *) echo "unknown part '$part' (tests, vitb, vitl, checkpoint)" >&2; exit 2 ;;
    esac
done
exit $failed
