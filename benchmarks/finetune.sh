#!/usr/bin/env bash
# Does pretraining transfer to a new voice? Pretrain `small` on the synthetic benchmark corpus, then fine-tune on
# a few minutes of real speech (../shared/data/speech: AN4 and LJSpeech) and on ~5 minutes of a new synthetic
# accent (espeak-ng's German voice reading English), against training from scratch on the same data with the same
# number of epochs. Run from the repository root, alone on the machine (README, docs/REPORT.md):
#
#     bash benchmarks/finetune.sh [PRETRAIN_EPOCHS] [EPOCHS] [ACCENT_EPOCHS]   # defaults: 9, 40 and 20
#
# The pretraining run is the README's `--augment default` benchmark run (same flags), so it also re-measures it.
#
# Writes runs/ft-*, preds/ft-*/ (benchmarks/decode_and_score.py: logits/, greedy/, beam_lm/, summary.json) and prints
# one line per (set, start, decoder): WER/CER and word counts.
set -euo pipefail
pretrain_epochs=${1:-9}
epochs=${2:-40}  # on AN4 and LJSpeech (30 s and 164 s of training audio)
accent_epochs=${3:-20}  # on the 5 minutes of the new accent: about the audio of an LJSpeech run

[ -d corpus/train ] || python -m benchmarks.synth_corpus --preset benchmark --out corpus
[ -d accent/train ] || python -m benchmarks.synth_corpus --preset accent --out accent
python -m benchmarks.real_splits --out real
mkdir -p lm runs
# LMs: the book for the real sets (their text is not in it); for the accent, the benchmark's training transcripts
# only (its test sentences are in the book).
[ -f lm/book3.arpa ] || python -m asr.lm build --text ../shared/data/text/pride_and_prejudice.txt --order 3 --out lm/book3.arpa
[ -f lm/train3.arpa ] || { cat corpus/train/transcriptions/*.txt > lm/train.txt
    python -m asr.lm build --text lm/train.txt --split lines --order 3 --out lm/train3.arpa; }
[ -f runs/ft-pretrain/best.pt ] || python train.py --dataset corpus/train --eval_dataset corpus/dev --run_name ft-pretrain \
    --epochs "$pretrain_epochs" --batch_seconds 60 --eval_every "$pretrain_epochs" --augment default --no-tensorboard

decode() {  # decode NAME CHECKPOINT TEST LM: greedy and beam + LM on TEST, a line "NAME DECODER: WER ..." each
    python -m benchmarks.decode_and_score --checkpoint "$2" --data_dir "$3" --out "preds/$1" --decoders greedy,beam_lm \
        --lm "$4" --alpha 0.5 --beta 1 --label "$1"
}

run() {  # run NAME TRAIN TEST LM EXTRA_FLAGS...: train on TRAIN, then decode TEST
    local name=$1 train=$2 test=$3 lm=$4 n=$epochs
    shift 4
    [[ $name == *accent* ]] && n=$accent_epochs
    [ -f "runs/$name/best.pt" ] || python train.py --dataset "$train" --eval_dataset "$test" --run_name "$name" \
        --epochs "$n" --batch_seconds 30 --eval_every "$n" --eval_utterances 100 --no-tensorboard "$@" > "runs/$name.log"
    decode "$name" "runs/$name/best.pt" "$test" "$lm"
}

pretrained=runs/ft-pretrain/best.pt
sets="an4 lj accent"
data() {  # data SET: "TRAIN TEST LM" of a set
    case $1 in
        accent) echo accent/train accent/test lm/train3.arpa ;;
        *) echo "real/$1-train real/$1-test lm/book3.arpa" ;;
    esac
}
for set in $sets; do
    read -r train test lm <<< "$(data "$set")"
    decode "ft-$set-pretrained-only" "$pretrained" "$test" "$lm"
done
# The most telling pair first, set by set (a run cut short leaves whole comparisons), then the other starts.
for starts in "scratch init-lr5e-4" "init init-freeze"; do
    for set in $sets; do
        read -r train test lm <<< "$(data "$set")"
        for start in $starts; do
            case $start in
                scratch) flags=(--model small) ;;
                # init: train.py's defaults before FINE_TUNING (asr/config.py), pinned to keep docs/REPORT.md's rows
                init) flags=(--init_from "$pretrained" --lr 2e-3 --warmup 0.1 --freeze none) ;;
                init-lr5e-4) flags=(--init_from "$pretrained" --lr 5e-4 --warmup 0.05 --freeze none) ;;
                init-freeze) flags=(--init_from "$pretrained" --lr 5e-4 --warmup 0.05 --freeze conv --freeze_epochs 10) ;;
            esac
            run "ft-$set-$start" "$train" "$test" "$lm" "${flags[@]}"
        done
    done
done
