"""Real faults on the wire. FaultyProxy: a TCP proxy in front of the Prefect server that answers ``500`` to every
request whose path starts with a given prefix (and relays everything else, websockets included, untouched).
S3FaultProxy: a relay in front of S3 that loses, withholds, holds or cuts one chosen request."""

from __future__ import annotations

import contextlib
import re
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
class S3FaultProxy:
    """A raw TCP relay in front of an S3 server that, once armed, does one thing to the next request whose bytes
    match a pattern, then sets ``tripped``:

    - ``lose``: the request reaches the server; its answer and the connection are dropped (botocore retries it);
    - ``land``: the request reaches the server and its answer is withheld, the client left waiting (a write that
      landed in a process about to be killed);
    - ``hold``: the request never reaches the server, the client left waiting;
    - ``down``: the request never reaches the server, and from then on every connection is cut (S3 is down)
      until :meth:`up`.
    """

    upstream: tuple[str, int]
    pattern: bytes = b""
    action: str = ""
    swallowed: int = 0
    is_down: bool = False
    withheld_action: str = ""
    tripped: threading.Event = field(default_factory=threading.Event)
    listener: socket.socket = field(default_factory=socket.socket)
    open_sockets: list[socket.socket] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, pattern: bytes, action: str = "lose") -> None:
        """Do ``action`` to the next request whose bytes match the regular expression ``pattern``."""
        assert action in ("lose", "land", "hold", "down")
        self.tripped.clear()
        self.pattern, self.action = pattern, action

    def up(self) -> None:
        """S3 answers again."""
        self.is_down = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.is_down:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            self.open_sockets += [client, server]
            withhold = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, withhold), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, withhold), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, withhold: threading.Event) -> None:
        try:
            while chunk := client.recv(65536):
                if self.action and re.search(self.pattern, chunk):
                    action, self.action = self.action, ""
                    if action in ("hold", "down"):
                        if action == "down":
                            self._go_down()
                        self.tripped.set()
                        return  # never forwarded
                    withhold.set()
                    self.withheld_action = action
                server.sendall(chunk)
        except OSError:
            pass

    def _go_down(self) -> None:
        self.is_down = True
        for sock in self.open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _downstream(self, server: socket.socket, client: socket.socket, withhold: threading.Event) -> None:
        seen = b""
        try:
            while chunk := server.recv(65536):
                if not withhold.is_set():
                    client.sendall(chunk)
                    continue
                seen += chunk  # the answer to the marked request: withheld
                if any(f"HTTP/1.1 {code}".encode() in seen for code in range(2, 6)):
                    self.swallowed += 1
                    self.tripped.set()
                    if self.withheld_action == "land":
                        return  # the client waits for an answer that never comes
                    break  # lose: hang up on the client
        except OSError:
            pass
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """No new connections (the open ones carry on until their clients hang up)."""
        self.listener.close()
