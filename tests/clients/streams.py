"""Concurrent streams through `rill serve` (or llama-server) with the `openai` client: N
streaming completions at once, each the same ~128-token prompt and 64 tokens, timed as a
client sees them. This measures what `rill bench --concurrency` measures on the engine, but
through the server's scheduler, so the adaptive batch size (`--target-itl-ms`) is in the loop:
it holds the inter-token latency by admitting fewer streams at once, at the price of time to
first token for the ones that wait. Prints one JSON object per level.

usage: tests/clients/streams.py BASE_URL MODEL [--streams 1,8] [--tokens 64]
"""
import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

from openai import OpenAI

PROMPT = "The river ran past the mill, and the miller counted the sacks of grain one by one. " * 7


def one_stream(client, model, tokens, start, out):
    arrivals = []
    stream = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=tokens, temperature=0, stream=True,
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            arrivals.append(time.monotonic() - start)
    out.append(arrivals)


def batch_limit(base_url):
    """`rill serve`'s current admission limit (None from a server without it)."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10) as r:
            lines = r.read().decode().splitlines()
    except urllib.error.URLError:
        return None
    return next((float(l.split()[1]) for l in lines if l.startswith("rill_batch_limit ")), None)


def level(base_url, model, n, tokens):
    client = OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="none", timeout=600)
    results, start = [], time.monotonic()
    threads = [threading.Thread(target=one_stream, args=(client, model, tokens, start, results)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(results) != n or any(not a for a in results):
        raise SystemExit(f"{n} streams: {len(results)} finished, some without tokens")
    gaps = [b - a for arrivals in results for a, b in zip(arrivals, arrivals[1:])]
    first = [a[0] for a in results]
    end = max(a[-1] for a in results)
    return {
        "streams": n,
        # ignore_eos: every stream gets all its tokens (a chunk may carry several).
        "tok_s_overall": round(n * tokens / end, 2),
        "itl_ms_p50": round(1000 * statistics.median(gaps), 1),
        "itl_ms_p95": round(1000 * statistics.quantiles(gaps, n=20)[-1], 1),
        "ttft_ms_p50": round(1000 * statistics.median(first)),
        "ttft_ms_max": round(1000 * max(first)),
        "batch_limit_after": batch_limit(base_url),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("model")
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    if args.tokens < 3:
        ap.error("--tokens must be at least 3 (inter-token gaps need tokens after the first)")
    for n in [int(s) for s in args.streams.split(",")]:
        print(json.dumps(level(args.base_url, args.model, n, args.tokens)), flush=True)


if __name__ == "__main__":
    main()
