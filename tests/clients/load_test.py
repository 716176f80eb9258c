"""Load test for `rill serve`: many concurrent clients, several requests each, mixed prompt and
output lengths, streaming and not. Every request must complete (200 with a finish reason) or be
refused the documented way (429 or 503 with Retry-After); nothing may be lost or fail otherwise.
Prints a JSON summary (and exits 1 on a lost or failed request).

usage: tests/clients/load_test.py BASE_URL MODEL [--clients 64] [--requests 4]
"""
import argparse
import http.client
import json
import random
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

PROMPTS = [
    "Once upon a time",
    "The capital of France is",
    "List three colours:",
    "The river ran past the mill, and the miller counted the sacks of grain one by one. " * 8,
    "A short note about the weather in spring, written for a child who asked why it rains. " * 3,
]


def one_request(url, model, rng, stream):
    body = {
        "model": model,
        "prompt": rng.choice(PROMPTS),
        "max_tokens": rng.choice([4, 8, 16, 32]),
        "temperature": 0.7,
        "seed": rng.randrange(1 << 30),
        "stream": stream,
    }
    started = time.monotonic()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    elapsed = time.monotonic() - started
    if r.status in (429, 503):
        ok = r.getheader("Retry-After") is not None and json.loads(raw)["error"]["message"]
        return ("refused" if ok else "bad-refusal", r.status, elapsed)
    if r.status != 200:
        return ("failed", r.status, elapsed)
    if stream:
        events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return ("lost", 200, elapsed)
        chunks = [json.loads(e) for e in events[:-1]]
        if any("error" in c for c in chunks):
            return ("failed", 200, elapsed)
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1]
    else:
        finish = json.loads(raw)["choices"][0]["finish_reason"]
    return ("completed" if finish in ("stop", "length") else "lost", 200, elapsed)


def client_loop(url, model, seed, requests):
    rng = random.Random(seed)
    return [one_request(url, model, rng, stream=(seed + i) % 2 == 0) for i in range(requests)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("model")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=4)
    a = p.parse_args()
    url = urllib.parse.urlsplit(a.base)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=a.clients) as pool:
        per_client = list(pool.map(lambda c: client_loop(url, a.model, c, a.requests), range(a.clients)))
    results = [r for rs in per_client for r in rs]
    summary = {"requests": len(results), "seconds": round(time.monotonic() - started, 1)}
    for kind in ("completed", "refused", "bad-refusal", "failed", "lost"):
        summary[kind] = sum(1 for r in results if r[0] == kind)
    summary["statuses"] = sorted({r[1] for r in results})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    summary["metrics"] = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("rill_engine_restarts_total", "rill_kv_cache_bytes", "rill_kv_budget_bytes", "rill_preemptions_total", "rill_batch_limit"))
    }
    print(json.dumps(summary))
    sys.exit(0 if summary["completed"] + summary["refused"] == len(results) else 1)


main()
