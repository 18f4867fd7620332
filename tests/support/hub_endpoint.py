"""A Hugging Face–compatible file endpoint on 127.0.0.1: what ``huggingface_hub.hf_hub_download`` asks of the hub
(``HEAD`` then ``GET`` on ``/<repo>/resolve/<revision>/<file>``, answered with the commit, ETag and size headers
the hub sends), serving files a test puts in it. Point ``HF_ENDPOINT`` at :attr:`HubEndpoint.url`."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubEndpoint:
    """Repositories of files, each repository at one commit (a new :meth:`publish` makes a new commit unless
    ``commit`` is given: a mirror that changes a file under the same commit)."""

    def __init__(self) -> None:
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path): what the client asked for
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                endpoint._answer(self, body=False)

            def do_GET(self) -> None:
                endpoint._answer(self, body=True)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, repo_id: str, files: dict[str, bytes], commit: str | None = None) -> str:
        """Serve ``files`` as ``repo_id``'s ``main``; returns the commit."""
        commit = commit or hashlib.sha1(repr(sorted((k, v) for k, v in files.items())).encode()).hexdigest()
        self.repos[repo_id] = (commit, dict(files))
        return commit

    def stop(self) -> None:
        """Close the port: later requests are refused."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((handler.command, handler.path))
        repo_id, _, rest = handler.path.split("?")[0].lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        commit, files = self.repos.get(repo_id, (None, {}))
        if commit is None or revision not in ("main", commit) or filename not in files:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound" if commit else "RepoNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = files[filename]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
