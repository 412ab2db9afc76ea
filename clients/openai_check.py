#!/usr/bin/env python3
"""Drives `blip3 serve` on the bundled tiny model with the real `openai` client.

    python3 clients/openai_check.py [--blip3 target/debug/blip3]

Starts the server on a free loopback port, compares its answers with
`blip3 generate --json` (same ids and text), exercises n, stop, logprobs,
detail=low and streaming with usage, sends each documented bad input and
checks its 4xx, then checks that a good request still succeeds. Then starts a
second server on the tiny xGen-MM v1.5 model (the multi-image family, with
`--max-images 4`) and checks a two-image chat against
`blip3 generate --image A --image B`, and `/v1/completions` (raw prompts, the
base models' format) with image parts against
`blip3 generate --raw-prompt --image A --image B`. Stops each server (SIGTERM,
graceful) at the end. Needs `pip install openai`.
"""

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "testdata", "blip3-tiny", "model")
IMAGE = os.path.join(ROOT, "testdata", "blip3-tiny", "images", "v2_grid2x2_100x90.png")
QUESTION = "What is shown in this image?"
V15_MODEL = os.path.join(ROOT, "testdata", "xgenmm-v15-tiny", "model")
V15_IMAGES = [os.path.join(ROOT, "testdata", "xgenmm-v15-tiny", "images", f"v5_two_wide3_420x130_small_40x25_{s}.png")
              for s in "ab"]
TWO_QUESTION = "Describe both pictures."
# A base model's few-shot prompt: one bare <image> per image, no chat frame.
RAW_PROMPT = "<image>Output:a red square<|endofchunk|><image>Output:"


