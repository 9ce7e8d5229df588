#!/usr/bin/env bash
# The main job on a fresh machine: install cobra-hf into ./.venv, then prepare a real dataset into semantic IDs,
# train COBRA with the Trainer, evaluate it on the test split (every decoding mode) and recommend for a history.
# Usage: bash scripts/quickstart.sh [DATA_DIR] [OUTPUT_DIR]     (defaults: ../shared/data/scientific, runs/quickstart)
# Environment: EPOCHS (default 2), EVAL_USERS (default 2000; -1 = all test users).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/scientific}"
OUT="${2:-runs/quickstart}"
EPOCHS="${EPOCHS:-2}"
EVAL_USERS="${EVAL_USERS:-2000}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"          # CPU wheel first; a bare torch requirement pulls CUDA
python -m pip install -q -e ".[encoder,faiss]"
if [ -e "$OUT" ]; then echo "$OUT exists: choose another output folder or remove it"; exit 1; fi
mkdir -p "$OUT"

echo "== 1/4 prepare: item text -> sentence embeddings -> RQ-VAE semantic IDs"
cobra-hf prepare "$DATA" --output "$OUT/catalog" --cache-dir "$OUT/cache" --embed-max-length 32 --quiet

echo "== 2/4 train: COBRA with the transformers Trainer ($EPOCHS epochs)"
# --recipe none + these flags: the short configuration whose numbers benchmarks/results/quickstart records
cobra-hf train --recipe none --catalog "$OUT/catalog" --output_dir "$OUT/model" --num_train_epochs "$EPOCHS" \
  --use_item_embeddings True --use_text_embeddings True --history_dense_loss_weight 0.5 \
  --contrastive_temperature 0.07 --learning_rate 2e-3 --eval_users 1000 --disable_tqdm True --logging_steps 20

echo "== 3/4 evaluate: full-ranking Recall/NDCG@5/10 on the test split, every decoding mode"
MAX_USERS=()
if [ "$EVAL_USERS" -ge 0 ]; then MAX_USERS=(--max-users "$EVAL_USERS"); fi
cobra-hf evaluate "$OUT/model" --data "$DATA" --split test --all-modes "${MAX_USERS[@]}" --output "$OUT/test_metrics.json"

echo "== 4/4 recommend: the next items for the first test user's history"
HISTORY=$(head -n 1 "$DATA/sequences.txt" | cut -d' ' -f2- | awk '{NF=NF-1; print}')
# shellcheck disable=SC2086
cobra-hf recommend "$OUT/model" --history $HISTORY --top-k 10
echo "done: catalog, model, and metrics are in $OUT"
