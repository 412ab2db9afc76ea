#!/usr/bin/env python3
"""Goldens for the few-shot sampler (crates/blip3-eval/src/sampler*).

Reference: OpenFlamingo's evaluation sampler. With OPENFLAMINGO_DIR set to a
checkout of https://github.com/mlfoundations/open_flamingo (main and mllm hold
the same eval/utils.py), the plan cases call that checkout's
`open_flamingo/eval/utils.py` functions themselves (`compute_effective_num_shots`,
`prepare_eval_samples` with its real DataLoader and DistributedSampler,
`get_query_set`, `random_seed`, `sample_batch_demos_from_query_set`), in the
order `evaluate.py` calls them, inside a one-process gloo group on loopback.
Without it, the script makes the same numpy / random / torch calls itself
(recorded as `"source": "inline"`). Either way the numbers come from the real
CPython `random`, NumPy legacy RandomState and CPU torch.

Needs a virtualenv with numpy and torch (the CPU wheel is enough):

    python3 -m venv /tmp/venv-fewshot && /tmp/venv-fewshot/bin/pip install numpy torch
    git --git-dir=<open_flamingo mirror> archive HEAD open_flamingo/eval/utils.py | tar -x -C /tmp/of
    OPENFLAMINGO_DIR=/tmp/of /tmp/venv-fewshot/bin/python \
        tools/eval-reference/fewshot_sampler_reference.py [--large-randperm]

It writes testdata/eval/fewshot/{generators,plans}.golden.json, and with
--large-randperm also randperm_large.golden.json (torch's 64-bit path, about a
minute and 2 GB). Long sequences are stored as a prefix, a suffix and `mixhash`:
the sum over positions i, modulo 2^64, of SplitMix64's output mix applied to
the key i * 2^32 + x_i (wrapping).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "testdata" / "eval" / "fewshot"
# Sequences longer than this are stored as prefix + suffix + mixhash.
FULL_LIMIT = 64
EDGE = 16


def mixhash(values):
    """The position-weighted 64-bit hash described in the module docstring."""
    x = np.asarray(values, dtype=np.uint64)
    z = (np.arange(len(x), dtype=np.uint64) << np.uint64(32)) + x
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return str(int(z.sum(dtype=np.uint64)))


def summarize(values):
    values = [int(v) for v in values]
    if len(values) <= FULL_LIMIT:
        return {"len": len(values), "full": values}
    return {
        "len": len(values),
        "head": values[:EDGE],
        "tail": values[-EDGE:],
        "mixhash": mixhash(values),
    }


def abs_words(n):
    """Little-endian 32-bit words of abs(n) (at least one)."""
    n = abs(n)
    words = []
    while True:
        words.append(n & 0xFFFFFFFF)
        n >>= 32
        if n == 0:
            return words


# ----------------------------------------------------------------------------
# Raw generator streams


def python_streams():
    seeds = [0, 1, 42, 43, -5, 2**32 - 1, 2**32, 2**64 + 3, 10**30, -(2**100), 2**200 + 12345]
    words = []
    for s in seeds:
        r = random.Random(s)
        words.append(
            {"seed": str(s), "abs_words": abs_words(s), "getrandbits32": [r.getrandbits(32) for _ in range(40)]}
        )

    widths = []
    for s in [42, 7]:
        r = random.Random(s)
        widths.append(
            {"seed": s, "values_hex": [format(r.getrandbits(k), "x") for k in range(0, 101)]}
        )

    bounds = [1, 2, 3, 5, 7, 100, 2048, 2**31 + 1, 2**32, 2**33 - 1, 2**53 + 5, 2**64 - 1]
    randbelow = []
    for s in [42, 3]:
        r = random.Random(s)
        randbelow.append(
            {"seed": s, "bounds": [str(b) for b in bounds],
             "values": [[str(r._randbelow(b)) for _ in range(8)] for b in bounds]}
        )

    # (n, k) pairs on both sides of CPython 3.11's setsize rule.
    pairs = [(0, 0), (1, 1), (5, 5), (10, 3), (21, 5), (22, 5), (85, 6), (86, 6), (30, 8),
             (100, 32), (277, 32), (278, 32), (2048, 2), (2048, 4), (2048, 8), (2048, 32),
             (10**6, 10), (1000, 1000), (5000, 2000), (64, 21), (65, 21), (256, 22), (2, 0)]
    samples = []
    for s in [42, 0, 12345]:
        r = random.Random(s)
        samples.append(
            {"seed": s, "cases": [{"n": n, "k": k, "picks": summarize(r.sample(range(n), k))}
                                  for n, k in pairs for _ in range(2)]}
        )
    # sample() on a list (OpenFlamingo samples its query-set list) equals sample() on range().
    r1, r2 = random.Random(9), random.Random(9)
    pop = list(range(500, 2548))
    assert [x - 500 for x in r1.sample(pop, 32)] == r2.sample(range(2048), 32)
    return {"seed_words": words, "getrandbits_widths": widths, "randbelow": randbelow, "sample": samples}


def numpy_streams():
    words = []
    for s in [0, 1, 42, 2**32 - 1]:
        rs = np.random.RandomState(s)
        words.append({"seed": s, "u32": [int(v) for v in rs.randint(0, 2**32, size=40, dtype=np.int64)]})

    # Legacy randint(0, m + 1) is a masked rejection draw in [0, m], as random_interval(m).
    maxima = [1, 2, 3, 6, 1000, 2**31, 2**32 - 1, 2**32, 2**33 + 4, 2**40 - 1, 2**62 + 7]
    intervals = []
    for s in [42, 5]:
        rs = np.random.RandomState(s)
        intervals.append(
            {"seed": s, "maxima": [str(m) for m in maxima],
             "values": [[str(int(rs.randint(0, m + 1, dtype=np.int64))) for _ in range(6)] for m in maxima]}
        )

    perms = []
    for s in [42, 0, 2**32 - 1]:
        rs = np.random.RandomState(s)
        cases = []
        for n in [0, 1, 2, 3, 10, 1000, 65537]:
            cases.append({"n": n, "perm": summarize(rs.permutation(n))})
        for n, size in [(5000, 5000), (118287, 2048), (10, 0), (9009, 2048), (100, 7)]:
            cases.append({"n": n, "size": size, "choice": summarize(rs.choice(n, size, replace=False))})
        perms.append({"seed": s, "cases": cases})
    return {"u32": words, "interval": intervals, "sequence": perms}


def torch_streams():
    out = []
    for s in [0, 1, 42, 2**32 + 5]:
        g = torch.Generator()
        g.manual_seed(s)
        cases = [{"n": n, "perm": summarize(torch.randperm(n, generator=g).tolist())}
                 for n in [0, 1, 2, 3, 10, 100, 5000, 214354]]
        out.append({"seed": str(s), "cases": cases})
    return out


# ----------------------------------------------------------------------------
# Plans


class Items:
    """A stand-in dataset: item i is {"image": i, "idx": i}."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return {"image": int(i), "idx": int(i)}


