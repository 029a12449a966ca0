"""A real HTTP server on 127.0.0.1 that misbehaves on request, for download tests."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves ``content`` at /NAME where NAME picks a behaviour:
    ok, norange, flaky (first 2 requests 503), stall (first request stalls midway),
    truncate (first request closes early), wrong (other bytes), range416 (416 on any Range),
    slow (small chunks with pauses), down (always 500), more (announces and sends 1 MiB more),
    endless (no Content-Length; the content, then zeros until the client hangs up)."""

    def __init__(self, content):
        self.content = content
        self.requests = []   # (path, Range header)
        self.counts = {}
        self.sent = 0        # bytes written by "endless"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.strip("/").split("/")[0]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                n = server.counts[name] = server.counts.get(name, 0) + 1
                body, start = server.content, 0
                if name == "down" or (name == "flaky" and n <= 2):
                    return self.send_error(503 if name == "flaky" else 500)
                if name == "wrong":
                    body = bytes(b ^ 0xFF for b in body)
                if name == "more":
                    body = body + bytes(1 << 20)
                if name == "endless":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        self.wfile.write(body)
                        server.sent += len(body)
                        while True:
                            self.wfile.write(bytes(1 << 16))
                            server.sent += 1 << 16
                    except OSError:
                        return
                if rng and name == "range416":
                    return self.send_error(416)
                if rng and name not in ("norange",):
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                try:
                    if name in ("stall", "truncate") and n == 1:
                        self.wfile.write(part[:len(part) // 2])
                        self.wfile.flush()
                        if name == "stall":
                            time.sleep(2.0)
                        return  # close early
                    if name == "slow":
                        for i in range(0, len(part), 4096):
                            self.wfile.write(part[i:i + 4096])
                            time.sleep(0.005)
                        return
                    self.wfile.write(part)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
