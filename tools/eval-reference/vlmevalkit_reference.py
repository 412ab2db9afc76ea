#!/usr/bin/env python3
"""Goldens for the VLMEvalKit scorers of `crates/blip3-metrics` (spec `eval-protocols.md` §3.3-3.4).

Runs the real VLMEvalKit code, imported at run time from a checkout, on the synthetic benchmark
sets under `testdata/eval/vlmevalkit/`, and records what it computes:

* the full evaluation pipeline as `run.py --judge exact_matching` drives it: the dataset TSV is
  loaded by VLMEvalKit's own dataset class, the predictions are merged into the `.xlsx` eval file
  exactly as `infer_data_job` does, and `multiple_choice_eval` / `YOrN_eval` (2024) or the dataset
  class's `evaluate` (HEAD) score it. Per item, the extracted letter / Yes-No and the hit are
  recorded with the result table (`<case>.<rule>.golden.json`);
* direct calls of `can_infer` and `YOrN_Extraction` / `process_punctuation` on hundreds of
  adversarial strings (`can_infer.golden.json`, `yes_no.golden.json`).

Environment:
  VLMEVALKIT_DIR       checkout of VLMEvalKit at ddd6df88 (the 2024 rule, used for the r-v1 numbers):
                       git --git-dir=<mirror> archive ddd6df88 | tar -x -C DIR
  VLMEVALKIT_HEAD_DIR  optional checkout at e8e78f05 (the later rule); its goldens are skipped without it

Python packages (a throw-away virtualenv): numpy<2 pandas==2.2.2 openpyxl xlsxwriter tqdm tabulate
sty validators requests rich portalocker pillow. Heavy imports VLMEvalKit makes at module level
(torch, transformers, matplotlib, the API wrappers, ...) are replaced by inert stubs: the scoring
code does not use them. The TSV MD5 check is bypassed for the synthetic files (the Rust side has
its own MD5 tests).

Usage:
  vlmevalkit_reference.py make-testdata   # (re)write the synthetic TSVs and predictions
  vlmevalkit_reference.py goldens         # run VLMEvalKit and write the goldens
  vlmevalkit_reference.py score --rule 2024|head --kind mcq|yorn --dataset KEY --tsv T --pred P
                                          # one case, golden JSON on stdout (for extra cases)
"""

import argparse
import base64
import glob
import importlib.abc
import importlib.machinery
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, 'testdata', 'eval', 'vlmevalkit')

# (case, kind, VLMEvalKit dataset key). Files: <case>.tsv, <case>.pred.jsonl, <case>.<rule>.golden.json
CASES = [
    ('mmbench', 'mcq', 'MMBench_DEV_EN'),
    ('seed', 'mcq', 'SEEDBench_IMG'),
    ('mmstar', 'mcq', 'MMStar'),
    ('ai2d', 'mcq', 'AI2D_TEST'),
    ('scienceqa', 'mcq', 'ScienceQA_TEST'),
    ('scienceqa_numeric', 'mcq', 'ScienceQA_NUMERIC'),
    ('mmmu', 'mcq', 'MMMU_DEV_VAL'),
    ('mmbench_numeric', 'mcq', 'MMBench_NUMERIC'),
    ('mmmu_numeric', 'mcq', 'MMMU_NUMERIC'),
    ('mmstar_bool', 'mcq', 'MMStar_BOOL'),
    ('mme', 'yorn', 'MME'),
    ('pope', 'yorn', 'POPE'),
]

# --------------------------------------------------------------------------------------------
# Importing VLMEvalKit without its heavy dependencies


STUB_TOPS = {
    'matplotlib', 'seaborn', 'huggingface_hub', 'torch', 'transformers', 'openai', 'pycocoevalcap',
    'filelock', 'timeout_decorator', 'decord', 'imageio', 'dotenv', 'json_repair', 'sklearn', 'scipy',
    'nltk', 'Levenshtein', 'rapidfuzz', 'tiktoken', 'accelerate',
}


class _AnyModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return type(name, (), {'__init__': lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split('.')[0] in STUB_TOPS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _AnyModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_vlmevalkit(root):
    """Makes `vlmeval` importable from `root` without running its package `__init__`s that pull
    in models and API clients (only the scoring modules are imported)."""
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, root)
    for name in ['vlmeval', 'vlmeval.evaluate', 'vlmeval.dataset', 'vlmeval.api', 'vlmeval.vlm']:
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, *name.split('.'))]
        sys.modules[name] = module
    sys.modules['vlmeval.api'].OpenAIWrapper = object
    sys.modules['vlmeval.api'].OpenAIWrapperInternal = object
    # No judge: exact matching only.
    for var in ['OPENAI_API_KEY', 'INTERNAL', 'VERBOSE', 'LOCAL_LLM', 'PRED_FORMAT', 'EVAL_FORMAT',
                'SPLIT_THINK', 'PRINT_VANILLA']:
        os.environ.pop(var, None)


