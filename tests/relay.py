"""A loopback TCP relay that changes the caller's address: login budgets are per source,
and gRPC's Python client cannot bind its sockets to 127.0.0.2 itself. Used by the tests
and by the bench's login-flood runs."""

from __future__ import annotations

import asyncio
import threading


class SourceRelay:
    """A TCP relay on 127.0.0.1 that connects on to `port` from another loopback address
    (e.g. 127.0.0.2): calls through it reach the server from a different peer address, a
    different login source. gRPC's Python client cannot bind its sockets itself."""

    def __init__(self, port: int, source_ip: str) -> None:
        self._port = port
        self._source_ip = source_ip
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._server is None:
            raise RuntimeError(f"relay from {source_ip} did not start")
        self.target: str = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self._port, local_addr=(self._source_ip, 0)
        )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:  # the relay is closing: end quietly
            writer.close()
            up_writer.close()

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
