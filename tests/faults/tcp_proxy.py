"""A TCP proxy on the test's loop, to cut a service off its database without stopping it.

The shared PostgreSQL must keep running for the other tests, so the role under test reaches
it through this proxy instead, and the proxy fails in one of two ways:

* :meth:`TcpProxy.refuse`: existing connections are reset and new ones refused (the
  listening socket is closed), like a server that went down;
* :meth:`TcpProxy.hang`: connections stay open but no byte passes either way, and new ones
  are accepted and then hang, like a network partition;

and :meth:`TcpProxy.restore` brings it back on the same port (bytes held by a hang are
delivered then, as TCP would after a partition heals).
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import make_url


class TcpProxy:
    def __init__(self, *, host: str | None = None, port: int = 5432, unix_path: str | None = None):
        self._upstream_host = host
        self._upstream_port = port
        self._unix_path = unix_path
        self._server: asyncio.Server | None = None
        self._port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @classmethod
    def for_database(cls, url: str) -> TcpProxy:
        """A proxy to the server of a SQLAlchemy URL (TCP host, or a Unix socket ``?host=``)."""
        parsed = make_url(url)
        socket_dir = parsed.query.get("host")
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):
            port = parsed.port or 5432
            return cls(unix_path=f"{socket_dir}/.s.PGSQL.{port}")
        return cls(host=parsed.host or "127.0.0.1", port=parsed.port or 5432)

    def url_through(self, url: str) -> str:
        """``url`` pointing at the proxy instead of the server."""
        parsed = make_url(url)
        parsed = parsed.set(host="127.0.0.1", port=self._port, query={})
        return parsed.render_as_string(hide_password=False)

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        self._flowing.set()
        await self._close_server()
        self._reset_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults ------------------------------------------------------------------------------

    async def refuse(self) -> None:
        """Reset every connection and refuse new ones."""
        await self._close_server()
        self._reset_connections()

    def hang(self) -> None:
        """Stop passing bytes; connections stay open."""
        self._flowing.clear()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self.start()

    # -- internals ---------------------------------------------------------------------------

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _reset_connections(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()
            if self._unix_path is not None:
                up_reader, upstream_writer = await asyncio.open_unix_connection(self._unix_path)
            else:
                assert self._upstream_host is not None
                up_reader, upstream_writer = await asyncio.open_connection(
                    self._upstream_host, self._upstream_port
                )
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pump(reader, upstream_writer), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    self._writers.discard(end)
                    with contextlib.suppress(Exception):
                        end.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        finally:
            with contextlib.suppress(Exception):
                sink.transport.abort()
