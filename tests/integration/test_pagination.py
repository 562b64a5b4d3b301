"""Pagination of ListCertificates and GetDraftPolicy (as ListSandboxes):
page_size 0 = 100, at most 1000; an opaque next_page_token bound to the
sandbox it was issued for; following the tokens yields every row exactly
once, in order; a bad or foreign token is INVALID_ARGUMENT."""
import json
import os
import subprocess

import grpc
import pytest

import gwtest
from gwtest import code_of, pb

S = grpc.StatusCode


@pytest.fixture(scope="module")
def g():
    gw = gwtest.Gateway(renew_limit=1000)
    yield gw
    rc = gw.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, gw.sanitizer_report())


def admin(gw):
    return gw.stub(gw.user("admin"))


def sandbox_with_certs(gw, renewals):
    a = gw.create_sandbox()
    me = gw.stub(gw.placed_identity(a.sandbox.id))
    for _ in range(renewals):
        me.RenewCertificate(pb.RenewCertificateRequest(csr=gwtest.csr_der()[0]), timeout=10)
    return a.sandbox


def follow(call, request, items):
    """Every page of a paginated call: request(token) makes a request,
    items(response) the values of its rows; returns the list of pages."""
    pages, token = [], ""
    while True:
        r = call(request(token), timeout=30)
        pages.append(items(r))
        token = r.next_page_token
        if not token:
            return pages
        assert len(pages) < 1000


def cert_pages(stub, sid, size):
    return follow(stub.ListCertificates,
                  lambda t: pb.ListCertificatesRequest(sandbox_id=sid, page_size=size,
                                                       page_token=t),
                  lambda r: [c.serial for c in r.certificates])


