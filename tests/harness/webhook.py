#!/usr/bin/env python3
"""webhook.py — a webhook receiver for the notification tests, on loopback.

    webhook.py DIR

Listens on 127.0.0.1 on a port the kernel picks and writes it to DIR/port once it
accepts connections. Every request is appended to DIR/requests.jsonl as one JSON
object (time, method, path, content_type, status answered, body as text) once the
answer is decided. How it answers is read from DIR/mode before each request:
    absent or "ok"    200
    "fail N"          500, N times (the file is rewritten with N-1, then "ok")
    "hang"            nothing, ever (the connection stays open until the client goes)
Stops on SIGTERM.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
LOCK = threading.Lock()


def next_mode():
    path = os.path.join(DIR, "mode")
    with LOCK:
        try:
            with open(path) as f:
                mode = f.read().strip()
        except FileNotFoundError:
            return "ok"
        if mode.startswith("fail"):
            left = int(mode.split()[1]) if len(mode.split()) > 1 else 1
            with open(path + ".tmp", "w") as f:
                f.write("fail %d\n" % (left - 1) if left > 1 else "ok\n")
            os.rename(path + ".tmp", path)
            return "fail" if left > 0 else "ok"
        return mode or "ok"


def record(handler, status, body):
    rec = {
        "time": time.time(),
        "method": handler.command,
        "path": handler.path,
        "content_type": handler.headers.get("Content-Type"),
        "status": status,
        "body": body.decode("utf-8", "replace"),
    }
    with LOCK:
        with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        mode = next_mode()
        if mode == "hang":
            record(self, 0, body)
            while True:
                time.sleep(3600)
        status = 500 if mode == "fail" else 200
        record(self, status, body)
        answer = b"ok" if status == 200 else b"planned failure"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, fmt, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    port_file = os.path.join(DIR, "port")
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