def load_utils():
    root = os.environ.get("OPENFLAMINGO_DIR")
    if not root:
        return None, None
    path = Path(root) / "open_flamingo" / "eval" / "utils.py"
    spec = importlib.util.spec_from_file_location("of_eval_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, hashlib.sha256(path.read_bytes()).hexdigest()


def init_single_process_group():
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.NamedTemporaryFile(delete=False)
        store.close()
        os.unlink(store.name)
        dist.init_process_group("gloo", init_method=f"file://{store.name}", rank=0, world_size=1)


def run_with_utils(utils, c):
    """evaluate.py's sequence, calling OpenFlamingo's own utils."""
    effective = utils.compute_effective_num_shots(c["shots"], c["model"])
    test, train = Items(c["test_len"]), Items(c["train_len"])
    np.random.seed(c["seed"])
    loader = utils.prepare_eval_samples(
        test, c["num_samples"] if c["num_samples"] > 0 else len(test), c["batch_size"]
    )
    query_set = utils.get_query_set(train, c["query_set_size"])
    utils.random_seed(c["seed"], 0)
    order, demos = [], []
    for batch in loader:
        batch_demos = utils.sample_batch_demos_from_query_set(query_set, effective, len(batch["image"]))
        for i in range(len(batch["image"])):
            order.append(batch["idx"][i])
            demos.append([x["idx"] for x in batch_demos[i]])
    return order, demos, [x["idx"] for x in query_set]


def run_inline(c):
    """The same calls, made here."""
    shots = c["shots"]
    effective = (shots if shots > 0 else 2) if c["model"] == "open_flamingo" else shots
    test_len = c["test_len"]
    np.random.seed(c["seed"])
    n = c["num_samples"] if c["num_samples"] > 0 else test_len
    subset = np.random.choice(test_len, n, replace=False)
    g = torch.Generator()
    g.manual_seed(0)
    order = [int(subset[i]) for i in torch.randperm(len(subset), generator=g).tolist()]
    query_set = [int(i) for i in np.random.choice(c["train_len"], c["query_set_size"], replace=False)]
    np.random.seed(c["seed"])
    random.seed(c["seed"])
    demos = []
    for start in range(0, len(order), c["batch_size"]):
        for _ in order[start : start + c["batch_size"]]:
            demos.append(random.sample(query_set, effective))
    return order, demos, query_set


PLAN_CASES = [
    # COCO-like (Karpathy test 5000, train2017 118287), the card's shots and 32.
    *[dict(name=f"coco_{s}shot", test_len=5000, train_len=118287, shots=s) for s in (0, 4, 8, 32)],
    dict(name="coco_0shot_blip", test_len=5000, train_len=118287, shots=0, model="blip"),
    dict(name="coco_4shot_b1", test_len=5000, train_len=118287, shots=4, batch_size=1),
    dict(name="coco_4shot_b64", test_len=5000, train_len=118287, shots=4, batch_size=64),
    dict(name="coco_4shot_seed0", test_len=5000, train_len=82783, shots=4, seed=0),
    dict(name="coco_8shot_seed_max", test_len=5000, train_len=82783, shots=8, seed=2**32 - 1),
    # OK-VQA val / train, TextVQA, VQAv2 val (large test set).
    dict(name="okvqa_4shot", test_len=5046, train_len=9009, shots=4),
    dict(name="textvqa_8shot_seed7", test_len=5000, train_len=34602, shots=8, seed=7),
    dict(name="vqav2_8shot", test_len=214354, train_len=443757, shots=8),
    # Subsets of the test set.
    dict(name="coco_sub100_4shot_seed7", test_len=5000, train_len=118287, shots=4, seed=7,
         num_samples=100, batch_size=3),
    dict(name="vqav2_sub5000_0shot", test_len=214354, train_len=443757, shots=0, num_samples=5000),
    # Small query sets, where random.sample copies the population.
    dict(name="tiny_pool_8shot", test_len=12, train_len=100, shots=8, query_set_size=64, batch_size=5),
    dict(name="tiny_set_4shot", test_len=10, train_len=40, shots=4, query_set_size=30, batch_size=4),
    dict(name="tiny_all_train", test_len=7, train_len=9, shots=9, query_set_size=9, seed=3),
    dict(name="single_item", test_len=1, train_len=2048, shots=4),
    dict(name="empty_test", test_len=0, train_len=3000, shots=4),
    # numpy / random raise.
    dict(name="err_query_set", test_len=10, train_len=100, shots=4),
    dict(name="err_num_samples", test_len=10, train_len=5000, shots=4, num_samples=11),
    dict(name="err_shots", test_len=10, train_len=5000, shots=16, query_set_size=8),
]

DEFAULTS = dict(seed=42, num_samples=-1, query_set_size=2048, batch_size=8, model="open_flamingo")


def plans():
    utils, utils_sha = load_utils()
    if utils is not None:
        init_single_process_group()
    cases = []
    for spec in PLAN_CASES:
        c = {**DEFAULTS, **spec}
        try:
            if utils is not None:
                order, demos, query_set = run_with_utils(utils, c)
            else:
                order, demos, query_set = run_inline(c)
        except ValueError as e:
            cases.append({**c, "error": str(e)})
            continue
        flat = [d for item in demos for d in item]
        cases.append(
            {**c, "effective_shots": len(demos[0]) if demos else None,
             "eval_order": summarize(order), "query_set": summarize(query_set),
             "demos_flat": summarize(flat), "demos_first": demos[:8]}
        )
    source = {"kind": "open_flamingo_utils", "utils_py_sha256": utils_sha} if utils else {"kind": "inline"}
    return source, cases


def versions():
    return {"python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__}


def write(name, payload):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-randperm", action="store_true")
    args = parser.parse_args()

    write("generators.golden.json",
          {"versions": versions(), "python_random": python_streams(), "numpy": numpy_streams(),
           "torch_randperm": torch_streams()})
    source, cases = plans()
    write("plans.golden.json", {"versions": versions(), "source": source, "cases": cases})

    if args.large_randperm:
        n = (2**32 - 1) // 20  # the first n on torch's 64-bit inside-out path
        g = torch.Generator()
        g.manual_seed(0)
        perm = torch.randperm(n, generator=g).numpy()
        write("randperm_large.golden.json",
              {"versions": versions(), "seed": 0, "n": n, "head": perm[:EDGE].tolist(),
               "tail": perm[-EDGE:].tolist(), "mixhash": mixhash(perm)})


if __name__ == "__main__":
    main()
