#!/usr/bin/env python3
"""Test upstreams for the nginx scenario: one small HTTP server per port, run by systemd.

Usage: nginx-test-upstream.py NAME=PORT[:KIND[:CERT:KEY]] ...   KIND is live (a response that never
ends, like Icecast's) or app (a JSON echo of what the proxy sent, with websocket upgrade; a path
under /files/data/ returns that file of DATA_DIR). With CERT and KEY (PEM files) the port speaks TLS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DATA_DIR = Path("/srv/nginx-test-files")


def make_handler(name: str, kind: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0" if kind == "live" else "HTTP/1.1"

        def log_message(self, *args):  # quiet: systemd's journal is not needed for the tests
            pass

        def do_GET(self):
            if kind == "live":
                self.live()
            elif self.path.startswith("/files/data/"):
                self.data()
            elif self.headers.get("Upgrade", "").lower() == "websocket":
                self.websocket()
            else:
                self.echo()

        def live(self):
            # Like Icecast: no length, the body never ends; a short marker, then a tick a second.
            self.send_response(200)
            self.send_header("Content-Type", "audio/ogg" if self.path.endswith(".ogg") else "video/webm")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                self.wfile.write(f"LIVE {name} {self.path}\n".encode())
                self.wfile.flush()
                tick = 0
                while True:
                    time.sleep(1)
                    tick += 1
                    self.wfile.write(f"tick {tick}\n".encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

        def data(self):
            # Only plain names directly in DATA_DIR: enough for the test, nothing to escape through.
            wanted = self.path.removeprefix("/files/data/")
            file = DATA_DIR / wanted
            if "/" in wanted or not wanted or not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def echo(self):
            tls = isinstance(self.connection, ssl.SSLSocket)
            body = json.dumps({
                "upstream": name,
                "path": self.path,
                "tls": self.connection.version() if tls else None,
                "sni": getattr(self.connection, "sni", None),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def websocket(self):
            key = self.headers.get("Sec-WebSocket-Key", "")
            digest = hashlib.sha1((key + WS_GUID).encode()).digest()  # noqa: S324 - RFC 6455 mandates SHA-1 here
            accept = base64.b64encode(digest).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            # After the upgrade the connection is a byte pipe: echo what comes, prefixed by our name.
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(f"{name}:".encode() + data)
            self.close_connection = True

    return Handler


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)

    def remember_sni(tls_socket, server_name, _context):
        tls_socket.sni = server_name  # the name the proxy asked for, echoed back to the test

    context.sni_callback = remember_sni
    return context


def main(argv: list[str]) -> None:
    threads = []
    for spec in argv:
        name, _, rest = spec.partition("=")
        port, kind, cert, key = [*rest.split(":"), "", "", ""][:4]
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), make_handler(name, kind or "app"))
        if cert:
            server.socket = tls_context(cert, key).wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])
