"""Two generations at once on one WebSocket with the `websockets` package, one of them
cancelled, then frames the server must refuse. Prints what happened as JSON.

usage: ws_client.py WS_URL
"""
import asyncio
import json
import sys


async def main(url):
    import websockets

    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "generate", "id": "long", "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}))
        await ws.send(json.dumps({"type": "generate", "id": "short", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}))
        tokens = {"long": 0, "short": 0}
        texts = {"long": "", "short": ""}
        ends = {}
        cancelled = False
        while len(ends) < 2:
            frame = json.loads(await ws.recv())
            if frame["type"] == "token":
                assert frame["index"] == tokens[frame["id"]], frame
                tokens[frame["id"]] += frame["tokens"]
                texts[frame["id"]] += frame["text"]
                if frame["id"] == "long" and not cancelled:
                    await ws.send(json.dumps({"type": "cancel", "id": "long"}))
                    cancelled = True
            else:
                ends[frame["id"]] = frame
        refusals = []
        for bad in ["not json", json.dumps({"type": "cancel", "id": "nothing-running"}), json.dumps({"type": "dance", "id": 1}),
                    json.dumps({"type": "generate", "id": "x", "messages": [], "max_tokens": 2})]:
            await ws.send(bad)
            refusals.append(json.loads(await ws.recv()))
        print(json.dumps({"tokens": tokens, "texts": texts, "ends": ends, "refusals": refusals}))


asyncio.run(main(sys.argv[1]))
