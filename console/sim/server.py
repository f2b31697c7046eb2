"""Both simulators served over real HTTP on loopback: `SimServers`, and `ml-console sim`.

`SimServers` runs the Expensify and IFS simulators with uvicorn, each in a background thread
on a socket bound before the simulator is built (so the IFS simulator knows its own absolute
base URL for `@odata.nextLink`, even on a port picked by the OS). It returns only once both
listen, and shuts both down together.

`ml-console sim` prints one JSON line on stdout once both listen, logs to stderr only, and
runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import uvicorn

from console.exitcodes import ExitCode
from console.sim.dataset import Dataset, DatasetError, load_dataset
from console.sim.expensify_app import ExpensifySim, ExpensifySimSettings
from console.sim.ifs_app import IfsSim, IfsSimSettings

log = logging.getLogger("console.sim.server")

_POLL_S = 0.005  # startup readiness check interval


class _Served:
    """One uvicorn server in its own thread, on a socket we bound ourselves."""

    def __init__(self, name: str, app: Any, sock: socket.socket, access_log: bool) -> None:
        self.name = name
        self.sock = sock
        config = uvicorn.Config(
            app,
            # Logging is the caller's: uvicorn's loggers propagate to whatever the process set
            # up (stderr for `ml-console sim`, pytest's capture in tests), never to stdout.
            log_config=None,
            access_log=access_log,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name=f"sim-{name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def request_stop(self) -> None:
        self.server.should_exit = True

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            # Open keep-alive connections or a slow handler: stop waiting for them.
            self.server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket on host:port (port 0: any free port). uvicorn makes it listen."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class SimServers:
    """The Expensify and IFS simulators over a dataset, listening on loopback.

    Use as a context manager (or start()/stop()). `fast=True` stands for both simulators'
    fast settings (no rate limits, no latency) where no explicit settings are given.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        host: str = "127.0.0.1",
        expensify_port: int = 0,
        ifs_port: int = 0,
        fast: bool = False,
        expensify_settings: ExpensifySimSettings | None = None,
        ifs_settings: IfsSimSettings | None = None,
        seed: int = 0,
        access_log: bool = False,
        startup_timeout_s: float = 15.0,
    ) -> None:
        if expensify_settings is None and fast:
            expensify_settings = ExpensifySimSettings.fast()
        if ifs_settings is None and fast:
            ifs_settings = IfsSimSettings.fast()
        self._host = host
        self._startup_timeout_s = startup_timeout_s
        expensify_sock = _bind(host, expensify_port)
        try:
            ifs_sock = _bind(host, ifs_port)
        except OSError:
            expensify_sock.close()
            raise
        self.expensify_url = _base_url(host, expensify_sock)
        self.ifs_url = _base_url(host, ifs_sock)
        self.expensify = ExpensifySim(dataset, expensify_settings, seed=seed)
        self.ifs = IfsSim(dataset, ifs_settings, seed=seed, base_url=self.ifs_url)
        self._served = [
            _Served("expensify", self.expensify.app, expensify_sock, access_log),
            _Served("ifs", self.ifs.app, ifs_sock, access_log),
        ]
        self._running = False

    def __repr__(self) -> str:
        return f"SimServers(expensify={self.expensify_url!r}, ifs={self.ifs_url!r})"

    @property
    def alive(self) -> bool:
        """Both servers are still running."""
        return all(s.alive for s in self._served)

    def start(self) -> SimServers:
        for s in self._served:
            s.start()
        self._running = True
        deadline = time.monotonic() + self._startup_timeout_s
        try:
            while not all(s.started for s in self._served):
                dead = [s.name for s in self._served if not s.alive]
                if dead:
                    raise RuntimeError(f"simulator server failed to start: {', '.join(dead)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"simulators not listening after {self._startup_timeout_s:g} s"
                    )
                time.sleep(_POLL_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._running:
            for s in self._served:
                s.sock.close()
            return
        self._running = False
        for s in self._served:  # both at once: shutdown takes a tick each
            s.request_stop()
        for s in self._served:
            s.join(timeout_s)

    def __enter__(self) -> SimServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------- ml-console sim
def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run_sim_command(args: argparse.Namespace) -> int:
    """`ml-console sim`: serve both simulators until SIGTERM/SIGINT. Returns the exit code."""
    _configure_logging()
    data = getattr(args, "data", None)
    try:
        if data:
            dataset = load_dataset(data)
        else:
            from console.sim.demo import demo_dataset

            dataset = demo_dataset()
    except DatasetError as err:
        print(str(err), file=sys.stderr, flush=True)
        return ExitCode.USAGE

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    host = getattr(args, "host", None) or "127.0.0.1"
    try:
        try:
            servers = SimServers(
                dataset,
                host=host,
                expensify_port=getattr(args, "expensify_port", 0) or 0,
                ifs_port=getattr(args, "ifs_port", 0) or 0,
                fast=bool(getattr(args, "fast", False)),
                access_log=True,
            )
        except OSError as err:
            print(f"cannot listen on {host}: {err.strerror or err}", file=sys.stderr, flush=True)
            return ExitCode.USAGE
        with servers:
            log.info("Expensify simulator on %s", servers.expensify_url)
            log.info("IFS Cloud simulator on %s (realm %s)", servers.ifs_url, servers.ifs.realm)
            urls = {"expensify": servers.expensify_url, "ifs": servers.ifs_url}
            sys.stdout.write(json.dumps(urls) + "\n")
            sys.stdout.flush()
            while not stop.wait(0.5):
                if not servers.alive:
                    log.error("a simulator server stopped unexpectedly")
                    return ExitCode.UNEXPECTED
        return ExitCode.OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
