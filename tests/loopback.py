"""A loopback HTTP server with fault injection, shared by the download, LibriSpeech and download_weights tests.

`LoopbackServer` serves `state.files` on 127.0.0.1 and can drop a connection
part-way, answer 503 first, flip a byte, send an HTML page, ignore Range
headers, or drip the body one byte at a time; `state.log` records every request
with its Range header.
"""

import hashlib
import http.server
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

PAYLOAD = random.Random(0).randbytes(3_000_000)  # three chunks and a bit
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
DRIP_LIMIT_S = 10.0  # a dripping answer ends after this long, so a client without a stall timeout fails, not hangs


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []  # (path with query, Range header)
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the connection is cut (once)
        self.fail_first: dict[str, int] = {}  # path -> number of 503 answers before the real one
        self.corrupt: set[str] = set()  # paths served with one byte flipped
        self.html: dict[str, bytes] = {}  # paths answered with this HTML page
        self.html_as_binary = False  # send the HTML pages as application/octet-stream
        self.honour_range = True
        self.drip: dict[str, float] = {}  # path -> seconds between single bytes of the body (for DRIP_LIMIT_S)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: _State = self.server.state
        path = urlsplit(self.path).path
        state.log.append((self.path, self.headers.get("Range")))
        if state.fail_first.get(path, 0) > 0:
            state.fail_first[path] -= 1
            return self._reply(503, b"busy", "text/plain")
        if path in state.html:
            kind = "application/octet-stream" if state.html_as_binary else "text/html; charset=utf-8"
            return self._reply(200, state.html[path], kind)
        data = state.files.get(path)
        if data is None:
            return self._reply(404, b"not found", "text/plain")
        if path in state.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start = 0
        range_header = self.headers.get("Range")
        if range_header and state.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._reply(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if path in state.drip:
            return self._drip(body, state.drip[path])
        cut = state.drop_after.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True  # the client sees the connection end before Content-Length
            return
        self.wfile.write(body)

    def _drip(self, body: bytes, interval: float) -> None:
        self.close_connection = True
        end = time.monotonic() + DRIP_LIMIT_S
        for i in range(len(body)):
            if time.monotonic() > end:
                return
            try:
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
            except OSError:  # the client hung up: what a stall timeout does
                return
            time.sleep(interval)

    def _reply(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up early (an HTML or size check) is expected here


class LoopbackServer:
    def __init__(self) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = _State()
        self.state: _State = self.httpd.state
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.state.files["/file.bin"] = PAYLOAD

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def leftovers(folder: Path) -> list[str]:
    """The names a download or extraction left in `folder`, lock files aside."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))
