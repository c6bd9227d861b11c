"""Serving the app with uvicorn, with a shutdown that answers every request it accepted.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for the requests in flight;
``DrainingServer`` first tells the runner to drain, so those requests are answered within
``shutdown_grace`` seconds (unfinished proofs as errors) rather than cut off. A second SIGINT still
forces uvicorn out at once.

``ServiceThread`` runs the same server on a background thread, for tests and benchmarks that need
the service and its caller in one process.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

import uvicorn
from fastapi import FastAPI

BACKSTOP = 10.0  # seconds past shutdown_grace before uvicorn itself cancels what is left


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown starts the app's drain before it waits for open requests."""

    def __init__(self, app: FastAPI, shutdown_grace: float, log_level: str = "warning"):
        super().__init__(
            uvicorn.Config(
                app,
                lifespan="off",
                access_log=False,
                log_level=log_level,
                timeout_graceful_shutdown=int(shutdown_grace + BACKSTOP),
            )
        )
        self.app = app

    async def shutdown(self, sockets=None) -> None:
        self.app.state.runner.begin_drain()
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn's handlers, without its re-raise of the signal once served: that would kill the
        process before its caller closes the verifier (and its REPL processes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one); raises OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class ServiceThread:
    """``app`` served on 127.0.0.1 from a daemon thread: ``with ServiceThread(app) as url: ...``."""

    def __init__(self, app: FastAPI, shutdown_grace: float = 5.0):
        self.server = DrainingServer(app, shutdown_grace)
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name="prover-service", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def __enter__(self) -> str:
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self.server.started:
            raise RuntimeError("the service thread did not start")
        return self.url

    def stop(self) -> None:
        """Shut down as SIGTERM would (drain, then close), and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(timeout=self.server.config.timeout_graceful_shutdown + 30)
        self.sock.close()

    def __exit__(self, *exc) -> None:
        self.stop()
