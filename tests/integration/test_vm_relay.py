"""tessera-vm-relay (drivers/vm/relay/), the per-connection forward QEMU runs
for the vm driver's `network: gateway`: its stdin/stdout is the guest's
connection (a socketpair here, as QEMU's slirp gives it), it connects to the
gateway and copies both ways until either side closes; at most 64 at once
per VM (the sandbox directory is its working directory)."""
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

import drvtest
from gwtest import wait_for

RELAY = os.path.join(drvtest.BUILD, "bin", "tessera-vm-relay")
SID = "3f1c2a9e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"


class Echo:
    """A loopback server that echoes and counts its connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.conns = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    def echo(self, c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        self.closed += 1
        c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="tsr-relay-")
    echo = Echo()
    procs = []
    yield d, echo, procs
    for p, s in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        s.close()
    echo.close()
    shutil.rmtree(d, ignore_errors=True)


def relay(env, addr=None):
    d, echo, procs = env
    mine, theirs = socket.socketpair()
    p = subprocess.Popen([RELAY, addr or "127.0.0.1:%d" % echo.port, SID], stdin=theirs,
                         stdout=theirs, stderr=theirs, cwd=d)
    theirs.close()
    procs.append((p, mine))
    mine.settimeout(10)
    return p, mine


def test_refusals(env):
    d, echo, _ = env
    # Wrong arguments, and a gateway that does not answer: exit 1 at once,
    # nothing written to the guest's side.
    for args in ([], ["127.0.0.1:1"], ["nohost", SID], ["127.0.0.1:http", SID]):
        r = subprocess.run([RELAY] + args, stdin=subprocess.DEVNULL, capture_output=True,
                           cwd=d, timeout=20)
        assert (r.returncode, r.stdout, r.stderr) == (1, b"", b""), args
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    p, s = relay(env, "127.0.0.1:%d" % port)
    assert p.wait(20) == 1
    assert s.recv(10) == b""


def test_copies_both_ways_and_ends_with_either_side(env):
    d, echo, _ = env
    p, s = relay(env)
    payload = os.urandom(300000)
    threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
    got = b""
    while len(got) < len(payload):
        got += s.recv(65536)
    assert got == payload
    assert echo.accepted == 1
    s.shutdown(socket.SHUT_WR)  # the guest closes: the relay ends and closes the gateway's side
    assert p.wait(10) == 0
    wait_for("the gateway's side to close", lambda: echo.closed == 1, timeout=10, every=0.02)

    # The gateway closes first: the guest sees the end, the relay exits.
    p, s = relay(env)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    wait_for("the connection", lambda: len(echo.conns) == 2, timeout=10, every=0.02)
    echo.conns[1].shutdown(socket.SHUT_RDWR)
    assert p.wait(10) == 0
    assert s.recv(10) == b""
    assert os.listdir(d) == ["relay.lock"]


def test_at_most_64_per_vm(env):
    d, echo, _ = env
    live = []
    for _ in range(64):
        p, s = relay(env)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        live.append((p, s))
    assert echo.accepted == 64
    p, s = relay(env)
    assert p.wait(10) == 1  # every slot taken: not even a connection to the gateway
    assert echo.accepted == 64
    live[0][1].close()
    assert live[0][0].wait(10) == 0
    p, s = relay(env)
    s.sendall(b"pong")
    assert s.recv(4) == b"pong"
    wait_for("the 65th connection", lambda: echo.accepted == 65, timeout=5, every=0.02)
