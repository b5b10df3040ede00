"""A worker written like the action server's basic client, on stock Python
`websockets`: it connects to the worker port, never sends `register` (that
server registered its workers on connect), and answers every
`{"type":"request","msg_id","data":{"action","params"}}` frame with
`{"type":"response","msg_id","timestamp","success","data"}`. Frames of
other types (the host's `registered` and `ping`) are ignored, as that
client ignored what it did not know.

Usage: python action_worker.py WS_URL NAME [--hello]. With --hello the
worker's first frame is a `heartbeat`, as that client sent on a timer;
without it, the worker says nothing until asked. Prints "ready" once
connected; runs until the host closes the connection or it is killed.
"""

import asyncio
import json
import sys
import time
import uuid

from websockets.asyncio.client import connect


async def main(url: str, name: str, hello: bool) -> None:
    async with connect(url) as ws:
        if hello:
            await ws.send(json.dumps({"type": "heartbeat", "msg_id": str(uuid.uuid4()), "timestamp": time.time(), "data": {}}))
        print("ready", flush=True)
        async for text in ws:
            message = json.loads(text)
            if message.get("type") != "request":
                continue
            data = message.get("data") or {}
            await ws.send(json.dumps({
                "type": "response",
                "msg_id": message["msg_id"],
                "timestamp": time.time(),
                "success": True,
                "data": {"by": name, "action": data.get("action"), "params": data.get("params")},
            }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--hello" in sys.argv[3:]))
