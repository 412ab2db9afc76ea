#!/usr/bin/env python3
"""How long a running stream stalls while another request's image is admitted.

    python3 bench/admission_gap.py --model /tmp/blip3-full --image /tmp/blip3-peers/640x480.png

Starts `blip3 serve` on loopback, opens one text-only stream (`ignore_eos`,
`--tokens` tokens), and once it has produced a few tokens sends one chat
request with the image. Prints the stream's inter-token gaps (median and
largest) before, during and after that request's admission, and the image
request's time to first token. Standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import threading
import time

import loopback_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blip3", default=os.path.join(ROOT, "target", "release", "blip3"))
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--tokens", type=int, default=60)
    p.add_argument("--json")
    args = p.parse_args()
    proc, host, port, _ = loopback_server.start(args.blip3, args.model)
    with open(args.image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    stream_body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story."}],
                              "max_tokens": args.tokens, "ignore_eos": True, "stream": True}).encode()
    image_body = json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "What is shown in this image?"}]}], "max_tokens": 4}).encode()
    times, image = [], {}
    started = threading.Event()

    def send_image():
        started.wait()
        conn = http.client.HTTPConnection(host, port, timeout=600)
        image["sent"] = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=image_body,
                     headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        image["done"] = time.perf_counter()
        image["timings"] = answer["usage"]["timings"]

    t = threading.Thread(target=send_image)
    t.start()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body=stream_body, headers={"Content-Type": "application/json"})
    for raw in conn.getresponse():
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        if any(c.get("token_ids") for c in chunk.get("choices", [])):
            times.append(time.perf_counter())
            if len(times) == 5:
                started.set()
    t.join()
    proc.terminate()
    proc.wait(timeout=60)
    gaps = [(b - a, a) for a, b in zip(times, times[1:])]
    sent = image["sent"]
    first_token = sent + image["timings"]["ttft_s"]
    phases = {
        "before": [g for g, a in gaps if a < sent],
        "during admission": [g for g, a in gaps if sent <= a < first_token],
        "after": [g for g, a in gaps if a >= first_token],
    }
    result = {"stream_tokens": len(times), "image_request_timings": image["timings"]}
    for name, values in phases.items():
        values = sorted(values)
        if values:
            result[name] = {"gaps": len(values), "median_s": round(values[len(values) // 2], 3),
                            "max_s": round(values[-1], 3)}
        print(f"{name:18} " + (f"{len(values)} gaps, median {values[len(values) // 2]:.3f} s, "
                               f"largest {values[-1]:.3f} s" if values else "no gaps"))
    print(f"image request: TTFT {image['timings']['ttft_s']:.2f} s, image encode "
          f"{image['timings']['image_encode_s']:.2f} s, prefill {image['timings']['prefill_s']:.2f} s, "
          f"{image['timings']['admission_passes']} stream passes during its admission")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
