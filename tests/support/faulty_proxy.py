"""A real fault for one API route: a TCP proxy in front of the Prefect server that answers ``500`` to every
request whose path starts with a given prefix (and relays everything else, websockets included, untouched)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class FaultyProxy:
    """Listens on 127.0.0.1:``port``; ``refused`` counts the requests it failed."""

    upstream: tuple[str, int]
    failing_prefix: bytes
    listener: socket.socket = field(default_factory=socket.socket)
    refused: int = 0

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def serve(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        threading.Thread(target=_pump, args=(server, client), daemon=True).start()
        buffer = b""
        try:
            while True:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                head = buffer[:head_end].decode("latin-1")
                request_line, *header_lines = head.split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
                if headers.get("upgrade", "").lower() == "websocket":  # from here on, raw frames both ways
                    server.sendall(buffer)
                    _pump(client, server)
                    return
                length = int(headers.get("content-length", "0"))
                while len(buffer) < head_end + 4 + length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                request, buffer = buffer[: head_end + 4 + length], buffer[head_end + 4 + length :]
                path = request_line.split(" ")[1].encode()
                if path.startswith(self.failing_prefix):
                    self.refused += 1
                    client.sendall(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
                        b'content-length: 28\r\nconnection: close\r\n\r\n{"detail": "artifacts down"}'
                    )
                    return
                server.sendall(request)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                client.close()
            with contextlib.suppress(OSError):
                server.close()

    def close(self) -> None:
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def failing_route(api_url: str, prefix: str) -> Iterator[tuple[FaultyProxy, str]]:
    """A proxy for ``api_url`` (http://127.0.0.1:PORT/api) failing ``/api<prefix>``; yields it and its API URL."""
    host_port = api_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    proxy = FaultyProxy((host, int(port)), f"/api{prefix}".encode())
    proxy.serve()
    try:
        yield proxy, f"http://127.0.0.1:{proxy.port}/api"
    finally:
        proxy.close()
