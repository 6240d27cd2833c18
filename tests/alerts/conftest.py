"""A local webhook (an HTTP server on a free loopback port) that records the JSON it receives."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Webhook:
    def __init__(self, server: ThreadingHTTPServer, path: str):
        self.server, self.path, self.posts, self.status = server, path, [], 200

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def texts(self) -> list[str]:
        return [json.dumps(post) for post in self.posts]


@pytest.fixture
def webhook():
    # The path stands for a real webhook's signature: it must never show in an error or a log.
    path = "/hooks/sig-SECRET-4f1d2"
    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == path:
                hook.posts.append(json.loads(body))
            self.send_response(hook.status if self.path == path else 404)
            self.end_headers()
            self.wfile.write(b"1")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(server, path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
