"""Issue #20, class 3: a Dask set-up that cannot work is one line naming the address and what was
found there, exit 2, within 5 seconds: a closed port, a live server of another kind (silent, or
speaking another protocol), a scheduler file that is not one. Local sockets only (127.0.0.1)."""

import json
import socket
import threading
import time

import numpy as np
import pytest
from commands import run

pytest.importorskip("distributed")

SECONDS = 5


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


class FakeServer:
    """A live TCP server on 127.0.0.1 that greets with ``greeting`` (None: stays silent, as HTTP
    servers do) and keeps the connection open until the test ends; b"": hangs up 0.3 s after it
    accepts, without a word (timed from each accept: a loaded machine may accept late)."""

    def __init__(self, greeting: bytes | None):
        self.greeting, self.listener = greeting, socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections, self.stopped = [], threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            self.connections.append(connection)
            if self.greeting == b"":
                threading.Timer(0.3, connection.close).start()
            elif self.greeting is not None:
                connection.sendall(self.greeting)

    def close(self):
        self.stopped.set()
        for connection in self.connections:
            connection.close()
        self.listener.close()


@pytest.fixture
def signal(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(8))
    return tmp_path / "x.npy"


def refused_fast(signal, *options) -> str:
    started = time.monotonic()
    result = run("convolve", signal, "-k", "box:3", "-o", signal.with_name("y.npy"), *options)
    assert time.monotonic() - started < SECONDS, result.output
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), result.output
    assert not signal.with_name("y.npy").exists()
    return lines[0]


def test_a_closed_port(signal):
    port = closed_port()
    line = refused_fast(signal, "--scheduler-address", f"tcp://127.0.0.1:{port}")
    assert f"tcp://127.0.0.1:{port}" in line and "connection refused" in line


@pytest.mark.parametrize("greeting, found", [
    (None, "sent nothing"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "answered 'SSH-2.0-OpenSSH_"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered 'HTTP/1.1 400"),
    (b"", "closed the connection"),
])
def test_a_live_server_of_another_kind(signal, greeting, found):
    server = FakeServer(greeting)
    try:
        address = f"tcp://127.0.0.1:{server.port}"
        line = refused_fast(signal, "--scheduler-address", address)
        assert address in line and found in line, line
    finally:
        server.close()


@pytest.mark.parametrize("content, found", [
    (b"\x00\xff garbage \x10", "not a Dask scheduler file"),
    (b"{not json", "not a Dask scheduler file"),
    (json.dumps([1, 2]).encode(), 'no "address"'),
    (json.dumps({"address": 42}).encode(), 'no "address"'),
])
def test_a_garbage_scheduler_file(signal, tmp_path, content, found):
    (tmp_path / "scheduler.json").write_bytes(content)
    line = refused_fast(signal, "--scheduler-file", tmp_path / "scheduler.json")
    assert "scheduler.json" in line and found in line, line


def test_a_scheduler_file_naming_a_closed_port(signal, tmp_path):
    port = closed_port()
    document = {"type": "Scheduler", "address": f"tcp://127.0.0.1:{port}"}
    (tmp_path / "scheduler.json").write_text(json.dumps(document))
    line = refused_fast(signal, "--scheduler-file", tmp_path / "scheduler.json")
    assert f"tcp://127.0.0.1:{port}" in line and "connection refused" in line


@pytest.mark.parametrize("scheme", ["tls", "ws", "wss"])
def test_a_closed_port_behind_a_client_first_scheme(signal, scheme):
    """TLS and WebSocket clients speak first, so no greeting is awaited; the connection still is."""
    port = closed_port()
    line = refused_fast(signal, "--scheduler-address", f"{scheme}://127.0.0.1:{port}")
    assert f"{scheme}://127.0.0.1:{port}" in line and "connection refused" in line


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "ws://127.0.0.1:port"])
def test_an_address_without_a_usable_port(signal, address):
    line = refused_fast(signal, "--scheduler-address", address)
    assert address in line and "host:port" in line


@pytest.mark.parametrize("option", ["--scheduler-address", "--scheduler-file"])
def test_an_empty_scheduler_option_is_refused_not_run_elsewhere(signal, option):
    """An unset variable in a script (--scheduler-address "$ADDR") must not quietly run the batch
    on this machine's threads."""
    line = refused_fast(signal, option, "")
    assert f"{option} is empty" in line
