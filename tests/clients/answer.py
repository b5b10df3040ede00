"""A stock Python `websockets` client written like the action server's
basic client: it speaks the request form and answers the server's requests.

Usage: python answer.py WS_URL. Sends one request-form `ping`, prints one
JSON line `{"connection_id"}`, then answers every
`{"type":"request","msg_id",...,"data":{"action","params"}}` with
`{"type":"response","msg_id",...}`:
- `get_time`: success, data `{"time", "seen"}` (`seen` is the request frame);
- `fail`: `success: false` with `error` and `code` `DISK_FULL`;
- anything else: `success: false`, `code` `UNKNOWN_ACTION`.
Runs until the connection closes.
"""

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(url: str) -> None:
    async with connect(url) as ws:
        ack = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "request", "msg_id": "hello", "data": {"action": "ping", "params": {}}}))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("msg_id") == "hello":
                break
        print(json.dumps({"connection_id": ack["connection_id"]}), flush=True)
        try:
            async for text in ws:
                frame = json.loads(text)
                if frame.get("type") != "request":
                    continue
                action = frame["data"]["action"]
                answer = {"type": "response", "msg_id": frame["msg_id"], "timestamp": time.time()}
                if action == "get_time":
                    answer.update(success=True, data={"time": time.time(), "seen": frame})
                elif action == "fail":
                    answer.update(success=False, error="disk full", code="DISK_FULL")
                else:
                    answer.update(success=False, error=f"no action {action}", code="UNKNOWN_ACTION")
                await ws.send(json.dumps(answer))
        except ConnectionClosed:
            pass


asyncio.run(main(sys.argv[1]))
