"""Azurite (the Azure Storage emulator from npm) on free loopback ports, for tests.

tests/conftest.py wraps it in a session-scoped fixture, e.g.::

    @pytest.fixture(scope="session")
    def azurite():
        server = Azurite()
        yield server
        server.stop()

Tests then pass ``azurite.connection_string`` as ``AzureWebJobsStorage``.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The emulator's fixed, publicly documented development account (not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """A running Azurite process with blob, queue and table endpoints on 127.0.0.1."""

    def __init__(self, *, start_timeout: float = 30.0) -> None:
        """Start Azurite and wait until all three services accept connections."""
        if not AZURITE_BIN.exists():
            # Never skip: a missing emulator means the machine was not set up (`make setup`).
            raise RuntimeError(f"{AZURITE_BIN} is missing; run `npm install --no-audit --no-fund` in {REPO_ROOT}")
        self._workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        self._proc: subprocess.Popen | None = None
        last_error: Exception | None = None
        # Free ports can be taken between probing and binding; a few tries absorb that race.
        for _ in range(3):
            try:
                self._launch(start_timeout)
                return
            except _PortClash as exc:
                last_error = exc
        self.stop()
        raise RuntimeError(f"Azurite could not bind free ports: {last_error}")

    @property
    def connection_string(self) -> str:
        """Connection string with explicit endpoints (the ports are not Azurite's defaults)."""
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        """Stop the process and remove its workspace (idempotent)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _launch(self, timeout: float) -> None:
        self.blob_port, self.queue_port, self.table_port = _distinct_free_ports(3)
        log = open(self._workdir / "azurite.log", "wb")
        self._proc = subprocess.Popen(
            [
                str(AZURITE_BIN), "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
                "--silent", "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
                "--blobPort", str(self.blob_port), "--queuePort", str(self.queue_port),
                "--tablePort", str(self.table_port),
            ],
            # Azurite refuses --location with --inMemoryPersistence; the cwd keeps any stray file in tmp.
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self._workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        waiting = [self.blob_port, self.queue_port, self.table_port]
        while waiting:
            if self._proc.poll() is not None:
                output, rc = self._log_tail(), self._proc.returncode
                self._proc = None
                if "EADDRINUSE" in output:
                    raise _PortClash(output)
                raise RuntimeError(f"Azurite exited with status {rc} during startup:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Azurite not listening after {timeout}s:\n{self._log_tail()}")
            if _accepts(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return (self._workdir / "azurite.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _PortClash(RuntimeError):
    """Azurite lost a race for a port we probed as free."""


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
