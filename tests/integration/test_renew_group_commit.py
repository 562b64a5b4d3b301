"""RenewCertificate through the group commit (gateway/store/gw_commit.c) and the
transport's held calls (gw_call_hold): many renewals in flight on one
connection and on many, calls that give up while their record is being
written, a sandbox deleted while its renewals wait, and a shutdown with
renewals in flight. Every certificate a client received must be recorded;
the gateway must neither crash nor leak (the ASan run checks the exit)."""
import concurrent.futures
import sqlite3
import threading

import grpc

import gwtest
from gwtest import code_of, pb

S = grpc.StatusCode


def recorded(gw):
    db = sqlite3.connect(f"file:{gw.db_path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0]: r for r in db.execute(
            "SELECT serial, sandbox_id, revoked_at FROM certificates")}
    finally:
        db.close()


def renew(stub, timeout=20):
    der, _ = gwtest.csr_der()
    return stub.RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=timeout)


def test_concurrent_renewals_all_recorded():
    gw = gwtest.Gateway(renew_limit=1000)
    try:
        sids = [gw.create_sandbox().sandbox.id for _ in range(3)]
        stubs = {sid: gw.stub(gw.placed_identity(sid)) for sid in sids}
        # 3 connections, 20 renewals multiplexed on each at once.
        with concurrent.futures.ThreadPoolExecutor(max_workers=60) as ex:
            futs = [(sid, ex.submit(renew, stubs[sid])) for sid in sids for _ in range(20)]
            got = [(sid, f.result()) for sid, f in futs]
        rows = recorded(gw)
        serials = [r.serial for _, r in got]
        assert len(set(serials)) == len(serials) == 60
        for sid, r in got:
            assert r.serial in rows, f"returned but not recorded: {r.serial}"
            assert rows[r.serial][1] == sid and rows[r.serial][2] is None
            assert r.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
        gw.assert_serving(gw.placed_identity(sids[0]))
    finally:
        rc = gw.stop()
    assert rc == 0, gw.sanitizer_report()


def test_renewals_abandoned_while_held():
    """Deadlines that expire while the record is written, and clients that
    go away: the gateway answers the others and stays up; what it returned
    is recorded; abandoned certificates, if recorded, are ordinary rows."""
    gw = gwtest.Gateway(renew_limit=1000)
    try:
        sid = gw.create_sandbox().sandbox.id
        ident = gw.placed_identity(sid)
        stub = gw.stub(ident)
        got, codes = [], []
        lock = threading.Lock()

        def one(i):
            try:
                # Short deadlines, but not so short that the client gives up
                # before it has sent the request: gRPC C-core 1.51 then may
                # reset a stream it never opened, which RFC 9113 makes a
                # connection error (nghttp2 closes with PROTOCOL_ERROR).
                r = renew(stub, timeout=(0.02, 0.05)[i % 4 // 2] if i % 2 else 20)
                with lock:
                    got.append(r.serial)
            except grpc.RpcError as e:
                with lock:
                    codes.append((e.code(), e.details()))
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as ex:
            list(ex.map(one, range(80)))
        odd = [c for c in codes if c[0] not in (S.DEADLINE_EXCEEDED, S.CANCELLED)]
        assert not odd, odd[:3]
        assert len(got) >= 40   # every call with the long deadline
        # Channels closed with calls in flight.
        for _ in range(5):
            ch = gw.channel(ident)
            stub2 = gwtest.pb_grpc.GatewayStub(ch)
            fs = [stub2.RenewCertificate.future(pb.RenewCertificateRequest(
                csr=gwtest.csr_der()[0]), timeout=20) for _ in range(10)]
            ch.close()
            for f in fs:
                try:
                    got.append(f.result().serial)
                except grpc.RpcError:
                    pass
        rows = recorded(gw)
        for s in got:
            assert s in rows, f"returned but not recorded: {s}"
        assert gw.alive()
        assert renew(stub).serial in recorded(gw)
    finally:
        rc = gw.stop()
    assert rc == 0, gw.sanitizer_report()


def test_delete_while_renewals_wait():
    """A sandbox deleted while its renewals are queued: none of them returns
    a live certificate of a deleted sandbox (the batch re-checks liveness);
    what was recorded before the delete is revoked by it."""
    gw = gwtest.Gateway(renew_limit=1000)
    try:
        sid = gw.create_sandbox().sandbox.id
        stub = gw.stub(gw.placed_identity(sid))
        adm = gw.stub(gw.user("admin"))
        results = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=30) as ex:
            futs = [ex.submit(lambda: code_of(lambda: renew(stub))) for _ in range(30)]
            adm.DeleteSandbox(pb.DeleteSandboxRequest(id=sid), timeout=20)
            results = [f.result() for f in futs]
        for code, _ in results:
            assert code in (S.OK, S.UNAUTHENTICATED, S.UNAVAILABLE), results
        live = [s for s, row in recorded(gw).items() if row[1] == sid and row[2] is None]
        assert live == [], f"live certificates of a deleted sandbox: {live}"
    finally:
        rc = gw.stop()
    assert rc == 0, gw.sanitizer_report()


def test_stop_with_renewals_in_flight():
    gw = gwtest.Gateway(renew_limit=1000)
    sid = gw.create_sandbox().sandbox.id
    stub = gw.stub(gw.placed_identity(sid))
    got = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                got.append(renew(stub, timeout=10).serial)
            except grpc.RpcError:
                if not gw.alive():
                    return
    threads = [threading.Thread(target=loop) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        while len(got) < 20:
            assert gw.alive()
            threading.Event().wait(0.05)
        rc = gw.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert rc == 0, gw.sanitizer_report()
    rows = recorded(gw)
    for s in list(got):
        assert s in rows, f"returned but not recorded: {s}"
