"""Drives `rill serve` with the official `openai` package, as a user's program would, and
prints what it got as JSON for cli/tests/serve.rs to check.

usage: openai_client.py BASE_URL MODEL
"""
import json
import sys

import openai
from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url + "/v1", api_key="sk-unused", max_retries=0)
messages = [{"role": "user", "content": "Name a colour."}]
out = {"models": [m.id for m in client.models.list()]}

r = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
out["chat"] = {
    "role": r.choices[0].message.role,
    "content": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
    "usage": r.usage.model_dump(),
}

chunks = list(client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}))
out["chat_stream"] = {
    "chunks": len(chunks),
    "role": chunks[0].choices[0].delta.role,
    "content": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "finish_reason": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
}

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0, logprobs=2)
out["completion"] = {
    "text": r.choices[0].text,
    "finish_reason": r.choices[0].finish_reason,
    "tokens": r.choices[0].logprobs.tokens,
    "token_logprobs": r.choices[0].logprobs.token_logprobs,
    "top_logprobs": r.choices[0].logprobs.top_logprobs,
}

r = client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
out["chat_logprobs"] = [
    {"token": c.token, "logprob": c.logprob, "top": [t.logprob for t in c.top_logprobs]} for c in r.choices[0].logprobs.content
]

# A long system prompt shared by two conversations: the second reuses its KV blocks.
system = {"role": "system", "content": "You are the archivist of a river town. " * 12}
out["shared_prefix"] = []
for question in ["Who built the mill?", "When did the river flood?"]:
    r = client.chat.completions.create(
        model=model, messages=[system, {"role": "user", "content": question}], max_tokens=4, temperature=0)
    out["shared_prefix"].append({
        "prompt_tokens": r.usage.prompt_tokens,
        "cached_tokens": r.usage.prompt_tokens_details.cached_tokens,
    })

try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
    out["unknown_model"] = None
except openai.NotFoundError as e:
    out["unknown_model"] = {"status": e.status_code, "code": e.code}

print(json.dumps(out))
