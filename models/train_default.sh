#!/bin/sh
# Trains the default RS-MoE model on RSICD from scratch on a CPU, end to end (docs/training.md):
# BPE vocabulary on the training captions, MobileNetV2 (TFLite, ImageNet) as the frozen image
# encoder, feature caches, stage I (Q-Former + the LLM, trained from scratch together: a text-only
# "lm" stage first made the Q-Former collapse to an image-independent prefix; a peak learning rate
# above ~1e-3 makes the model ignore the image: see models/README.md; a fifth of each stage-I
# batch asks "What is the scene?"), stage II, the self-critical stage (stage scst: the experts
# trained on the CIDEr-D of their own sampled captions, with the derived questions kept), the 8-bit
# copy, the retrieval index of the training images and captions (`rsmoe index`), then the
# evaluation on val (where runs are compared) and on test, each with and without the index (and
# without it over 4 test-time views, `--views 4`).
# Reproducible: every step is seeded; the training stages (and the index) run on one thread (their
# results depend on the thread count), THREADS (default 2) only for features and evaluation.
# About 50 minutes on a 2-vCPU Xeon (stage I 20, stage II 9, scst 17 minutes); 63.5 minutes on a
# 2-vCPU AMD EPYC (Zen 4) with other jobs beside it.
#   usage: sh models/train_default.sh [SHARED_DIR] [WORK_DIR]
# SHARED_DIR holds data/rsicd (the RSICD release) and data/weights (mobilenet_v2_1.0_224_quant.tflite);
# the result is WORK_DIR/rsmoe-rsicd-q8.gguf (shipped as models/rsmoe-rsicd.gguf; f32 training result:
# WORK_DIR/rsmoe-rsicd.gguf) and WORK_DIR/eval-test.scores.json.
set -eu
SHARED=${1:-../shared}
WORK=${2:-models/work}
B=${RSMOE:-./build/rsmoe}
DATA=$SHARED/data/rsicd/dataset_rsicd.json
IMG=$SHARED/data/rsicd/images
T=${THREADS:-2}
S1_STEPS=${S1_STEPS:-6000}
FEAT_DROPOUT=${FEAT_DROPOUT:-0.2}
S2_STEPS=${S2_STEPS:-3000}
SCST_STEPS=${SCST_STEPS:-500}
SCST_LR=${SCST_LR:-5e-5}
SCST_MIN_LR=${SCST_MIN_LR:-$SCST_LR}
# other views of the training images (flips, rotations: `rsmoe features --view`), each a feature
# cache of its own, mixed into both training stages (--aug-features); "" = none
VIEWS=${VIEWS-}
mkdir -p "$WORK"
start=$(date +%s)
step() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - start ))s) $*"; }

step "tokenizer"
[ -f "$WORK/tok.gguf" ] || $B tokenizer train --data "$DATA" --split train --vocab 2048 -o "$WORK/tok.gguf"
step "image encoder"
[ -f "$WORK/mnv2.gguf" ] || $B import tflite "$SHARED/data/weights/mobilenet_v2_1.0_224_quant.tflite" -o "$WORK/mnv2.gguf" \
    --labels "$SHARED/data/weights/imagenet_labels.txt"
step "init"
[ -f "$WORK/init.gguf" ] || $B init --preset tiny --encoder "$WORK/mnv2.gguf" --tokenizer "$WORK/tok.gguf" --seed 42 -o "$WORK/init.gguf"
step "features"
[ -f "$WORK/feat-train.gguf" ] || $B features -m "$WORK/init.gguf" --data "$DATA" --images "$IMG" --split train --threads $T -o "$WORK/feat-train.gguf"
AUG=""
for v in $VIEWS; do
  [ -f "$WORK/feat-train-$v.gguf" ] || $B features -m "$WORK/init.gguf" --data "$DATA" --images "$IMG" --split train --view $v --threads $T -o "$WORK/feat-train-$v.gguf"
  AUG="${AUG:+$AUG,}$WORK/feat-train-$v.gguf"
