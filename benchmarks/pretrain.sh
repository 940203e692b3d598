#!/usr/bin/env bash
# The checkpoint to fine-tune from: `small` pretrained on the mixed synthetic corpus (espeak-ng, flite and
# festival voices, the benchmark's 2.5 hours), and its tables: the real yardstick (every recording in
# ../shared/data/speech, per source) and the corpus's own synthetic test sets. Run from the repository root
# (docs/pretraining.md):
#
#     bash benchmarks/pretrain.sh [EPOCHS] [TRAIN_FLAGS...]    # default: 9 epochs, the benchmark's recipe
#     bash benchmarks/pretrain.sh 40 --max_minutes 10          # a time-boxed run
#
# Needs espeak-ng, flite and festival (apt-get install espeak-ng flite festival festvox-kallpc16k
# festvox-kdlpc16k festvox-us-slt-hts). Writes mixed/ (the corpus), yardstick/, lm/mixed3.arpa,
# runs/pretrain-mixed/best.pt (the checkpoint: fine-tune it with `python train.py --init_from`), preds/pretrain-*/.
# A step that has already produced its output is skipped, so an interrupted run resumes where it stopped.
set -euo pipefail
epochs=${1:-9}
shift || true
run=runs/pretrain-mixed

[ -f mixed/manifest.json ] || python -m benchmarks.synth_corpus --preset mixed --out mixed
[ -f yardstick/sources.json ] || python -m benchmarks.yardstick assemble --out yardstick
[ -f "$run/best.pt" ] || python train.py --dataset mixed/train --eval_dataset mixed/dev --run_name pretrain-mixed \
    --model small --epochs "$epochs" --batch_seconds 60 --eval_every "$epochs" --augment default --no-tensorboard "$@"

# The real yardstick: greedy and beam + a 3-gram of the corpus's training transcripts (none of its sentences).
python -m benchmarks.yardstick score --checkpoint "$run/best.pt" --yardstick yardstick --out preds/pretrain-yardstick \
    --lm_from mixed
mkdir -p lm
cp preds/pretrain-yardstick/lm-train3.arpa lm/mixed3.arpa
# The synthetic tests, one clean and one noisy set per engine family (unseen voices, unseen sentences).
for test in mixed/test-*; do  # a line "NAME DECODER: WER ..." per decoder (benchmarks/decode_and_score.py)
    name=$(basename "$test")
    python -m benchmarks.decode_and_score --checkpoint "$run/best.pt" --data_dir "$test" --out "preds/pretrain-$name" \
        --decoders greedy,beam_lm --lm lm/mixed3.arpa --alpha 0.5 --beta 1 --label "$name"
done
echo "pretrained checkpoint: $run/best.pt (yardstick: preds/pretrain-yardstick/yardstick.json)"
