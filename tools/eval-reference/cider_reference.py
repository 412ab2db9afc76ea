#!/usr/bin/env python3
"""CIDEr-D and PTB-tokenizer goldens from pycocoevalcap 1.2.

Runs the real pycocoevalcap (PyPI `pycocoevalcap==1.2`; its PTBTokenizer runs the Stanford
CoreNLP 3.4.1 jar shipped in the wheel, so Java must be on PATH) on the sets under
testdata/eval/cider/ and writes what it computes beside them. crates/blip3-metrics/tests/
cider_parity.rs asserts equality (tokenised strings exactly, scores to 1e-9).

For each set NAME (NAME.preds.jsonl, one {"id", "answer"} per line, and NAME.refs.json,
{id: [reference strings]}, the `blip3 score --task cider` layout) it builds the two
dictionaries a captioning harness builds, both in prediction-file order,

    gts = {id: [{"caption": r} for r in refs[id]]}      res = {id: [{"caption": answer}]}

tokenises each with one `PTBTokenizer().tokenize` call, and scores with
`Cider().compute_score(gts, res)`. COCOEvalCap.evaluate() is deliberately not used: it also
runs SPICE, which downloads a model. NAME.golden.json records the tokenised candidate and
references of every id, the per-id scores and the corpus score (pycocoevalcap's scale, not
x100).

ptb_cases.json is a list of probe strings; they are tokenised in one batch (each string one
caption of its own id, in list order), and ptb_cases.golden.json records the result per string,
i.e. the jar's output after pycocoevalcap's punctuation removal.

Setup:
    python3 -m venv /tmp/venv-cider && /tmp/venv-cider/bin/pip install pycocoevalcap==1.2
    /tmp/venv-cider/bin/python tools/eval-reference/cider_reference.py
"""

import argparse
import json
import os
import sys

from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.path.join(ROOT, "testdata", "eval", "cider")
SETS = ["spec3", "coco_like", "no_overlap", "duplicates", "single"]


def read_set(name):
    preds = []
    with open(os.path.join(DATA, name + ".preds.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                preds.append((str(item["id"]), item["answer"]))
    with open(os.path.join(DATA, name + ".refs.json"), encoding="utf-8") as f:
        refs = json.load(f)
    return preds, refs


def score_set(name):
    preds, refs = read_set(name)
    ids = [i for i, _ in preds]
    assert sorted(ids) == sorted(refs), f"{name}: prediction and reference ids differ"
    gts = {i: [{"caption": r} for r in refs[i]] for i in ids}
    res = {i: [{"caption": a}] for i, a in preds}
    tokenizer = PTBTokenizer()
    gts_tok = tokenizer.tokenize(gts)
    res_tok = tokenizer.tokenize(res)
    corpus, per_image = Cider().compute_score(gts_tok, res_tok)
    return {
        "source": "pycocoevalcap==1.2 PTBTokenizer + Cider (tools/eval-reference/cider_reference.py)",
        "CIDEr": float(corpus),
        "images": len(ids),
        "items": [
            {
                "id": i,
                "candidate": res_tok[i][0],
                "references": gts_tok[i],
                "score": float(s),
            }
            for i, s in zip(ids, per_image)
        ],
    }


def ptb_cases():
    with open(os.path.join(DATA, "ptb_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    captions = {str(k): [{"caption": s}] for k, s in enumerate(cases)}
    tokens = PTBTokenizer().tokenize(captions)
    return {
        "source": "pycocoevalcap==1.2 PTBTokenizer, all cases in one batch in list order",
        "cases": [{"input": s, "tokens": tokens[str(k)][0]} for k, s in enumerate(cases)],
    }


def write(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="*", default=SETS + ["ptb_cases"])
    args = parser.parse_args()
    for name in args.sets:
        if name == "ptb_cases":
            golden = ptb_cases()
        else:
            golden = score_set(name)
        write(os.path.join(DATA, name + ".golden.json"), golden)
        print(f"{name}: written", file=sys.stderr)


if __name__ == "__main__":
    main()
