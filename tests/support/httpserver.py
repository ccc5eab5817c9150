"""The lifecycle every stand-in server of the tests shares: a ThreadingHTTPServer on a free loopback
port, served from a daemon thread, stopped by shutdown() + server_close()."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_in_background(server: ThreadingHTTPServer, name: str, *, poll_interval: float = 0.05) -> int:
    """Start `server` in a daemon thread; returns its port. A short poll interval: shutdown() waits for it."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name,
                     daemon=True).start()
    return server.server_address[1]


def stop_server(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, silent, with a helper that answers a JSON body."""

    protocol_version = "HTTP/1.1"
    json_content_type = "application/json"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
