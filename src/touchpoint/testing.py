"""Helpers for tests and benchmarks that need real processes: `touchpoint serve`,
`touchpoint worker`, and a private `redis-server` that a fault test may kill and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _touchpoint_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from touchpoint.cli.main import main; main()", *args]


class _TouchpointProcess:
    """A `touchpoint` command as a subprocess on a data directory, its output in a log file
    beside it; stopped with SIGTERM (then SIGKILL) or killed outright."""

    def __init__(self, data_dir: Path, log_name: str, env: dict[str, str] | None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.log_path = data_dir.parent / log_name
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, *args: str) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                _touchpoint_command(*args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush, no leaving the group (crash tests)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


class ServerProcess(_TouchpointProcess):
    """`touchpoint serve` as a subprocess on a free port, as production runs it."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        super().__init__(data_dir, f"server-{self.port}.log", env)
        self.args = args
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self._spawn(
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--log-format",
            "text",
            "--log-level",
            "warning",
            *self.args,
        )
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer /healthz in {timeout:.0f} s")


class WorkerProcess(_TouchpointProcess):
    """`touchpoint worker` as a subprocess: one member of the workspace's processor group."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, f"worker-{id(self):x}.log", env)
        self.args = args

    def start(self) -> WorkerProcess:
        self._spawn(
            "worker",
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "text",
            "--log-level",
            "info",
            *self.args,
        )
        return self


class RedisServer:
    """A private `redis-server` on a free port, persisting to `directory` with an fsync'd
    append-only file, so a test can kill it and start it again on the same data."""

    def __init__(self, directory: Path, *, binary: str = "redis-server") -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.directory),
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            command, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server (what it acknowledged is in its fsync'd append-only file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
