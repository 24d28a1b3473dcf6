#!/usr/bin/python3 -I
"""A small HTTP API service for lab controllers (stdlib only; runs under `/usr/bin/python3 -I`).

`GET /health` answers `ok`; any other GET answers {"host": ..., "pid": ...} after `--delay-ms`
of simulated work. Connections are HTTP/1.1 keep-alive. On SIGTERM the service stops accepting
and closes idle keep-alive connections; then `--on-stop finish` lets in-flight requests finish
(answering them with `Connection: close`) while `--on-stop drop` cuts them, as many real daemons
do when stopped mid-request. Either way only a load balancer that drained the server first sees
no failed request. It then removes its pidfile and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType


class ApiServer(http.server.ThreadingHTTPServer):
    """Tracks open connections so a stop can close the idle ones and wait for the busy ones."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], name: str, delay: float, drop_in_flight: bool = False
    ) -> None:
        super().__init__(address, ApiHandler)
        self.name = name
        self.delay = delay
        self.drop_in_flight = drop_in_flight
        self.stopping = False
        self.lock = threading.Lock()
        self.idle: set[socket.socket] = set()
        self.open: set[socket.socket] = set()

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        # A peer that resets its connection (a killed load balancer, a cut request) is not news.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def mark_idle(self, conn: socket.socket) -> bool:
        """Record `conn` as waiting for a request; False (close it) once the server is stopping."""
        with self.lock:
            if self.stopping:
                return False
            self.idle.add(conn)
            return True

    def mark_busy(self, conn: socket.socket) -> None:
        with self.lock:
            self.idle.discard(conn)

    def stop(self) -> None:
        """Stop accepting, drop idle keep-alive connections (and in-flight ones when dropping)."""
        self.shutdown()
        with self.lock:
            self.stopping = True
            idle = list(self.open if self.drop_in_flight else self.idle)
            self.idle.clear()
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        # Joins every handler thread (block_on_close): in-flight requests finish first.
        self.server_close()


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer
    # Headers and body in one packet: without it each reply waits on delayed ACKs (~40 ms).
    disable_nagle_algorithm = True
    # A peer that stops talking cannot hold a thread forever.
    timeout = 120

    def handle_one_request(self) -> None:
        if not self.server.mark_idle(self.connection):
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            self.server.mark_busy(self.connection)

    def parse_request(self) -> bool:
        # The request line has arrived: from here on this connection is busy.
        self.server.mark_busy(self.connection)
        return super().parse_request()

    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(b"ok\n", "text/plain")
            return
        if self.server.delay > 0:
            time.sleep(self.server.delay)
        body = json.dumps({"host": self.server.name, "pid": os.getpid()}).encode() + b"\n"
        self.reply(body, "application/json")

    def do_HEAD(self) -> None:
        self.reply(b"", "text/plain")

    def reply(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopping:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Per-request logs would cost more than the requests themselves under load.
        return


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {text!r}")
    return host, int(port)


def write_pidfile(path: str) -> None:
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    tmp.replace(path)


def remove_pidfile(path: str) -> None:
    pidfile = Path(path)
    with contextlib.suppress(OSError):
        if pidfile.read_text(encoding="ascii").strip() == str(os.getpid()):
            pidfile.unlink()  # only our own: a newer instance may already own the file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lab HTTP API service.")
    parser.add_argument("--bind", type=parse_bind, default=("127.0.0.1", 8080), metavar="ADDR:PORT")
    parser.add_argument("--delay-ms", type=int, default=0, metavar="N")
    parser.add_argument("--pidfile", default=None, metavar="PATH")
    parser.add_argument("--name", default=socket.gethostname(), metavar="NAME")
    parser.add_argument(
        "--on-stop",
        choices=("finish", "drop"),
        default="finish",
        help="on SIGTERM: let in-flight requests finish, or cut them",
    )
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        server = ApiServer(
            args.bind, args.name, max(args.delay_ms, 0) / 1000.0, args.on_stop == "drop"
        )
    except OSError as exc:
        print(f"lab_api: cannot listen on {args.bind[0]}:{args.bind[1]}: {exc}", file=sys.stderr)
        return 1
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    serving.start()
    # Written only once the socket listens, so the pidfile's existence means "ready".
    if args.pidfile:
        write_pidfile(args.pidfile)
    try:
        while not stop_requested.wait(1.0):
            pass
        server.stop()
        serving.join()
    finally:
        if args.pidfile:
            remove_pidfile(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
