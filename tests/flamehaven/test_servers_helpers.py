"""TcpProxy (the stand-in for "Redis goes away and comes back") on an echo server."""

import socket
import socketserver
import threading

import pytest

from tests.servers import TcpProxy, closed_port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo_server):
    proxy = TcpProxy(*echo_server).start()
    yield proxy
    proxy.stop()


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=2)


def echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def assert_cut(sock: socket.socket) -> None:
    """The connection fails now (reset or end of stream), not at the timeout."""
    try:
        sock.sendall(b"ping")
        data = sock.recv(16)
    except (ConnectionResetError, BrokenPipeError):
        return
    assert data == b""


def test_forwards_both_ways(proxy):
    with connect(proxy) as one, connect(proxy) as two:
        assert echo(one, b"ping") == b"ping"
        assert echo(two, b"x" * 200_000) == b"x" * 200_000
        assert echo(one, b"again") == b"again"


def test_stop_cuts_live_connections_and_refuses_new_ones(proxy):
    with connect(proxy) as client:
        assert echo(client, b"ping") == b"ping"
        proxy.stop()
        assert_cut(client)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)


def test_start_again_on_the_same_port(proxy):
    port = proxy.port
    with connect(proxy) as client:
        assert echo(client, b"one") == b"one"
        proxy.stop()
        proxy.start()
    assert proxy.port == port
    with connect(proxy) as client:
        assert echo(client, b"two") == b"two"


def test_target_down_closes_the_client():
    with (
        closed_port() as port,
        TcpProxy("127.0.0.1", port) as proxy,
        connect(proxy) as client,
    ):
        assert_cut(client)
