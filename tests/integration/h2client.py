"""Hand-driven TLS + HTTP/2 gRPC clients for tests that need what grpcio
will not do: stop a call between its body and its END_STREAM, read the
frames themselves, break the protocol's rules (test_hostile.py)."""
import os
import socket
import ssl
import tempfile
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def tls_context(gw, ident=None, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=gw.bundle.decode())
    ctx.set_alpn_protocols(["h2"])
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ident is not None:
        # ssl reads the chain and key from files only: a private scratch dir.
        with tempfile.TemporaryDirectory(prefix="tsr-h2client-") as d:
            for name, data in (("c.pem", ident.chain_pem), ("c.key", ident.key_pem)):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(os.path.join(d, "c.pem"), os.path.join(d, "c.key"))
    return ctx


def tls_connect(gw, ident=None):
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s = tls_context(gw, ident).wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    return s


def grpc_frame(body, length=None):
    return b"\x00" + (len(body) if length is None else length).to_bytes(4, "big") + body


class H2:
    """A conforming HTTP/2 client (python3-h2) for gRPC calls grpcio will
    not make."""

    def __init__(self, gw, ident=None, window=None):
        self.sock = tls_connect(gw, ident)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.sock.sendall(self.conn.data_to_send())
        self.streams = {}
        self.pending = b""

    def call(self, path, chunks, end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", path),
                                     (":authority", "localhost"),
                                     ("content-type", "application/grpc"), ("te", "trailers")],
                               end_stream=not chunks and end_stream)
        for i, c in enumerate(chunks):
            self.conn.send_data(sid, c, end_stream=end_stream and i == len(chunks) - 1)
        self.sock.sendall(self.conn.data_to_send())
        self.streams[sid] = {"headers": {}, "data": b"", "ended": False}
        return sid

    def _receive(self, data):
        """Events of every complete frame, fed one frame at a time: python-h2
        refuses a frame after the peer's GOAWAY (RFC 9113 allows frames on
        the streams it covers), which must not lose the frames before it."""
        self.pending += data
        events = []
        while len(self.pending) >= 9:
            n = 9 + int.from_bytes(self.pending[:3], "big")
            if len(self.pending) < n:
                break
            one, self.pending = self.pending[:n], self.pending[n:]
            try:
                events += self.conn.receive_data(one)
            except h2.exceptions.ProtocolError:
                pass
        return events

    def wait(self, sid, timeout=10):
        st = self.streams[sid]
        self.sock.settimeout(0.2)
        end = time.monotonic() + timeout
        while not st["ended"] and time.monotonic() < end:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                break
            for ev in self._receive(d):
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    s["headers"].update(dict(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    s["data"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    s["ended"] = True
            try:
                self.sock.sendall(self.conn.data_to_send())
            except OSError:
                # The server may close right after the answer (a connection
                # whose certificate was revoked closes at its next tick): the
                # answer is what the caller waits for, not our acknowledgement.
                if not st["ended"]:
                    raise
        return st

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def end(self, sid):
        """Half-close a call opened with end_stream=False."""
        self.conn.end_stream(sid)
        self.sock.sendall(self.conn.data_to_send())
