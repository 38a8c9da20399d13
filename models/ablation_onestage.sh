#!/bin/sh
# The one-stage ablation of the model card: the experts and the router trained (stage II)
# without the stage-I initialisation. The paper's one-stage variant starts the experts from a
# pretrained LLM; ours has none, so the LLM is first pretrained on the training captions alone
# (stage lm, text only), then stage II runs on it directly: no stage I, so the Q-Former keeps
# its random initialisation. Same stage-II options as train_default.sh; scored on RSICD test.
#   usage: sh models/ablation_onestage.sh [SHARED_DIR] [WORK_DIR]
# WORK_DIR is train_default.sh's (its init.gguf, feature caches and q-train.json are reused).
set -eu
SHARED=${1:-../shared}
W=${2:-models/work}
B=${RSMOE:-./build/rsmoe}
T=${THREADS:-2}
DATA=$SHARED/data/rsicd/dataset_rsicd.json
IMG=$SHARED/data/rsicd/images
for f in init.gguf feat-train.gguf feat-val.gguf q-train.json; do
  [ -f "$W/$f" ] || { echo "missing $W/$f: run models/train_default.sh first" >&2; exit 1; }
done
COMMON="--data $DATA --images $IMG --threads 1 --seed 42 --log-every 50 --val-batches 8 --val-images 100"
[ -f "$W/lm.done" ] || { $B train --stage lm --model "$W/init.gguf" --out "$W/lm.gguf" $COMMON --steps 3000 --batch 16 \
    --lr 5e-4 --min-lr 5e-5 --warmup 200 --eval-every 3000 --save-every 500 --max-caption-tokens 40 && touch "$W/lm.done"; }
[ -f "$W/os2.done" ] || { $B train --stage 2 --model "$W/lm.gguf" --out "$W/onestage.gguf" $COMMON \
    --features "$W/feat-train.gguf" --val-features "$W/feat-val.gguf" --vqa-data "$W/q-train.json" --vqa-ratio 0.5 \
    --steps 3000 --batch 16 --lr 2e-4 --min-lr 5e-5 --warmup 50 --eval-every 3000 --save-every 250 \
    --max-caption-tokens 40 && touch "$W/os2.done"; }
$B quantize "$W/onestage.gguf" "$W/onestage-f16.gguf" f16
$B eval -m "$W/onestage-f16.gguf" --data "$DATA" --images "$IMG" --split test --beams 1 --max-len 40 --threads $T \
    --out "$W/eval-onestage-test"
