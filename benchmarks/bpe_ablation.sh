#!/usr/bin/env bash
# Characters against SentencePiece BPE at equal wall-clock training budgets on the synthetic benchmark (docs/REPORT.md,
# "BPE"). For each configuration: a 20-step probe measures its training speed, which sets --epochs so that
# the learning-rate schedule ends at about the budget; the run itself (--max_minutes stops it at the budget
# whatever the estimate, evaluation not counted); then greedy, beam 32 and beam 32 + a 3-gram of the training
# transcripts (alpha and beta from a grid on dev) on test and test-noisy, each set decoded by
# benchmarks/decode_and_score.py (the model runs once per set). Run alone on the machine, from the repository root:
#
#     bash benchmarks/bpe_ablation.sh [MINUTES] [NAME=FLAGS ...]   # defaults: 10 minutes, the five below
#
# Prints one Markdown table row per configuration; writes runs/abl-* and preds-abl-*/<set>/ (logits/, greedy/,
# beam/, beam_lm/, dev's grid/, summary.json).
set -euo pipefail
minutes=${1:-10}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(
    "char-s2=--tokenizer char --time_stride 2"
    "bpe64-s4=--tokenizer bpe --bpe_vocab_size 64 --time_stride 4"
    "bpe256-s2=--tokenizer bpe --bpe_vocab_size 256 --time_stride 2"
    "bpe256-s4=--tokenizer bpe --bpe_vocab_size 256 --time_stride 4"
    "bpe1024-s4=--tokenizer bpe --bpe_vocab_size 1024 --time_stride 4"
)
common=(--dataset corpus/train --eval_dataset corpus/dev --model small --batch_seconds 60 --augment default)

[ -d corpus/train ] || python -m benchmarks.synth_corpus --preset benchmark --out corpus
mkdir -p lm runs
[ -f lm/train3.arpa ] || { cat corpus/train/transcriptions/*.txt > lm/train.txt
    python -m asr.lm build --text lm/train.txt --split lines --order 3 --out lm/train3.arpa; }
audio=$(python -c "import glob, soundfile; print(sum(soundfile.info(f).duration for f in glob.glob('corpus/train/audio/*')))")

wer() {  # wer PREDS: the WER % in PREDS/metrics.json (inference.py's)
    python -c "import json, sys; print(f\"{100 * json.load(open(sys.argv[1] + '/metrics.json'))['wer']:.2f}\")" "$1"
}

echo "| run | flags | audio-s/s | epochs | dev greedy | test greedy | test beam | test + 3-gram | noisy greedy | noisy beam | noisy + 3-gram |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for config in "${configs[@]}"; do
    name=abl-${config%%=*}
    read -ra flags <<< "${config#*=}"
    if [ ! -f "runs/$name/best.pt" ]; then
        rm -rf "runs/$name-probe"
        python train.py "${common[@]}" "${flags[@]}" --run_name "$name-probe" --epochs 1 --max_steps 20 \
            --eval_utterances 1 --eval_beam_size 0 --no-tensorboard > "runs/$name-probe.log"
        rate=$(grep -o 'at [0-9.]* audio-s/s' "runs/$name-probe.log" | cut -d' ' -f2)
        epochs=$(python -c "print(max(1, round($minutes * 60 * $rate / $audio)))")
        python train.py "${common[@]}" "${flags[@]}" --run_name "$name" --epochs "$epochs" --max_minutes "$minutes" \
            --eval_every "$epochs" --no-tensorboard > "runs/$name.log"
    fi
    python -m benchmarks.decode_and_score --checkpoint "runs/$name/best.pt" --data_dir corpus/dev --out "preds-$name/dev" \
        --decoders greedy --lm lm/train3.arpa --grid_alphas 0.3,0.6,0.9,1.2 --grid_betas 0,1,2,3 > /dev/null
    row=()
    for s in test test-noisy; do  # beam_lm with dev's best alpha and beta
        python -m benchmarks.decode_and_score --checkpoint "runs/$name/best.pt" --data_dir "corpus/$s" \
            --out "preds-$name/$s" --decoders greedy,beam,beam_lm --lm lm/train3.arpa --tuned_on "preds-$name/dev" \
            > /dev/null
        row+=("$(wer "preds-$name/$s/greedy")" "$(wer "preds-$name/$s/beam")" "$(wer "preds-$name/$s/beam_lm")")
    done
    done_line=$(grep '^done:' "runs/$name.log")
    rate=$(grep -o 'at [0-9.]* audio-s/s' <<< "$done_line" | cut -d' ' -f2)
    trained=$(grep -o '[0-9.]* min of training' <<< "$done_line" | cut -d' ' -f1)
    epochs=$(grep -o '"epochs": [0-9]*' "runs/$name/config.json" | cut -d' ' -f2)
    echo "| ${name#abl-} | \`${flags[*]}\` | $rate | $epochs ($trained min) | $(wer "preds-$name/dev/greedy") | ${row[0]} | ${row[1]} | ${row[2]} | ${row[3]} | ${row[4]} | ${row[5]} |"
done