done
AUGOPT=""; [ -n "$AUG" ] && AUGOPT="--aug-features $AUG"
[ -f "$WORK/feat-val.gguf" ] || $B features -m "$WORK/init.gguf" --data "$DATA" --images "$IMG" --split val --threads $T -o "$WORK/feat-val.gguf"
COMMON="--data $DATA --images $IMG --threads 1 --seed 42 --log-every 50 --val-batches 8 --val-images 100"
R=""; [ -n "${RESUME:-}" ] && R="--resume"
step "questions derived from the training captions (scene, presence, count; weak labels)"
[ -f "$WORK/q-train.json" ] || $B questions --data "$DATA" --split train -o "$WORK/q-train.json"
[ -f "$WORK/qs-train.json" ] || $B questions --data "$DATA" --split train --types scene -o "$WORK/qs-train.json"
step "stage 1 (Q-Former + every LLM weight: the LLM is trained from scratch here; a fifth of each batch asks the scene)"
[ -f "$WORK/s1.done" ] || { $B train --stage 1 --train-llm 1 --model "$WORK/init.gguf" --out "$WORK/s1.gguf" $COMMON \
    --features "$WORK/feat-train.gguf" --val-features "$WORK/feat-val.gguf" --steps $S1_STEPS --batch 16 --lr 5e-4 \
    --min-lr 5e-5 --warmup 200 --eval-every 2000 --save-every 500 --max-caption-tokens 40 \
    --vqa-data "$WORK/qs-train.json" --vqa-ratio 0.2 --feat-dropout $FEAT_DROPOUT $AUGOPT $R && touch "$WORK/s1.done"; }
step "stage 2 (experts + router; half of each batch is questions; the router's gate at 30x the rate: gate_lr_mult's default)"
[ -f "$WORK/s2.done" ] || { $B train --stage 2 --model "$WORK/s1.gguf" --out "$WORK/rsmoe-rsicd-s2.gguf" $COMMON \
    --features "$WORK/feat-train.gguf" --val-features "$WORK/feat-val.gguf" --vqa-data "$WORK/q-train.json" --vqa-ratio 0.5 \
    --steps $S2_STEPS --batch 16 --lr 2e-4 --min-lr 5e-5 --warmup 50 --eval-every 3000 --save-every 250 \
    --max-caption-tokens 40 $AUGOPT $R && touch "$WORK/s2.done"; }
step "self-critical training of the experts (stage scst: sampled captions rewarded by their CIDEr-D)"
[ -f "$WORK/s3.done" ] || { $B train --stage scst --model "$WORK/rsmoe-rsicd-s2.gguf" --out "$WORK/rsmoe-rsicd.gguf" $COMMON \
    --features "$WORK/feat-train.gguf" --val-features "$WORK/feat-val.gguf" --steps $SCST_STEPS --batch 8 --scst-samples 5 \
    --vqa-data "$WORK/q-train.json" --vqa-ratio 1 \
    --lr $SCST_LR --min-lr $SCST_MIN_LR --warmup 0 --eval-every 1000 --save-every 100 --max-caption-tokens 40 $R && touch "$WORK/s3.done"; }
step "half-precision copy, and the 8-bit copy of it that ships (the CNN encoder stays f32)"
$B quantize "$WORK/rsmoe-rsicd.gguf" "$WORK/rsmoe-rsicd-f16.gguf" f16
$B quantize "$WORK/rsmoe-rsicd-f16.gguf" "$WORK/rsmoe-rsicd-q8-base.gguf" q8_0
step "retrieval index of the training images and captions (brief captions chosen by consensus; one thread, 10 s)"
$B index -m "$WORK/rsmoe-rsicd-q8-base.gguf" --data "$DATA" --images "$IMG" --split train \
    --features "$WORK/feat-train.gguf" -o "$WORK/rsmoe-rsicd-q8.gguf"
step "evaluation on RSICD val (brief, greedy; the runs are compared here, never on test), with and without the index"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split val --beams 1 --max-len 40 --threads $T --out "$WORK/eval-val"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split val --beams 1 --max-len 40 --threads $T --no-retrieval --out "$WORK/eval-val-noretrieval"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split val --beams 1 --max-len 40 --threads $T --no-retrieval --views 4 --out "$WORK/eval-val-noretrieval-views4"
[ -f "$WORK/q-val.json" ] || $B questions --data "$DATA" --split val -o "$WORK/q-val.json"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$WORK/q-val.json" --images "$IMG" --split val --limit 1500 --threads $T --out "$WORK/vqa-val"
step "evaluation on RSICD test (brief, greedy)"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split test --beams 1 --max-len 40 --threads $T --out "$WORK/eval-test"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split test --beams 1 --max-len 40 --threads $T --no-retrieval --out "$WORK/eval-test-noretrieval"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$DATA" --images "$IMG" --split test --beams 1 --max-len 40 --threads $T --no-retrieval --views 4 --out "$WORK/eval-test-noretrieval-views4"
step "questions derived from the test captions, answered (first 1,500)"
[ -f "$WORK/q-test.json" ] || $B questions --data "$DATA" --split test -o "$WORK/q-test.json"
$B eval -m "$WORK/rsmoe-rsicd-q8.gguf" --data "$WORK/q-test.json" --images "$IMG" --split test --limit 1500 --threads $T --out "$WORK/vqa-test"
step "done"