def data_url(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def image_part(url, detail="auto"):
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def user(url, detail="auto", text=QUESTION):
    # Each image is spliced where its part stands: image first, as the
    # model card's prompt (and `blip3 generate`) has it.
    return [{"role": "user", "content": [image_part(url, detail), {"type": "text", "text": text}]}]


def start_server(blip3, model=MODEL, name="blip3-tiny", extra=()):
    # Loopback only (the default --host), on a free port.
    proc = subprocess.Popen(
        [blip3, "serve", "--model", model, "--port", "0", "--served-model-name", name, *extra],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        sys.stderr.write("server: " + line)
        m = re.search(r"on (http://[0-9.:]+/v1)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("the server did not start")


def expect_status(client, status, model="blip3-tiny", code=None, **kwargs):
    try:
        client.chat.completions.create(model=model, **kwargs)
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, status, e.message)
        body = e.response.json()
        assert "message" in body["error"] and "type" in body["error"], body
        assert code is None or body["error"].get("code") == code, (code, body)
        return body["error"]["message"]
    raise AssertionError(f"expected HTTP {status} for {kwargs}")


def expect_completion_status(client, status, code, **kwargs):
    try:
        client.completions.create(model="xgenmm-v15-tiny", **kwargs)
    except openai.APIStatusError as e:
        body = e.response.json()
        assert e.status_code == status and body["error"].get("code") == code, (e.status_code, body)
        return body["error"]["message"]
    raise AssertionError(f"expected HTTP {status} for {kwargs}")


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit("the server did not stop on SIGTERM")
    assert proc.returncode == 0, proc.returncode


def check_two_images(blip3):
    """Two image_url parts in one message on the v1.5 tiny model: the same text
    as `blip3 generate --image A --image B`; image-count errors are 400s."""
    ref = json.loads(subprocess.check_output(
        [blip3, "generate", "--model", V15_MODEL, "--image", V15_IMAGES[0], "--image", V15_IMAGES[1],
         "--prompt", TWO_QUESTION, "--max-new-tokens", "8", "--json"], text=True))
    proc, base_url = start_server(blip3, V15_MODEL, "xgenmm-v15-tiny", ["--max-images", "4"])
    try:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
        a, b = (data_url(p) for p in V15_IMAGES)
        messages = [{"role": "user", "content": [
            image_part(a), image_part(b), {"type": "text", "text": TWO_QUESTION}]}]
        r = client.chat.completions.create(model="xgenmm-v15-tiny", messages=messages, max_tokens=8,
                                           temperature=0)
        assert r.choices[0].message.content == ref["text"], (r.choices[0].message.content, ref["text"])
        assert r.choices[0].token_ids == ref["ids"], (r.choices[0].token_ids, ref["ids"])
        assert r.usage.prompt_tokens == ref["timings"]["prefill_tokens"]
        assert r.usage.prompt_tokens_details.image_tokens == sum(ref["image_token_counts"])
        print("two images (v1.5): same text as blip3 generate --image A --image B", repr(ref["text"]))

        # Typed "<image>" is text: it neither adds an image slot nor errors.
        typed = [{"role": "user", "content": [image_part(a), {"type": "text", "text": "Compare with <image>."}]}]
        r = client.chat.completions.create(model="xgenmm-v15-tiny", messages=typed, max_tokens=4)
        one = client.chat.completions.create(model="xgenmm-v15-tiny", max_tokens=4, messages=[
            {"role": "user", "content": [image_part(a), {"type": "text", "text": "Compare with it."}]}])
        assert r.usage.prompt_tokens_details.image_tokens == one.usage.prompt_tokens_details.image_tokens
        print("  typed <image> stays text: one image slot")
        many = [{"role": "user", "content": [image_part(a)] * 5 + [{"type": "text", "text": "Hi"}]}]
        msg = expect_status(client, 400, model="xgenmm-v15-tiny", code="too_many_images",
                            messages=many, max_tokens=4)
        assert "at most 4" in msg, msg
        print(f"  400 (--max-images 4): {msg}")
        check_completions(blip3, client, base_url, a, b)
    finally:
        stop_server(proc)


def check_completions(blip3, client, base_url, a, b):
    """/v1/completions on the v1.5 tiny model: a raw prompt given as content
    parts (each image part a bare <image>) gives the same text and ids as
    `blip3 generate --raw-prompt` (the completion stop rule); a plain string
    prompt too; bad prompts are 400s."""
    def generate(prompt, images, max_new_tokens):
        cmd = [blip3, "generate", "--model", V15_MODEL, "--raw-prompt", "--prompt", prompt,
               "--max-new-tokens", str(max_new_tokens), "--json"]
        for image in images:
            cmd += ["--image", image]
        return json.loads(subprocess.check_output(cmd, text=True))

    ref = generate(RAW_PROMPT, V15_IMAGES, 8)
    parts = [image_part(a), {"type": "text", "text": "Output:a red square<|endofchunk|>"},
             image_part(b), {"type": "text", "text": "Output:"}]
    # The client types `prompt` as text or token ids but sends the list as is.
    r = client.completions.create(model="xgenmm-v15-tiny", prompt=parts, max_tokens=8, temperature=0)
    assert r.object == "text_completion", r.object
    assert r.choices[0].text == ref["text"], (r.choices[0].text, ref["text"])
    assert r.choices[0].token_ids == ref["ids"], (r.choices[0].token_ids, ref["ids"])
    assert r.choices[0].finish_reason == ("length" if ref["stop_reason"] == "max_new_tokens" else "stop")
    assert r.usage.prompt_tokens == ref["timings"]["prefill_tokens"]
    assert r.usage.prompt_tokens_details.image_tokens == sum(ref["image_token_counts"])
    print("completions with image parts: same text as blip3 generate --raw-prompt", repr(ref["text"]))

    # The same body by hand (no client): the wire format itself.
    req = urllib.request.Request(
        base_url + "/completions",
        data=json.dumps({"model": "xgenmm-v15-tiny", "prompt": parts, "max_tokens": 8}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        body = json.loads(resp.read())
    assert body["choices"][0]["text"] == ref["text"] and body["choices"][0]["token_ids"] == ref["ids"], body

    chunks = list(client.completions.create(model="xgenmm-v15-tiny", prompt=parts, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == ref["text"], (text, ref["text"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(ref["ids"])
    print("completions streaming: same text, usage chunk present")

    # A plain string prompt, no image; max_tokens defaults to 16 as OpenAI's.
    plain = generate("A photo of", [], 16)
    r = client.completions.create(model="xgenmm-v15-tiny", prompt="A photo of", logprobs=2)
    assert r.choices[0].text == plain["text"] and r.choices[0].token_ids == plain["ids"], (r, plain)
    assert len(r.choices[0].logprobs.tokens) == len(plain["ids"])
    print("completions with a string prompt (default max_tokens 16) and logprobs: ok")

    for kwargs, code in [
        (dict(prompt=["A photo of", "A drawing of"]), "unsupported_parameter"),
        (dict(prompt="A photo of", echo=True), "unsupported_parameter"),
    ]:
        msg = expect_completion_status(client, 400, code, **kwargs)
        print(f"  400: {msg}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--blip3", default=os.path.join(ROOT, "target", "debug", "blip3"))
    args = p.parse_args()

    ref = json.loads(subprocess.check_output(
        [args.blip3, "generate", "--model", MODEL, "--image", IMAGE, "--prompt", QUESTION,
         "--max-new-tokens", "8", "--json"], text=True))
    proc, base_url = start_server(args.blip3)
    try:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list().data] == ["blip3-tiny"]
        url = data_url(IMAGE)

        r = client.chat.completions.create(model="blip3-tiny", messages=user(url), max_tokens=8)
        choice = r.choices[0]
        assert choice.token_ids == ref["ids"], (choice.token_ids, ref["ids"])
        assert choice.message.content == ref["text"]
        assert r.usage.completion_tokens == len(ref["ids"])
        print("non-streaming: same ids as blip3 generate", ref["ids"])

        # r-v1 puts the image first whatever the part order (the text first is
        # what many OpenAI clients send).
        text_first = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, image_part(url)]}]
        r = client.chat.completions.create(model="blip3-tiny", messages=text_first, max_tokens=8)
        assert r.choices[0].token_ids == ref["ids"], (r.choices[0].token_ids, ref["ids"])
        print("r-v1, [text, image] order: the same prompt and ids")

        chunks = list(client.chat.completions.create(
            model="blip3-tiny", messages=user(url), max_tokens=8, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        ids = [i for c in chunks if c.choices for i in (getattr(c.choices[0], "token_ids", None) or [])]
        assert text == ref["text"] and ids == ref["ids"], (text, ids)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(ref["ids"])
        print("streaming: same text and ids, usage chunk present")

        r = client.chat.completions.create(model="blip3-tiny", messages=user(url), max_tokens=8, n=2,
                                           logprobs=True, top_logprobs=3)
        assert len(r.choices) == 2 and all(c.token_ids == ref["ids"] for c in r.choices)
        lp = r.choices[0].logprobs.content
        assert len(lp) == len(ref["ids"]) and len(lp[0].top_logprobs) == 3 and lp[0].logprob <= 0
        print("n=2 with logprobs: ok")

        if len(ref["text"]) > 3:
            stop = ref["text"][2:4]
            r = client.chat.completions.create(model="blip3-tiny", messages=user(url), max_tokens=8,
                                               stop=[stop])
            assert r.choices[0].message.content == ref["text"][:ref["text"].index(stop)]
            assert r.choices[0].finish_reason == "stop"
            print(f"stop {stop!r}: ok")

        low = json.loads(subprocess.check_output(
            [args.blip3, "generate", "--model", MODEL, "--image", IMAGE, "--prompt", QUESTION,
             "--max-new-tokens", "8", "--aspect", "pad", "--json"], text=True))
        r = client.chat.completions.create(model="blip3-tiny", messages=user(url, "low"), max_tokens=8)
        assert r.choices[0].token_ids == low["ids"], (r.choices[0].token_ids, low["ids"])
        assert r.usage.prompt_tokens < ref["timings"]["prefill_tokens"]
        print("detail=low: same ids as blip3 generate --aspect pad")

        bad = [
            (400, dict(messages=[])),
            (400, dict(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}])),
            (400, dict(messages=user("data:image/png;base64,@@@@"))),
            (400, dict(messages=user("data:image/png;base64," + base64.b64encode(b"not an image").decode()))),
            (400, dict(messages=user("data:image/png;base64," + base64.b64encode(b"GIF89a" + b"\0" * 20).decode()))),
            (400, dict(messages=[{"role": "user", "content": [{"type": "image_url"}]}])),
            (400, dict(messages=user("file:///etc/passwd"))),
            (400, dict(messages=user("http://127.0.0.1:1/x.png"))),
            (400, dict(messages=user("http://169.254.169.254/latest/meta-data/"))),
            (400, dict(messages=user(url), max_tokens=100000)),
            (400, dict(messages=user(url), n=99)),
        ]
        for status, kwargs in bad:
            msg = expect_status(client, status, **kwargs)
            print(f"  {status}: {msg}")
        # The client always sends valid JSON: send a malformed body by hand.
        req = urllib.request.Request(base_url + "/chat/completions", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("malformed JSON was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and "error" in json.loads(e.read()), e.code
            print("  400: malformed JSON body")
        r = client.chat.completions.create(model="blip3-tiny", messages=user(url), max_tokens=8)
        assert r.choices[0].token_ids == ref["ids"]
        print("bad inputs answered with 4xx; the next request still succeeds")
    finally:
        stop_server(proc)
    check_two_images(args.blip3)
    print("openai client check passed")


if __name__ == "__main__":
    main()