# --------------------------------------------------------------------------------------------
# Running one case through the real pipeline (inside a worker process for one rule)


def _clean(value):
    """JSON-safe Python value: NaN -> None, numpy scalars -> Python."""
    import numpy as np
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    return value


def _read_predictions(path):
    preds = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                preds[str(obj['id'])] = obj['answer']
    return preds


def _lower_columns(data):
    # The same renaming the MCQ evaluators do before scoring (letters stay upper case).
    import string
    for k in list(data.keys()):
        data[k.lower() if k not in list(string.ascii_uppercase) else k] = data.pop(k)
    return data


def _table_by_split(acc):
    table = {}
    cols = [c for c in acc.columns if c != 'split']
    for i in range(len(acc)):
        row = acc.iloc[i]
        table[str(row['split'])] = {str(c): _clean(row[c]) for c in cols}
    return table


def _find(tmp, pattern):
    hits = sorted(glob.glob(os.path.join(tmp, pattern)))
    assert len(hits) == 1, (pattern, hits)
    return hits[0]


def run_case(rule, kind, key, tsv, pred_path):
    import pandas as pd
    from vlmeval.smp import load, dump

    preds = _read_predictions(pred_path)
    tmp = tempfile.mkdtemp(prefix='vek-')
    os.environ['LMUData'] = tmp
    try:
        if rule == '2024':
            import vlmeval.utils.dataset as vds
            from vlmeval.utils.dataset_config import dataset_URLs
            file_name = dataset_URLs[key].split('/')[-1] if key in dataset_URLs else key + '.tsv'
            shutil.copy(tsv, os.path.join(tmp, file_name))
            vds.check_md5 = lambda data_path, dataset: True
            data = vds.TSVDataset(key).data
            dataset = None
        else:
            from vlmeval.dataset.image_mcq import ImageMCQDataset, MMMUDataset
            from vlmeval.dataset.image_yorn import ImageYORNDataset
            base = ImageYORNDataset if kind == 'yorn' else (MMMUDataset if 'MMMU' in key else ImageMCQDataset)
            tsv_copy = os.path.join(tmp, key + '.tsv')
            shutil.copy(tsv, tsv_copy)

            class LocalDataset(base):
                def load_data(self, dataset):
                    return load(tsv_copy)

            dataset = LocalDataset(dataset=key)
            data = dataset.data
        # infer_data_job: merge the predictions, drop the images, write the eval file.
        data = data.copy()
        data['prediction'] = [str(preds[str(x)]) for x in data['index']]
        data.pop('image')
        eval_file = os.path.join(tmp, f'model_{key}.xlsx')
        dump(data, eval_file)

        if kind == 'mcq':
            return _score_mcq(rule, key, eval_file, dataset, tmp)
        return _score_yorn(rule, key, eval_file, dataset, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _score_mcq(rule, key, eval_file, dataset, tmp):
    import string
    from vlmeval.smp import load
    if rule == '2024':
        from vlmeval.evaluate.multiple_choice import multiple_choice_eval, MMMU_preproc, prefetch_answer
        acc = multiple_choice_eval(eval_file, dataset=key, model='exact_matching', nproc=1)
        circular = True
        mmmu = 'MMMU' in key
    else:
        from vlmeval.dataset.utils.multiple_choice import MMMU_preproc, prefetch_answer
        from vlmeval.smp import listinstr
        acc = dataset.evaluate(eval_file, model='exact_matching', nproc=1)
        circular = listinstr(['mmbench', 'ccbench', 'circular', 'mmcr'], key.lower())
        mmmu = 'MMMU' in key and not circular
    result = load(_find(tmp, '*_exact_matching_result.xlsx'))
    hits = {str(i): int(h) for i, h in zip(result['index'], result['hit'])}

    # Per-row extraction, re-run with VLMEvalKit's own functions on the eval file as the
    # evaluator reads it (sorted, predictions as str, lower-cased columns, MMMU preprocessing).
    data = load(eval_file)
    data = data.sort_values(by='index')
    data['prediction'] = [str(x) for x in data['prediction']]
    data = _lower_columns(data)
    if mmmu:
        data = MMMU_preproc(data)
    per_id = {}
    for i in range(len(data)):
        item = data.iloc[i]
        ext = prefetch_answer(item)
        entry = {'extracted': ext if ext else None}
        idx = str(item['index'])
        if idx in hits:
            entry['hit'] = hits[idx]
        per_id[idx] = entry
    return {'rule': rule, 'dataset': key, 'circular': bool(circular), 'mmmu': bool(mmmu),
            'table': _table_by_split(acc), 'per_id': per_id}


def _score_yorn(rule, key, eval_file, dataset, tmp):
    from vlmeval.smp import load
    if rule == '2024':
        from vlmeval.evaluate.yes_or_no import YOrN_eval
        score = YOrN_eval(eval_file, dataset=key, model='exact_matching', nproc=1)
    else:
        score = dataset.evaluate(eval_file, model='exact_matching', nproc=1)
    storage = load(_find(tmp, '*_auxmatch.xlsx'))
    per_id = {str(i): {'extracted': e, 'score': bool(s)}
              for i, e, s in zip(storage['index'], storage['extracted'], storage['score'])}
    if 'split' in score.columns:
        table = _table_by_split(score)
    else:
        table = {str(c): _clean(score[c].iloc[0]) for c in score.columns}
    return {'rule': rule, 'dataset': key, 'table': table, 'per_id': per_id}


def direct_cases(rule):
    """can_infer and YOrN extraction called directly on the adversarial string lists."""
    if rule == '2024':
        from vlmeval.utils.matching_util import can_infer
        from vlmeval.evaluate.yes_or_no import YOrN_Extraction
        from vlmeval.smp import process_punctuation
    else:
        from vlmeval.utils.matching_util import can_infer
        from vlmeval.dataset.utils.yorn import YOrN_Extraction
        from vlmeval.smp import process_punctuation
    with open(os.path.join(DATA, 'can_infer.cases.json'), encoding='utf-8') as f:
        mcq = json.load(f)
    with open(os.path.join(DATA, 'yes_no.cases.json'), encoding='utf-8') as f:
        yorn = json.load(f)
    mcq_out = []
    for case in mcq:
        ret = can_infer(case['prediction'], dict(case['choices']))
        mcq_out.append(ret if ret else None)
    yorn_out = [[YOrN_Extraction(p), process_punctuation(p.lower())] for p in yorn]
    return {'can_infer': mcq_out, 'yes_no': yorn_out}


def worker(rule, root, jobs):
    import_vlmevalkit(root)
    out = {}
    for job in jobs:
        if job[0] == 'direct':
            out['direct'] = direct_cases(rule)
        else:
            _, kind, key, tsv, pred = job
            out[tsv] = run_case(rule, kind, key, tsv, pred)
    return out


def run_worker(rule, root, jobs):
    """Each rule runs in its own interpreter: both checkouts are the package `vlmeval`."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '_worker', rule, root],
        input=json.dumps(jobs), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f'VLMEvalKit worker ({rule}) failed')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rule_roots():
    roots = {}
    if not os.environ.get('VLMEVALKIT_DIR'):
        raise SystemExit('set VLMEVALKIT_DIR to a VLMEvalKit checkout at ddd6df88')
    roots['2024'] = os.environ['VLMEVALKIT_DIR']
    if os.environ.get('VLMEVALKIT_HEAD_DIR'):
        roots['head'] = os.environ['VLMEVALKIT_HEAD_DIR']
    return roots


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write('\n')


def cmd_goldens():
    for rule, root in rule_roots().items():
        jobs = [('direct',)]
        for case, kind, key in CASES:
            jobs.append(('case', kind, key, os.path.join(DATA, case + '.tsv'),
                         os.path.join(DATA, case + '.pred.jsonl')))
        out = run_worker(rule, root, jobs)
        for case, kind, key in CASES:
            golden = out[os.path.join(DATA, case + '.tsv')]
            golden['kind'] = kind
            write_json(os.path.join(DATA, f'{case}.{rule}.golden.json'), golden)
        direct = out['direct']
        for name in ['can_infer', 'yes_no']:
            path = os.path.join(DATA, f'{name}.golden.json')
            existing = {}
            if os.path.exists(path):
                with open(path, encoding='utf-8') as f:
                    existing = json.load(f)
            existing[rule] = direct[name]
            write_json(path, existing)
        print(f'{rule}: {len(CASES)} cases, {len(direct["can_infer"])} can_infer and '
              f'{len(direct["yes_no"])} yes/no strings')


def cmd_score(args):
    root = rule_roots()[args.rule]
    out = run_worker(args.rule, root, [('case', args.kind, args.dataset, os.path.abspath(args.tsv),
                                        os.path.abspath(args.pred))])
    golden = out[os.path.abspath(args.tsv)]
    golden['kind'] = args.kind
    json.dump(golden, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    print()


# --------------------------------------------------------------------------------------------
# Synthetic test sets


def png_1x1(rgb):
    def chunk(kind, payload):
        body = kind + payload
        return struct.pack('>I', len(payload)) + body + struct.pack('>I', zlib.crc32(body) & 0xffffffff)
    raw = b'\x00' + bytes(rgb)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def b64_png(i):
    return base64.b64encode(png_1x1(((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))).decode()


# Predictions aimed at every branch of can_infer (refusals, letters as tokens, punctuation,
# letters inside words, text matching, Z, the HEAD position and length rules, the HEAD regex)
# and at the eval-file round trip (empty / NA strings, formulas, control characters).
MCQ_TEMPLATES = [
    '{L}', '({L})', '{L}.', '{L})', '{L}:', '[{L}]', '{{{L}}}', '*{L}*', '**{L}**', '#{L}', '{L};', '{L}!',
    '{L}?', '{L},', "{L}'s", '{l}', 'The answer is ({L}).', 'The answer is {L}', 'Answer: {L}',
    'answer is {l}', 'The correct answer is **{L}**.', 'ANSWER IS {L}', 'Option {L}', 'Option: {L}',
    '{L}. {T}', '({L}) {T}', '{L}: {T}', '{T}', '{Tu}', '{Tc}', 'It is {T}.', 'I think the answer is {L}.',
    '{L}\n', ' {L} ', '\u00a0{L}\u00a0', '{L}\u3000', '{L}\x1c', '{L}\r', '{L}\t{L}', '{L} {L}',
    '{L}/{L2}', '{L}-{L2}', '{L},{L2}', '{L}{L2}', '{L} and {L2}', '{L} or {L2}', 'Either {L} or {L2}.',
    'Not {L2}, it is {L}.', '{L}\n\nExplanation: the image shows {T} clearly, so the right choice is this one.',
    'Looking at the image carefully, we can see several objects in the scene. The answer is {L}.',
    'Looking at the image, {L} is right because the picture shows a {T} in the middle of the frame.',
    '{L} is correct. The other options, {L2} included, do not match what is visible here at all.',
    'The correct answer is **{L}**. Here is why: {T}.', 'answer  is\t*{l}*', 'anſwer is {L}',
    'answer ıs {L}', 'ANSWER İS {L}', 'The answer is because of {T}', 'The answer is {l}og', 'answer is E',
    '{T} and {T2}', 'a {T} or a {T2}', 'Not sure.', 'Z', 'z', 'Z.', '(Z)', 'The answer is Z', 'Z {L}',
    '{L} Z', 'Cannot determine the answer', 'Cannot determine the answer: {L}',
    "Sorry, I can't help with images of people yet.", "I can't process this file.",
    "I'm sorry, but without the image provided, {L}", 'Failed to obtain answer via API', 'Failed to obtain answer via API {L}',
    'Failed to obtain answer via API {T}', '', ' ', 'None', 'nan', 'NA', 'N/A', 'null', '=B', '={L}', '{{=1}}',
    '_x0041_', 'I', 'A cat', 'a {T}', 'Apple', 'Bob', 'CAT', 'Dog Days', 'E', 'F', '1', '{L}1', '1{L}', '{L}.{L2}',
    '{L}:{L2}', '{L}({L2})', 'Ｂ', '{L}\u2028', '{L}\u0085', 'Options: A B C D', 'A B C D', 'None of the above',
    '{Tl} {Tl}', 'The image shows nothing relevant to the question at all.', '{L}' * 3, '{L}' + ' pad' * 30,
]

CATEGORIES = ['Scene Understanding', 'Instance Identity', 'Instance Attributes', 'Instance Location',
              'Instances Counting', 'Spatial Relation']
OPTION_POOL = ['cat', 'dog', 'a cute teddy bear', 'bird', 'cats', 'red', 'blue', 'green', 'yes', 'no', '3',
               '12', '2.5', 'A', 'b', 'apple', 'Apple pie', 'the', 'C', 'None of these', 'New York',
               'horse', 'a', 'Paris, France', 'north', 'south', 'east', 'west', '(B)', 'Z', 'z', 'E',
               'Options', 'answer', 'man', 'woman', 'The dog', 'dogs and cats']


def _fill(template, letters, texts, rng):
    letter = rng.choice(letters)
    other = rng.choice([x for x in letters if x != letter] or letters)
    text = texts[letter]
    text2 = texts[other]
    return (template.replace('{L2}', other).replace('{L}', letter).replace('{l}', letter.lower())
            .replace('{T2}', text2).replace('{Tu}', text.upper()).replace('{Tc}', text.capitalize())
            .replace('{Tl}', text.lower()).replace('{T}', text).replace('{{', '{').replace('}}', '}'))


def _options(rng, n):
    texts = rng.sample(OPTION_POOL, n)
    return {chr(65 + i): t for i, t in enumerate(texts)}


def _mcq_rows(rng, n_rows, n_opts, with_hint=False, start=0):
    rows, preds = [], []
    for i in range(n_rows):
        n = n_opts if isinstance(n_opts, int) else rng.choice(n_opts)
        opts = _options(rng, n)
        letters = sorted(opts)
        answer = rng.choice(letters)
        template = MCQ_TEMPLATES[(start + i) % len(MCQ_TEMPLATES)]
        pred = _fill(template, letters, opts, rng)
        row = {'question': f'Question {start + i}: what is shown?\tPick one.', **opts, 'answer': answer}
        if with_hint:
            row['hint'] = rng.choice([None, 'Look at the "left" side.', 'Hint\nwith a newline'])
        rows.append(row)
        preds.append(pred)
    return rows, preds


def _frame(rows, columns):
    import pandas as pd
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)


def _images(rows, n_real, rng, start=0):
    # A few rows carry a base64 PNG; the others point at one of them by index (the sharing trick).
    real = [rows[k]['index'] for k in range(min(n_real, len(rows)))]
    for k, row in enumerate(rows):
        row['image'] = b64_png(start + k) if k < n_real else str(rng.choice(real))


def _write_case(name, df, preds, quoting=None):
    kwargs = {'sep': '\t', 'index': False}
    if quoting is not None:
        kwargs['quoting'] = quoting
    df.to_csv(os.path.join(DATA, name + '.tsv'), **kwargs)
    with open(os.path.join(DATA, name + '.pred.jsonl'), 'w', encoding='utf-8') as f:
        for idx, pred in preds:
            f.write(json.dumps({'id': idx, 'answer': pred}, ensure_ascii=False) + '\n')


def make_seed(rng):
    rows, preds = _mcq_rows(rng, 2 * len(MCQ_TEMPLATES), 4)
    for i, row in enumerate(rows):
        row['index'] = i + 1
        row['category'] = CATEGORIES[i % len(CATEGORIES)]
    _images(rows, 3, rng)
    df = _frame(rows, ['index', 'image', 'question', 'A', 'B', 'C', 'D', 'answer', 'category'])
    _write_case('seed', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_mmstar(rng):
    rows, preds = _mcq_rows(rng, 60, 4, start=7)
    for i, row in enumerate(rows):
        row['index'] = i
        row['category'] = ['coarse perception', 'math', 'science & technology'][i % 3]
        row['l2_category'] = ['image scene', 'numeric', 'physics', 'biology'][i % 4]
    _images(rows, 2, rng)
    df = _frame(rows, ['index', 'question', 'A', 'B', 'C', 'D', 'answer', 'category', 'l2_category', 'image'])
    _write_case('mmstar', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_ai2d(rng):
    rows, preds = _mcq_rows(rng, 70, [2, 3, 4], start=31)
    for i, row in enumerate(rows):
        row['index'] = 100 + 3 * i
    _images(rows, 2, rng)
    rows[5]['image'] = None  # no image: VLMEvalKit skips the row
    preds[5] = 'A'
    df = _frame(rows, ['index', 'image', 'question', 'A', 'B', 'C', 'D', 'answer'])
    _write_case('ai2d', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_scienceqa(rng):
    import csv
    rows, preds = _mcq_rows(rng, 80, [2, 3, 4, 5], with_hint=True, start=55)
    for i, row in enumerate(rows):
        row['index'] = i
        row['category'] = ['natural science', 'social science', 'language science'][i % 3]
    _images(rows, 4, rng)
    df = _frame(rows, ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'E', 'answer', 'category', 'image'])
    _write_case('scienceqa', df, [(r['index'], p) for r, p in zip(rows, preds)], quoting=csv.QUOTE_ALL)


def make_scienceqa_numeric(rng):
    # Option columns that pandas reads as numbers: A int64, B float64 (with a NaN-free column of
    # integral floats), C float64 with NaN, D bool. str() of those values is what text matching sees.
    rows, preds = [], []
    pred_pool = ['3', '3.0', '4.5', '7', 'True', 'true', 'False', '1e3', '1000', '1000.0', 'five', 'A', '2',
                 '2.0', '10', '0.1', '0.30000000000000004', '1.0', '12.50', '12.5']
    for i in range(24):
        rows.append({'index': i, 'question': f'How many? {i}', 'A': str(i % 7 + 1),
                     'B': ['1.0', '2.0', '4.5', '1e3', '.5', '12.50'][i % 6],
                     'C': [None, '3', '0.30000000000000004', '7'][i % 4],
                     'D': ['True', 'False', 'TRUE', 'false'][i % 4],
                     'answer': 'ABCD'[i % 4], 'category': ['count', 'measure'][i % 2]})
        preds.append(pred_pool[i % len(pred_pool)])
    _images(rows, 1, rng)
    df = _frame(rows, ['index', 'image', 'question', 'A', 'B', 'C', 'D', 'answer', 'category'])
    _write_case('scienceqa_numeric', df, [(r['index'], p) for r, p in zip(rows, preds)])


MMB_CATS = [
    ('coarse_perception', 'image_scene'), ('coarse_perception', 'image_style'),
    ('finegrained_perception (instance-level)', 'object_localization'),
    ('finegrained_perception (cross-instance)', 'spatial_relationship'),
    ('logic_reasoning', 'future_prediction'), ('relation_reasoning', 'social_relation'),
    ('attribute_reasoning', 'physical_property'),
]


def make_mmbench(rng):
    rows, preds = [], []
    for g in range(70):
        opts = _options(rng, rng.choice([2, 3, 4, 4, 4]))
        letters = sorted(opts)
        texts = [opts[x] for x in letters]
        answer_text = rng.choice(texts)
        l2, cat = MMB_CATS[g % len(MMB_CATS)]
        split = 'dev' if g % 9 else 'test'
        rotations = len(letters)
        if g % 11 == 3:
            rotations = 1  # a group with no rotated copies
        present = list(range(rotations))
        if g % 13 == 5 and rotations > 2:
            present.remove(2)  # a missing rotation
        if g % 17 == 7:
            present.remove(0)  # rotations whose head is missing: never counted
        style = g % 5  # 0: all right, 1: one wrong, 2: one unmatched, 3: mixed formats, 4: random
        for r in present:
            shifted = texts[r:] + texts[:r]
            row_opts = {letters[k]: shifted[k] for k in range(len(letters))}
            gt = letters[shifted.index(answer_text)]
            idx = g + r * 1000000
            row = {'index': idx, 'question': f'Group {g}?', 'hint': None if g % 3 else 'A "hint"\twith tab',
                   **row_opts, 'answer': gt, 'category': cat, 'l2-category': l2, 'split': split}
            if style == 0:
                pred = gt
            elif style == 1:
                pred = gt if r != len(present) - 1 else rng.choice([x for x in letters if x != gt] or letters)
            elif style == 2:
                pred = gt if r != 1 else 'I am not sure about this one.'
            elif style == 3:
                pred = rng.choice([f'({gt})', f'{gt}. {row_opts[gt]}', row_opts[gt], f'The answer is {gt}.',
                                   f'answer is {gt.lower()}'])
            else:
                pred = _fill(rng.choice(MCQ_TEMPLATES), letters, row_opts, rng)
            rows.append(row)
            preds.append(pred)
    _images(rows, 3, rng)
    df = _frame(rows, ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'answer', 'category', 'image',
                       'source', 'l2-category', 'comment', 'split'])
    _write_case('mmbench', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_mmbench_numeric(rng):
    # Every prediction parses as a number, so pandas turns the whole prediction column into
    # numbers when it reads the eval file, and MMBench's extra save round-trips it again.
    rows, preds = [], []
    pool = ['1', '2', '3.0', '1e3', '2.50', '0', '7', '1000', '-1', '+2', ' 3', '007']
    for g in range(12):
        opts = {'A': str(g % 3 + 1), 'B': ['1.0', '2.0', '3.0', '1000.0'][g % 4], 'C': '7', 'D': ['0', '2.5', '1e3'][g % 3]}
        for r in range(1 + g % 3):
            rows.append({'index': g + r * 1000000, 'question': f'How many {g}?', **opts, 'answer': 'ABCD'[(g + r) % 4],
                         'category': ['count', 'measure'][g % 2], 'l2-category': 'math', 'split': 'dev'})
            preds.append(pool[(g * 3 + r) % len(pool)])
    _images(rows, 1, rng)
    df = _frame(rows, ['index', 'image', 'question', 'A', 'B', 'C', 'D', 'answer', 'category', 'l2-category', 'split'])
    _write_case('mmbench_numeric', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_mmmu_numeric(rng):
    # Open questions only, numeric answers (the answer column is numeric), numeric predictions.
    rows, preds = [], []
    answers = ['5', '3.5', '12', '0.25', '100', '7']
    pool = ['5', '3.5', '12.0', '0.25', '1e2', '7', '6', '3.50', '100.0', '2']
    for i in range(18):
        rows.append({'index': i, 'question': f'<image 1> Compute {i}.', 'answer': answers[i % len(answers)],
                     'split': 'validation' if i % 4 else 'dev', 'category': ['Math', 'Physics'][i % 2]})
        preds.append(pool[i % len(pool)])
    _images(rows, 2, rng)
    df = _frame(rows, ['index', 'question', 'image', 'A', 'B', 'C', 'D', 'answer', 'split', 'category'])
    _write_case('mmmu_numeric', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_mmstar_bool(rng):
    # Boolean-looking option and prediction columns: pandas reads them as booleans.
    rows, preds = [], []
    pool = ['True', 'false', 'TRUE', 'False', 'true', 'FALSE']
    for i in range(12):
        rows.append({'index': i, 'question': f'Is it {i}?', 'A': ['True', 'true'][i % 2], 'B': ['False', 'FALSE'][i % 2],
                     'answer': 'AB'[i % 2], 'category': 'logic'})
        preds.append(pool[i % len(pool)])
    _images(rows, 1, rng)
    df = _frame(rows, ['index', 'image', 'question', 'A', 'B', 'answer', 'category'])
    _write_case('mmstar_bool', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_mmmu(rng):
    rows, preds = [], []
    letters9 = 'ABCDEFGHI'
    open_answers = ['5', '3.5', 'Paris', 'yes', '12 cm', 'A', 'b', '0', '1,000', 'None of the above', '[1, 2]',
                    'Other Answers', 'other']
    for i in range(90):
        split = 'validation' if i % 6 else 'dev'
        cat = ['Art', 'Biology', 'Math', 'Physics'][i % 4]
        row = {'index': 10000 + i, 'question': f'<image 1> What about {i}?', 'split': split, 'category': cat,
               'image_path': f'mmmu_{i}.png'}
        if i % 3 == 0:  # open question: no options
            ans = open_answers[i % len(open_answers)]
            row['answer'] = ans
            pred = rng.choice([ans, ans.upper(), f'The answer is {ans}.', 'A', 'B', f'{ans}, other answers',
                               'Other Answers', 'I do not know', f'approximately {ans} units', ''])
        else:
            n = rng.choice([2, 4, 5, 9])
            opts = {letters9[k]: t for k, t in enumerate(rng.sample(OPTION_POOL, n))}
            row.update(opts)
            row['answer'] = rng.choice(sorted(opts))
            pred = _fill(rng.choice(MCQ_TEMPLATES), sorted(opts), opts, rng)
        rows.append(row)
        preds.append(pred)
    _images(rows, 4, rng)
    # Multi-image rows: the image field is a Python list literal of base64 strings.
    for k in [1, 2]:
        rows[k]['image'] = repr([b64_png(50 + k), b64_png(60 + k)])
        rows[k]['image_path'] = repr([f'mmmu_{k}_1.png', f'mmmu_{k}_2.png'])
    rows[40]['image'] = str(rows[1]['index'])  # shares a multi-image row
    cols = ['index', 'question', 'image', 'image_path'] + list(letters9) + ['answer', 'split', 'category']
    df = _frame(rows, cols)
    _write_case('mmmu', df, [(r['index'], p) for r, p in zip(rows, preds)])


MME_SUBTASKS = ['OCR', 'artwork', 'celebrity', 'color', 'count', 'existence', 'landmark', 'position', 'posters',
                'scene', 'code_reasoning', 'commonsense_reasoning', 'numerical_calculation', 'text_translation']

YORN_PREDS = [
    'Yes', 'No', 'yes', 'no', 'Yes.', 'No.', 'YES!', 'NO!', 'yes,', 'No, there is not.', 'Yes, there is.',
    'Yes and no', 'yes/no', 'yes-no', 'no-yes', 'y e s', 'yes no', 'I do not know', '', ' ', 'None', 'NA', 'nan',
    'The answer is yes', 'The answer is no.', 'yes.no', 'yes..', '...yes', 'yes;', 'yes"', '"yes"', "'yes'",
    '(yes)', '[no]', '{yes}', 'yes?', 'no?', 'yes!no', 'Yes\nNo', 'yes\u00a0', '\u3000no', 'no\x1c', 'no\x1d',
    'Yes, 1,000 of them', '1,000 yes', '1,000 yes-no', 'yes 1.5', 'yes3.', 'no.3', '3.no', 'yes. ' * 40,
    'no. ' * 20 + 'yes.', '.' * 40 + 'yes', 'yes' + '.' * 40, '2.' * 40 + ' yes.', 'nope', 'Yeah', 'Not really',
    'There is no dog.', 'There is a dog, yes.', 'no_yes', 'yes_', 'yes\\', 'yes=', 'yes+', 'yes>', 'yes<', 'yes@',
    'yes`', 'yes*', 'yes#', 'yes:', "yes's", 'YES', 'Yes\r', '=yes', 'Ｙes', 'İs it? yes', 'NO', 'nO', 'No;yes',
    'no ; yes', 'yes , no', 'answer: yes', 'Answer:no', 'no1,2yes', 'n o', 'yes\tno', 'Yes.\n\nNo.',
]


def make_mme(rng):
    rows, preds = [], []
    idx = 0
    for s, sub in enumerate(MME_SUBTASKS):
        n_images = 2 if s % 4 else 3
        for im in range(n_images):
            path = f'{sub}/{im:03d}.jpg'
            n_q = 3 if (s == 5 and im == 0) else 2  # one image with a third question (ignored by acc+)
            for q in range(n_q):
                answer = 'Yes' if q % 2 == 0 else 'No'
                rows.append({'index': idx, 'question': f'Is it {sub} {im}? Please answer yes or no.',
                             'answer': answer, 'category': sub, 'image_path': path})
                style = rng.random()
                if style < 0.45:
                    pred = answer if rng.random() < 0.8 else ('No' if answer == 'Yes' else 'Yes')
                else:
                    pred = YORN_PREDS[idx % len(YORN_PREDS)]
                preds.append(pred)
                idx += 1
    _images(rows, 5, rng)
    df = _frame(rows, ['index', 'image', 'question', 'answer', 'category', 'image_path'])
    _write_case('mme', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_pope(rng):
    cats = ['adversarial', 'popular', 'random', 'adversarial,popular', 'popular,random',
            'adversarial,popular,random', 'adversarial, random', 'random,,popular']
    rows, preds = [], []
    for i in range(160):
        answer = 'Yes' if rng.random() < 0.5 else 'No'
        rows.append({'index': i, 'question': f'Is there a thing {i} in the image?', 'answer': answer,
                     'category': cats[i % len(cats)]})
        if i % 3:
            pred = answer if rng.random() < 0.75 else ('No' if answer == 'Yes' else 'Yes')
        else:
            pred = YORN_PREDS[(i * 7) % len(YORN_PREDS)]
        preds.append(pred)
    _images(rows, 4, rng)
    df = _frame(rows, ['index', 'question', 'answer', 'category', 'image'])
    _write_case('pope', df, [(r['index'], p) for r, p in zip(rows, preds)])


def make_direct_cases(rng):
    mcq = []
    choice_sets = [
        {'A': 'cat', 'B': 'dog', 'C': 'a cute teddy bear', 'D': 'bird'},
        {'A': 'yes', 'B': 'no'},
        {'A': 'A', 'B': 'b', 'C': 'C'},
        {'A': '3', 'B': '12', 'C': '2.5', 'D': 'None of these', 'E': 'the'},
        {'A': 'red', 'B': 'redder', 'C': 'Red wine'},
        {'A': 'Paris, France', 'B': 'New York', 'C': '(B)', 'D': 'Z'},
        {'B': 'only B', 'D': 'only D'},
        {'A': 'x' * 40, 'B': 'y' * 40},
        {'A': 'İstanbul', 'B': 'ΣΟΦΙΑ', 'C': 'straße'},
        {'A': 'a', 'B': 'an', 'C': 'the', 'D': 'answer', 'E': 'is', 'F': 'f', 'G': 'g', 'H': 'h', 'I': 'i'},
    ]
    for choices in choice_sets:
        letters = sorted(choices)
        for template in MCQ_TEMPLATES:
            mcq.append({'prediction': _fill(template, letters, choices, rng), 'choices': choices})
    words = ['A', 'B', 'C', 'D', 'Z', 'a', 'b', 'answer', 'is', 'the', 'cat', 'dog', '(A)', 'B.', '*C*', 'correct',
             'Answer', 'IS', '**D**', 'teddy', 'bear', 'no', 'Options:', '\n', 'x' * 30, 'because']
    for k in range(400):
        n = rng.randint(1, 14)
        text = ' '.join(rng.choice(words) for _ in range(n))
        mcq.append({'prediction': text, 'choices': choice_sets[k % len(choice_sets)]})
    yorn = list(YORN_PREDS)
    ywords = ['yes', 'no', 'Yes', 'NO', 'yes.', 'no,', '1,2', '3.5', 'a.b', '.', ',', '-', '/', '(', ')', '"',
              'maybe', 'yes-', '-no', '2.', 'x' * 10, '\t', '!', '?', '...']
    for k in range(300):
        n = rng.randint(1, 12)
        yorn.append(''.join(rng.choice(ywords) + rng.choice([' ', '', '  ']) for _ in range(n)))
    write_json(os.path.join(DATA, 'can_infer.cases.json'), mcq)
    write_json(os.path.join(DATA, 'yes_no.cases.json'), yorn)


def cmd_make_testdata():
    os.makedirs(DATA, exist_ok=True)
    for maker in [make_seed, make_mmstar, make_ai2d, make_scienceqa, make_scienceqa_numeric, make_mmbench,
                  make_mmmu, make_mmbench_numeric, make_mmmu_numeric, make_mmstar_bool, make_mme, make_pope, make_direct_cases]:
        maker(random.Random(maker.__name__))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == '_worker':
        jobs = json.loads(sys.stdin.read())
        result = worker(sys.argv[2], sys.argv[3], jobs)
        sys.stdout.write('\n' + json.dumps(result, ensure_ascii=False) + '\n')
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('make-testdata')
    sub.add_parser('goldens')
    score = sub.add_parser('score')
    score.add_argument('--rule', choices=['2024', 'head'], default='2024')
    score.add_argument('--kind', choices=['mcq', 'yorn'], required=True)
    score.add_argument('--dataset', required=True, help='VLMEvalKit dataset key, e.g. MMBench_DEV_EN')
    score.add_argument('--tsv', required=True)
    score.add_argument('--pred', required=True)
    args = parser.parse_args()
    if args.cmd == 'make-testdata':
        cmd_make_testdata()
    elif args.cmd == 'goldens':
        cmd_goldens()
    else:
        cmd_score(args)


if __name__ == '__main__':
    main()
