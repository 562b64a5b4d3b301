"""A fake Docker Engine on a unix socket that replays a recorded exchange
(tests/data/docker/*.json) and checks every request the driver sends.

A recording is {"exchanges": [{"request": {...}, "response": {...}}, ...]}:

request:  method, path (without the query), query (dict, compared exactly),
          content_type, json (expected subset of the body: objects compare
          key by key, lists and scalars exactly), json_absent (top-level keys
          that must not be there), tar (the archive's entries, in order),
          empty_body (true: nothing sent).
response: status, json (body), raw (body text), raw_hex (body bytes, e.g. a
          multiplexed log stream), huge (N bytes of junk), delay (seconds
          before answering), headers (extra).

Strings in a recording may hold {placeholders} filled in by the test
({api} is the negotiated version prefix, e.g. v1.43).

The engine answers the unversioned `GET /version` itself, outside the
recording, with `version` (default: Docker 24.0.7, API 1.43, oldest 1.12) and
counts those requests in `version_requests`: the driver negotiates its API
version there first.

Independently of the recording, no byte string in `secrets` may appear in a
request line, a header, or any body but the archive upload's."""
import http.server
import io
import json
import os
import socketserver
import tarfile
import threading
import time
import urllib.parse

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "docker")


def load(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def substitute(obj, subst):
    if isinstance(obj, str):
        for k, v in subst.items():
            obj = obj.replace("{" + k + "}", v)
        return obj
    if isinstance(obj, list):
        return [substitute(x, subst) for x in obj]
    if isinstance(obj, dict):
        return {substitute(k, subst): substitute(v, subst) for k, v in obj.items()}
    return obj


def subset_errors(expected, actual, where="$"):
    """Differences between an expected subset and the actual JSON value."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return ["%s: expected an object, got %r" % (where, actual)]
        errs = []
        for k, v in expected.items():
            if k not in actual:
                errs.append("%s.%s: missing" % (where, k))
            else:
                errs += subset_errors(v, actual[k], "%s.%s" % (where, k))
        return errs
    if expected != actual or type(expected) is not type(actual):
        return ["%s: expected %r, got %r" % (where, expected, actual)]
    return []


def tar_errors(body, spec):
    errs = []
    if len(body) % 512 != 0:
        errs.append("archive length %d is not a multiple of 512" % len(body))
    if not body.endswith(b"\0" * 1024):
        errs.append("archive does not end with two zero blocks")
    try:
        tf = tarfile.open(fileobj=io.BytesIO(body), mode="r:")
        members = tf.getmembers()
    except tarfile.TarError as e:
        return errs + ["not a valid tar: %s" % e]
    names = [m.name for m in members]
    want = [e["name"] for e in spec["entries"]]
    if names != want:
        return errs + ["archive entries %r, expected %r" % (names, want)]
    for m, e in zip(members, spec["entries"]):
        raw = body[m.offset:m.offset + 512]
        if raw[257:265] != b"ustar\x0000":
            errs.append("%s: not a ustar header" % m.name)
        if m.pax_headers:
            errs.append("%s: unexpected pax headers" % m.name)
        kind_ok = m.isdir() if e["type"] == "dir" else m.isfile()
        if not kind_ok:
            errs.append("%s: not a %s" % (m.name, e["type"]))
        if m.mode != int(e["mode"], 8):
            errs.append("%s: mode %o, expected %s" % (m.name, m.mode, e["mode"]))
        if m.uid != e["uid"] or m.gid != e["gid"]:
            errs.append("%s: owner %d:%d, expected %d:%d" % (m.name, m.uid, m.gid, e["uid"],
                                                            e["gid"]))
        if m.uname or m.gname:
            errs.append("%s: user/group names %r/%r (numeric ids only)" % (m.name, m.uname,
                                                                           m.gname))
        if "content" in e:
            data = tf.extractfile(m).read()
            if data != e["content"].encode():
                errs.append("%s: content differs" % m.name)
    return errs


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


DOCKER_24 = {"Version": "24.0.7", "ApiVersion": "1.43", "MinAPIVersion": "1.12",
             "Os": "linux", "Arch": "amd64"}


class FakeEngine:
    def __init__(self, sock_path, recording, subst, secrets=(), version=None,
                 version_status=200):
        self.version = DOCKER_24 if version is None else version
        self.version_status = version_status
        self.version_requests = 0
        self.sock_path = sock_path
        self.exchanges = substitute(recording["exchanges"], subst)
        self.secrets = list(secrets)
        self.errors = []
        self.requests = []
        self.index = 0
        self.lock = threading.Lock()
        self.server = None

    # -- lifecycle --
    def __enter__(self):
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def address_string(self):
                return "unix"

            def handle_one(self):
                if self.headers.get("Transfer-Encoding"):
                    engine.fail("%s %s: chunked body (want Content-Length)" % (self.command,
                                                                              self.path))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, headers, payload, delay = engine.on_request(
                    self.command, self.path, self.request_version, self.headers, body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if status not in (204, 304):
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if payload and status not in (204, 304):
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

        self.server = _Server(self.sock_path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)

    def fail(self, msg):
        self.errors.append(msg)

    def remaining(self):
        return len(self.exchanges) - self.index

    def check(self):
        """All expectations met, every recorded exchange used."""
        errs = list(self.errors)
        if self.remaining():
            errs.append("%d recorded exchange(s) never requested, next: %s %s" % (
                self.remaining(), self.exchanges[self.index]["request"]["method"],
                self.exchanges[self.index]["request"]["path"]))
        return errs

    # -- one request --
    def on_request(self, method, raw_path, version, headers, body):
        with self.lock:
            url = urllib.parse.urlsplit(raw_path)
            where = "%s %s" % (method, url.path)
            if version != "HTTP/1.1":
                self.fail("%s: %s, expected HTTP/1.1" % (where, version))
            is_archive = method == "PUT" and url.path.endswith("/archive")
            for s in self.secrets:
                if s in raw_path.encode():
                    self.fail("%s: key material in the request line" % where)
                if any(s in v.encode() for v in headers.values()):
                    self.fail("%s: key material in a header" % where)
                if not is_archive and s in body:
                    self.fail("%s: key material in the body" % where)
            if method == "GET" and raw_path == "/version":
                self.version_requests += 1
                body = self.version if isinstance(self.version, bytes) else \
                    json.dumps(self.version).encode()
                return self.version_status, {"Content-Type": "application/json"}, body, 0
            self.requests.append((method, raw_path, body))
            if self.index >= len(self.exchanges):
                self.fail("unexpected request %s %s" % (method, raw_path))
                return 500, {"Content-Type": "application/json"}, \
                    b'{"message":"fake engine: unexpected request"}', 0
            ex = self.exchanges[self.index]
            self.index += 1
            self._check_request(ex["request"], method, url, headers, body)
            return self._response(ex["response"])

    def _check_request(self, req, method, url, headers, body):
        where = "%s %s" % (method, url.path)
        if method != req["method"] or url.path != req["path"]:
            self.fail("request %s, expected %s %s" % (where, req["method"], req["path"]))
            return
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = dict(pairs)
        if len(query) != len(pairs):
            self.fail("%s: repeated query parameter in %r" % (where, url.query))
        if query != req.get("query", {}):
            self.fail("%s: query %r, expected %r" % (where, query, req.get("query", {})))
        if "content_type" in req and headers.get("Content-Type") != req["content_type"]:
            self.fail("%s: Content-Type %r, expected %r" % (where, headers.get("Content-Type"),
                                                             req["content_type"]))
        if req.get("empty_body") and body:
            self.fail("%s: unexpected body %r" % (where, body[:80]))
        if "json" in req or "json_absent" in req:
            try:
                doc = json.loads(body)
            except ValueError as e:
                self.fail("%s: body is not JSON: %s" % (where, e))
                return
            self.errors += ["%s: %s" % (where, e) for e in subset_errors(req.get("json", {}), doc)]
            for k in req.get("json_absent", []):
                if k in doc:
                    self.fail("%s: %s must not be sent" % (where, k))
        if "tar" in req:
            self.errors += ["%s: %s" % (where, e) for e in tar_errors(body, req["tar"])]

    @staticmethod
    def _response(resp):
        status = resp["status"]
        headers = {"Api-Version": "1.43", "Docker-Experimental": "false", "Ostype": "linux",
                   "Server": "Docker/24.0.7 (linux)"}
        payload = b""
        if "json" in resp:
            payload = json.dumps(resp["json"]).encode()
            headers["Content-Type"] = "application/json"
        elif "raw" in resp:
            payload = resp["raw"].encode()
            headers["Content-Type"] = "application/json"
        elif "raw_hex" in resp:
            payload = bytes.fromhex(resp["raw_hex"])
            headers["Content-Type"] = "application/vnd.docker.raw-stream"
        elif "huge" in resp:
            payload = b"[" + b"0," * (resp["huge"] // 2) + b"0]"
            headers["Content-Type"] = "application/json"
        headers.update(resp.get("headers", {}))
        return status, headers, payload, resp.get("delay", 0)
