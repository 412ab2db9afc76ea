#!/usr/bin/env python3
"""Bounded loopback load test of `blip3 serve` (Python standard library only).

    python3 bench/load_test.py [--blip3 target/release/blip3] [--clients 32]
                               [--duration 30] [--max-batch 1,8]

For each `--max-batch` value it starts the server on the bundled tiny model
(loopback, free port), runs `--clients` concurrent clients that send chat
requests with an image (data URL) back to back for `--duration` seconds, then
stops the server with SIGTERM. Reports errors, requests/s, generated tokens/s,
latency percentiles and the server's RSS before and after. It stops by itself
after roughly (duration + 10 s) per setting.
"""

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "testdata", "blip3-tiny", "model")
IMAGES = ["v1_small_30x20.png", "v2_grid2x2_100x90.png", "v3_grid2x1_128x64.png", "v4_grid3x1_200x60.png"]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_setting(blip3, max_batch, clients, duration, max_tokens):
    proc = subprocess.Popen([blip3, "serve", "--model", MODEL, "--port", "0", "--max-batch", str(max_batch),
                             "--queue-size", str(clients * 2)], stderr=subprocess.PIPE, text=True)
    url = None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("server did not start")
        m = re.search(r"on (http://[0-9.:]+)/v1", line)
        if m:
            url = m.group(1) + "/v1/chat/completions"
            break
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    bodies = []
    for i, name in enumerate(IMAGES):
        with open(os.path.join(ROOT, "testdata", "blip3-tiny", "images", name), "rb") as f:
            data = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        bodies.append(json.dumps({
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": f"Question {i}: what is shown?"},
                {"type": "image_url", "image_url": {"url": data}}]}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
        }).encode())
    rss_before = rss(proc.pid)
    latencies, errors, tokens = [], [], [0]
    lock = threading.Lock()
    stop_at = time.time() + duration

    def client(k):
        j = k
        while time.time() < stop_at:
            body = bodies[j % len(bodies)]
            j += 1
            t = time.perf_counter()
            try:
                req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=120) as r:
                    answer = json.loads(r.read())
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    tokens[0] += answer["usage"]["completion_tokens"]
            except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
                with lock:
                    errors.append(repr(e))

    start = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    rss_after = rss(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return {
        "max_batch": max_batch, "clients": clients, "duration_s": round(elapsed, 1),
        "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
        "requests_per_s": len(latencies) / elapsed, "tokens_per_s": tokens[0] / elapsed,
        "latency_p50_s": percentile(latencies, 0.50), "latency_p90_s": percentile(latencies, 0.90),
        "latency_p99_s": percentile(latencies, 0.99), "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after, "server_exit_code": proc.returncode,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blip3", default=os.path.join(ROOT, "target", "release", "blip3"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-batch", default="1,8")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    results = [run_setting(args.blip3, int(b), args.clients, args.duration, args.max_tokens)
               for b in args.max_batch.split(",")]
    print("| max batch | clients | requests | errors | req/s | tokens/s | p50 | p90 | p99 | RSS before → after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['max_batch']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.1f} "
              f"| {r['tokens_per_s']:.0f} | {r['latency_p50_s'] * 1000:.0f} ms | {r['latency_p90_s'] * 1000:.0f} ms "
              f"| {r['latency_p99_s'] * 1000:.0f} ms | {r['rss_before_bytes'] / 2**20:.0f} → {r['rss_after_bytes'] / 2**20:.0f} MiB |")
    if len(results) > 1 and results[0]["tokens_per_s"] > 0:
        print(f"\nthroughput, max batch {results[-1]['max_batch']} vs {results[0]['max_batch']}: "
              f"{results[-1]['tokens_per_s'] / results[0]['tokens_per_s']:.2f}×")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(1 if any(r["errors"] for r in results) else 0)


if __name__ == "__main__":
    main()