def test_certificate_pages_cover_every_row_once(g):
    sb = sandbox_with_certs(g, 6)
    s = admin(g)
    full = s.ListCertificates(pb.ListCertificatesRequest(sandbox_id=sb.id), timeout=10)
    assert full.next_page_token == ""              # 7 < the default page of 100
    serials = [c.serial for c in full.certificates]
    assert len(serials) == 7 and len(set(serials)) == 7
    for size in (1, 2, 3, 6, 7, 8, 1000):
        pages = cert_pages(s, sb.id, size)
        assert [x for p in pages for x in p] == serials, size
        assert all(0 < len(p) <= size for p in pages), (size, pages)
        assert len(pages) == -(-7 // size), (size, pages)
    # A viewer pages the same rows.
    assert [x for p in cert_pages(g.stub(g.user("bob")), sb.id, 2) for x in p] == serials
    # A certificate issued between pages appears once, at the end.
    first = s.ListCertificates(pb.ListCertificatesRequest(sandbox_id=sb.id, page_size=4),
                               timeout=10)
    g.stub(g.placed_identity(sb.id)).RenewCertificate(
        pb.RenewCertificateRequest(csr=gwtest.csr_der()[0]), timeout=10)
    rest = s.ListCertificates(pb.ListCertificatesRequest(
        sandbox_id=sb.id, page_size=1000, page_token=first.next_page_token), timeout=10)
    got = [c.serial for c in first.certificates] + [c.serial for c in rest.certificates]
    # Rows are in issue order: the new one comes last, after the cursor.
    assert got[:7] == serials and len(got) == 8 and got[7] not in serials, got
    # Deleted sandboxes stay listable, page by page.
    s.DeleteSandbox(pb.DeleteSandboxRequest(id=sb.id), timeout=10)
    now = [c.serial for c in s.ListCertificates(pb.ListCertificatesRequest(
        sandbox_id=sb.id), timeout=10).certificates]
    assert len(now) == 8
    assert [x for p in cert_pages(s, sb.id, 3) for x in p] == now


def test_certificate_issued_between_pages_is_on_a_later_page(g):
    """A client walking the pages sees every certificate issued while it
    walks: the cursor is the issue order, not (issued_at, random serial), so
    a certificate issued in the cursor's second with a smaller serial is not
    skipped. Several rounds: with the old cursor about half of them lost it."""
    sb = sandbox_with_certs(g, 1)
    s = admin(g)
    me = g.stub(g.placed_identity(sb.id))
    for _ in range(12):
        before = [c.serial for c in s.ListCertificates(pb.ListCertificatesRequest(
            sandbox_id=sb.id, page_size=1000), timeout=10).certificates]
        # A first page that ends on the newest certificate, with a token.
        first = s.ListCertificates(pb.ListCertificatesRequest(
            sandbox_id=sb.id, page_size=len(before) - 1), timeout=10)
        assert first.next_page_token
        new = me.RenewCertificate(pb.RenewCertificateRequest(csr=gwtest.csr_der()[0]),
                                  timeout=10).serial
        rest = [x for p in follow(s.ListCertificates,
                                  lambda t: pb.ListCertificatesRequest(
                                      sandbox_id=sb.id, page_size=1,
                                      page_token=t or first.next_page_token),
                                  lambda r: [c.serial for c in r.certificates]) for x in p]
        got = [c.serial for c in first.certificates] + rest
        assert got == before + [new], (new, got)


def test_certificate_page_size_and_token_refusals(g):
    sb = sandbox_with_certs(g, 2)
    other = sandbox_with_certs(g, 2)
    s = admin(g)

    def call(size=0, token="", sid=sb.id):
        return code_of(lambda: s.ListCertificates(pb.ListCertificatesRequest(
            sandbox_id=sid, page_size=size, page_token=token), timeout=10))[0]

    for size in (-1, 1001, 2**31 - 1, -2**31):
        assert call(size=size) == S.INVALID_ARGUMENT, size
    assert call(size=1000) == S.OK
    tok = s.ListCertificates(pb.ListCertificatesRequest(sandbox_id=sb.id, page_size=1),
                             timeout=10).next_page_token
    foreign = s.ListCertificates(pb.ListCertificatesRequest(sandbox_id=other.id, page_size=1),
                                 timeout=10).next_page_token
    assert tok and foreign and tok != foreign
    assert call(token=tok) == S.OK
    parts = tok.split(".")
    bad = [
        "garbage", "v1", "v1.", tok + ".", tok + "g", tok.upper(), "v2" + tok[2:],
        ".".join(parts[:3] + ["0a"]),                # a key this token never has
        ".".join(parts[:2] + ["0" + parts[2]] + parts[3:]),   # leading zero
        ".".join(parts[:2] + ["-" + parts[2]] + parts[3:]),
        ".".join(parts[:2] + ["1" + "0" * 18 + "1"]),   # 20 digits
        ".".join(parts[:2] + ["9" * 20] + parts[3:]),  # past int64
        tok + "x" * 200,
        foreign,                                     # another sandbox's token
        tok.replace(sb.id, other.id),
    ]
    for t in bad:
        assert call(token=t) == S.INVALID_ARGUMENT, t
    # A foreign token never shows the other sandbox's rows: refused above,
    # and the rows of a page are always those of the sandbox asked for.
    mine = {c.serial for c in s.ListCertificates(pb.ListCertificatesRequest(
        sandbox_id=sb.id, page_token=tok), timeout=10).certificates}
    theirs = {c.serial for c in s.ListCertificates(pb.ListCertificatesRequest(
        sandbox_id=other.id), timeout=10).certificates}
    assert mine and not (mine & theirs)
    # Sandboxes may not list certificates at all, token or not.
    me = g.stub(g.placed_identity(sb.id))
    assert code_of(lambda: me.ListCertificates(pb.ListCertificatesRequest(
        sandbox_id=sb.id, page_token=tok), timeout=10))[0] == S.PERMISSION_DENIED


def submit(gw, sb, contents):
    me = gw.stub(gw.placed_identity(sb.id))
    r = me.SubmitPolicyAnalysis(pb.SubmitPolicyAnalysisRequest(
        sandbox_name=sb.name,
        chunks=[pb.PolicyChunk(domain="network", content=c) for c in contents]), timeout=30)
    assert r.accepted_chunks == len(contents)


def draft_pages(stub, name, size=0):
    return follow(stub.GetDraftPolicy,
                  lambda t: pb.GetDraftPolicyRequest(name=name, page_size=size, page_token=t),
                  lambda r: [c.content for c in r.chunks])


def test_draft_pages_cover_every_chunk_once(g):
    sb = g.create_sandbox().sandbox
    want = []
    for batch in range(3):
        contents = [f"# batch {batch} chunk {i}\ndefault: deny\n" for i in range(3)]
        submit(g, sb, contents)
        want += contents
    s = admin(g)
    for size in (0, 1, 2, 4, 9, 10):
        pages = draft_pages(s, sb.name, size)
        assert [x for p in pages for x in p] == want, size
        if size:
            assert len(pages) == -(-9 // size), (size, pages)
    # The sandbox itself pages its own draft.
    me = g.stub(g.placed_identity(sb.id))
    assert [x for p in draft_pages(me, sb.name, 4) for x in p] == want


def test_draft_page_fits_the_message_limit(g):
    """Chunks of 60 KB: a default page of 100 would be 2 MB, over the
    gateway's 1 MiB messages; pages stop before the chunk that would not fit."""
    sb = g.create_sandbox().sandbox
    body = "".join(f"# {i:05d} " + "x" * 90 + "\n" for i in range(600)) + "default: deny\n"
    want = []
    for batch in range(6):
        contents = [f"# {batch}.{i}\n" + body for i in range(3)]
        submit(g, sb, contents)
        want += contents
    pages = draft_pages(admin(g), sb.name)
    assert [x for p in pages for x in p] == want
    assert len(pages) >= 2
    assert all(sum(len(x) for x in p) < 1048576 for p in pages)


def test_draft_page_refusals_and_binding(g):
    a = g.create_sandbox().sandbox
    b = g.create_sandbox().sandbox
    submit(g, a, ["# a1\ndefault: deny\n", "# a2\ndefault: deny\n"])
    submit(g, b, ["# b1\ndefault: deny\n", "# b2\ndefault: deny\n"])
    s = admin(g)
    tok_a = s.GetDraftPolicy(pb.GetDraftPolicyRequest(name=a.name, page_size=1),
                             timeout=10).next_page_token
    tok_b = s.GetDraftPolicy(pb.GetDraftPolicyRequest(name=b.name, page_size=1),
                             timeout=10).next_page_token
    assert tok_a and tok_b

    def call(stub, name, size=0, token=""):
        return code_of(lambda: stub.GetDraftPolicy(pb.GetDraftPolicyRequest(
            name=name, page_size=size, page_token=token), timeout=10))[0]

    for size in (-1, 1001):
        assert call(s, a.name, size=size) == S.INVALID_ARGUMENT
    for t in ("junk", tok_a + ".ab", tok_a + "x", tok_b, "v1.%s.-1" % a.id, "v1.%s.01" % a.id):
        assert call(s, a.name, token=t) == S.INVALID_ARGUMENT, t
    # Sandbox a, with b's token: on its own draft, refused as malformed; on
    # b's draft, the guard's cross-sandbox denial, as without a token.
    me = g.stub(g.placed_identity(a.id))
    assert call(me, a.name, token=tok_b) == S.INVALID_ARGUMENT
    assert call(me, b.name, token=tok_b) == S.PERMISSION_DENIED
    assert call(me, b.name) == S.PERMISSION_DENIED
    r = me.GetDraftPolicy(pb.GetDraftPolicyRequest(name=a.name, page_token=tok_a), timeout=10)
    assert [c.content for c in r.chunks] == ["# a2\ndefault: deny\n"]


def test_cli_cert_list_follows_pages(g):
    """tessera cert list asks for pages of 500: 506 certificates take two."""
    sb = g.create_sandbox().sandbox
    me = g.stub(g.placed_identity(sb.id))
    csr = gwtest.csr_der()[0]       # one key for all: only the count matters here
    for _ in range(505):
        me.RenewCertificate(pb.RenewCertificateRequest(csr=csr), timeout=30)
    want = [x for p in cert_pages(admin(g), sb.id, 1000) for x in p]
    assert len(want) == 506
    tessera = os.path.join(os.environ.get("TSR_BIN", "build/bin"), "tessera")
    r = subprocess.run([tessera, "--addr", f"127.0.0.1:{g.port}", "--pki", g.pki, "--json",
                        "cert", "list", sb.name], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert [c["serial"] for c in json.loads(r.stdout)["certificates"]] == want
    r = subprocess.run([tessera, "--addr", f"127.0.0.1:{g.port}", "--pki", g.pki,
                        "cert", "list", sb.id], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len([l for l in r.stdout.splitlines() if " valid" in l]) == 506
