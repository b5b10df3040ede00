"""A stock Python `websockets` client: connect, ask `ping`, close normally.

Usage: python close.py WS_URL. Prints one JSON line: the acknowledgement's
and the reply's `type`, the close code this client saw (1006 if the server
never sent a Close frame back) and whether the close was clean (websockets
raises ConnectionClosedOK only when both Close frames were exchanged with
1000 or 1001).
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK, ConnectionClosed


async def main(url: str) -> None:
    # close_timeout: how long close() waits for the server's Close frame.
    async with connect(url, close_timeout=5) as ws:
        ack = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "ping", "id": "python"}))
        reply = json.loads(await ws.recv())
        await ws.close(1000, "done")
        try:
            await ws.recv()
            clean = False
        except ConnectionClosedOK:
            clean = True
        except ConnectionClosed:
            clean = False
    print(json.dumps({
        "ack": ack.get("type"),
        "reply": reply.get("type"),
        "close_code": ws.close_code,
        "clean": clean,
    }))


asyncio.run(main(sys.argv[1]))
