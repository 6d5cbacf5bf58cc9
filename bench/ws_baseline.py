"""A bare `websockets` broadcast server: the floor under the update-to-screen figures.

`python -m bench.ws_baseline PORT`. Clients connect to `/`; a message sent to
`/trigger` (`{"seq": n, "size": bytes}`) is broadcast to every client as one
frame of about that size, and acknowledged to the trigger.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def handler(socket: ServerConnection) -> None:
    if socket.request is not None and socket.request.path == "/trigger":
        async for raw in socket:
            message = json.loads(raw)
            frame = json.dumps({"seq": message["seq"], "pad": "x" * max(0, message["size"] - 30)})
            broadcast(clients, frame)
            await socket.send("ok")
        return
    clients.add(socket)
    try:
        await socket.send(json.dumps({"type": "hello"}))
        await socket.wait_closed()
    finally:
        clients.discard(socket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
