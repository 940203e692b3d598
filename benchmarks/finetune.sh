#!/usr/bin/env bash
# Does pretraining transfer to a new real voice? Pretrain `small` on the synthetic benchmark corpus, then
# fine-tune on a few minutes of real speech (../shared/data/speech), against training from scratch on the same
# data with the same number of epochs. Run from the repository root, alone on the machine (README, docs/REPORT.md):
#
#     bash benchmarks/finetune.sh [PRETRAIN_EPOCHS] [EPOCHS]        # defaults: 6 and 60
#
# Writes runs/ft-*, preds/ft-* and prints one line per (set, start, decoder): WER/CER and word counts.
set -euo pipefail
pretrain_epochs=${1:-6}
epochs=${2:-60}

[ -d corpus/train ] || python benchmarks/synth_corpus.py --preset benchmark --out corpus
python benchmarks/real_splits.py --out real
[ -f lm/book3.arpa ] || python -m asr.lm build --text ../shared/data/text/pride_and_prejudice.txt --order 3 --out lm/book3.arpa
[ -f runs/ft-pretrain/best.pt ] || python train.py --dataset corpus/train --eval_dataset corpus/dev --run_name ft-pretrain \
    --epochs "$pretrain_epochs" --batch_seconds 60 --eval_every "$pretrain_epochs" --augment light --no-tensorboard

run() {  # run NAME SET EXTRA_FLAGS...: train on real/SET-train, decode real/SET-test greedy and beam + LM
    local name=$1 set=$2
    shift 2
    [ -f "runs/$name/best.pt" ] || python train.py --dataset "real/$set-train" --eval_dataset "real/$set-test" \
        --run_name "$name" --epochs "$epochs" --batch_seconds 30 --eval_every "$epochs" --no-tensorboard "$@" > "runs/$name.log"
    for decoder in greedy beam_lm; do
        local lm=()
        [ "$decoder" = beam_lm ] && lm=(--lm lm/book3.arpa --alpha 0.5 --beta 1)
        python inference.py --data_dir "real/$set-test" --checkpoint "runs/$name/best.pt" --out "preds/$name-$decoder" \
            --decoder "$decoder" "${lm[@]}" | grep WER | sed "s|^|$name $decoder: |"
    done
}

mkdir -p runs
for set in lj an4; do
    run "ft-$set-scratch" "$set" --model small
    run "ft-$set-init" "$set" --init_from runs/ft-pretrain/best.pt
    run "ft-$set-init-lr5e-4" "$set" --init_from runs/ft-pretrain/best.pt --lr 5e-4 --warmup 0.05
    run "ft-$set-init-freeze" "$set" --init_from runs/ft-pretrain/best.pt --lr 5e-4 --warmup 0.05 --freeze conv --freeze_epochs 20
done
for decoder in greedy beam_lm; do
    python inference.py --data_dir real/lj-test --checkpoint runs/ft-pretrain/best.pt --out "preds/ft-pretrained-only-$decoder" \
        --decoder "$decoder" $([ "$decoder" = beam_lm ] && echo --lm lm/book3.arpa) | grep WER | sed "s|^|pretrained only (lj) $decoder: |"
done
