"""Writes the small synthetic benchmark files `blip3 eval` is tested on, one per
public format: Karpathy-style captions, VQAv2-style questions + annotations, and
VLMEvalKit TSVs (MMBench with rotations, MME with its 14 subtasks, POPE, MMMU).
Images are the tiny fixture's PNGs (testdata/blip3-tiny/images). Run from this
folder: python3 make.py"""
import base64, csv, io, json, os

IMAGES = "../../blip3-tiny/images"
NAMES = ["v1_small_30x20.png", "v3_grid2x1_128x64.png", "v4_grid3x1_200x60.png", "v2_grid2x2_100x90.png"]
b64 = {n: base64.b64encode(open(os.path.join(IMAGES, n), "rb").read()).decode() for n in NAMES}

captions = {"images": []}
for i, n in enumerate(NAMES):
    captions["images"].append({"cocoid": 100 + i, "filepath": "val2014", "filename": n, "split": "test",
                               "sentences": [{"raw": f"A small test picture number {i}."}, {"raw": "Coloured squares on a grid."}]})
for i, n in enumerate(NAMES):
    captions["images"].append({"cocoid": 200 + i, "filepath": "train2014", "filename": n, "split": "train",
                               "sentences": [{"raw": f"Training caption {i} of blocks."}]})
json.dump(captions, open("captions_karpathy.json", "w"), indent=1)

def vqa(prefix, base, n):
    qs = {"questions": [{"question_id": base + i, "image_id": i, "question": f"How many squares are in picture {i}?",
                         "image": NAMES[i % len(NAMES)]} for i in range(n)]}
    an = {"annotations": [{"question_id": base + i, "image_id": i, "answer_type": "number", "question_type": "how many",
                           "multiple_choice_answer": str(i + 1),
                           "answers": [{"answer": str(i + 1) if k < 7 else "two", "answer_confidence": "yes", "answer_id": k + 1}
                                       for k in range(10)]} for i in range(n)]}
    json.dump(qs, open(f"{prefix}_questions.json", "w"), indent=1)
    json.dump(an, open(f"{prefix}_annotations.json", "w"), indent=1)
vqa("vqa_val", 1000, 3)
vqa("vqa_train", 2000, 4)

def tsv(name, columns, rows):
    with open(name, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r.get(c, "") for c in columns])

rows = []
for g in range(2):
    opts = ["red", "green", "blue", "yellow"]
    for k in range(4):
        rot = opts[k:] + opts[:k]
        rows.append({"index": g + k * 1000000, "question": f"Which colour is square {g}?", "hint": "Look closely." if g == 0 else "",
                     "A": rot[0], "B": rot[1], "C": rot[2], "D": rot[3], "answer": "ABCD"[(4 - k) % 4],
                     "category": "colour", "l2-category": "attribute", "split": "dev",
                     "image": b64[NAMES[g]] if k == 0 else str(g)})
tsv("mmbench.tsv", ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"], rows)

PERCEPTION = ["OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position", "posters", "scene"]
REASONING = ["code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation"]
rows = []
for c, cat in enumerate(PERCEPTION + REASONING):
    for q, ans in enumerate(["Yes", "No"]):
        idx = 2 * c + q
        rows.append({"index": idx, "question": f"Is this a {cat} picture? Please answer yes or no.", "answer": ans,
                     "category": cat, "image_path": f"{cat}/{c}.png", "image": b64[NAMES[c % 4]] if q == 0 else str(idx - 1)})
tsv("mme.tsv", ["index", "image", "question", "answer", "category", "image_path"], rows)

rows = []
for i in range(6):
    rows.append({"index": i, "question": f"Is there a square in the image?", "answer": "Yes" if i % 2 == 0 else "No",
                 "category": ["adversarial", "popular", "random", "adversarial,popular", "random", "popular"][i],
                 "image": b64[NAMES[i % 4]]})
tsv("pope.tsv", ["index", "image", "question", "answer", "category"], rows)

rows = [
    {"index": 1, "question": "<image 1> Which shape is shown?", "A": "square", "B": "circle", "C": "", "answer": "A",
     "split": "validation", "category": "Art", "image": "['" + b64[NAMES[0]] + "', '" + b64[NAMES[1]] + "']"},
    {"index": 2, "question": "<image 1> How many squares?", "A": "", "B": "", "C": "", "answer": "4",
     "split": "validation", "category": "Math", "image": b64[NAMES[3]]},
]
tsv("mmmu.tsv", ["index", "image", "question", "A", "B", "C", "answer", "split", "category"], rows)

rows = [
    {"index": 0, "question": "What colours are the squares?", "answer": "red <AND> green", "category": "rec", "image": b64[NAMES[3]]},
    {"index": 1, "question": "How many squares are there?", "answer": "4 <OR> four", "category": "math", "image": b64[NAMES[3]]},
    {"index": 2, "question": "Is it a grid?", "answer": "yes", "category": "rec", "image": "1"},
]
tsv("mmvet.tsv", ["index", "image", "question", "answer", "category"], rows)
