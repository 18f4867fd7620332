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


@dataclass
class LostResponseProxy:
    """A raw TCP relay in front of an S3 server that, once armed, lets the next request containing ``marker``
    reach the server and then drops the server's answer and the connection: the write lands, the client never
    hears so, and botocore retries it."""

    upstream: tuple[str, int]
    marker: bytes = b""
    armed: bool = False
    swallowed: int = 0
    listener: socket.socket = field(default_factory=socket.socket)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        """Lose the answer to the next request whose bytes contain ``marker``."""
        self.marker, self.armed = marker, True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            lose = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, lose), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, lose), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, lose: threading.Event) -> None:
        try:
            while chunk := client.recv(65536):
                if self.armed and self.marker in chunk:
                    self.armed = False
                    lose.set()
                server.sendall(chunk)
        except OSError:
            pass

    def _downstream(self, server: socket.socket, client: socket.socket, lose: threading.Event) -> None:
        seen = b""
        try:
            while chunk := server.recv(65536):
                if not lose.is_set():
                    client.sendall(chunk)
                    continue
                seen += chunk  # the answer to the marked request: dropped
                if any(f"HTTP/1.1 {code}".encode() in seen for code in range(2, 6)):
                    self.swallowed += 1
                    break  # the server has answered (not just "100 Continue"): hang up on the client
        except OSError:
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.listener.close()
