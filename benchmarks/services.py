"""Throwaway services for the benchmarks: a free loopback port and a redis-server on it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class ServiceUnavailable(RuntimeError):
    """A service the benchmark needs could not be started (the message says why)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate ``process`` and wait for it (killed after ``timeout_s``)."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def redis_server(folder: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """A redis-server on a free loopback port (no persistence), stopped on exit.

    Args:
        folder: Its working directory.
        timeout_s: How long to wait for its first ``PING``.

    Yields:
        ``127.0.0.1:<port>``.

    Raises:
        ServiceUnavailable: If redis-server is not installed or does not answer.
    """
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                    break
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ServiceUnavailable("redis-server did not answer") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
