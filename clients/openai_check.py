#!/usr/bin/env python3
"""Drives `blip3 serve` on the bundled tiny model with the real `openai` client.

    python3 clients/openai_check.py [--blip3 target/debug/blip3]

Starts the server on a free loopback port, compares its answers with
`blip3 generate --json` (same ids and text), exercises n, stop, logprobs,
detail=low and streaming with usage, sends each documented bad input and
checks its 4xx, then checks that a good request still succeeds. Stops the
server (SIGTERM, graceful) at the end. Needs `pip install openai`.
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


def data_url(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def user(url, detail="auto", text=QUESTION):
    return [{"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
    ]}]


def start_server(blip3):
    proc = subprocess.Popen(
        [blip3, "serve", "--model", MODEL, "--port", "0", "--served-model-name", "blip3-tiny"],
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


def expect_status(client, status, **kwargs):
    try:
        client.chat.completions.create(model="blip3-tiny", **kwargs)
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, status, e.message)
        body = e.response.json()
        assert "message" in body["error"] and "type" in body["error"], body
        return body["error"]["message"]
    raise AssertionError(f"expected HTTP {status} for {kwargs}")


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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SystemExit("the server did not stop on SIGTERM")
    assert proc.returncode == 0, proc.returncode
    print("openai client check passed")


if __name__ == "__main__":
    main()
