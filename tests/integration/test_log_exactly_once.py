"""PushSandboxLogs is exactly once for numbered batches: a supervisor whose
acknowledgement was lost (the gateway committed the batches, the answer never
arrived) sends the same window again with the same session and batch_seq,
and the gateway acknowledges it without storing anything twice, neither the
lines nor their dropped_lines."""
import os
import sqlite3

import grpc

from gwtest import code_of, pb

S = grpc.StatusCode
SESSION = "5e55105e55105e55105e55105e551050"


def admin(gw):
    return gw.stub(gw.user("admin"))


def logs_of(gw, sid):
    return admin(gw).GetSandboxLogs(pb.GetSandboxLogsRequest(sandbox_id=sid), timeout=10).lines


def dropped_of(gw, sid):
    db = sqlite3.connect(os.path.join(gw.dir, "data", "tessera.db"), timeout=10)
    try:
        return db.execute("SELECT COALESCE(SUM(dropped), 0) FROM log_drops WHERE sandbox_id = ?",
                          (sid,)).fetchone()[0]
    finally:
        db.close()


def batch(sid, seq, first, n, dropped=0, session=SESSION):
    return pb.PushSandboxLogsRequest(
        sandbox_id=sid, session=session, batch_seq=seq, dropped_lines=dropped,
        lines=[pb.LogLine(timestamp_ms=i, stream="stdout", text=b"line %d" % i)
               for i in range(first, first + n)])


def test_window_resent_after_a_lost_answer_is_stored_once(gw):
    sid = gw.create_sandbox().sandbox.id
    me = gw.stub(gw.sandbox_identity(sid))
    window = [batch(sid, 1, 0, 10, dropped=3), batch(sid, 2, 10, 10)]
    assert me.PushSandboxLogs(iter(window), timeout=20).accepted_lines == 20
    # The answer was lost: the same window again, with one new batch.
    again = window + [batch(sid, 3, 20, 5, dropped=1)]
    assert me.PushSandboxLogs(iter(again), timeout=20).accepted_lines == 25
    got = [l.text for l in logs_of(gw, sid)]
    assert got == [b"line %d" % i for i in range(25)], got
    assert dropped_of(gw, sid) == 4
    # A new session (a restarted supervisor) numbers from 1 again.
    other = "0123456789abcdef"
    assert me.PushSandboxLogs(iter([batch(sid, 1, 25, 1, session=other)]),
                              timeout=20).accepted_lines == 1
    assert len(logs_of(gw, sid)) == 26
    # Unnumbered batches are stored as sent.
    plain = pb.PushSandboxLogsRequest(sandbox_id=sid, lines=[pb.LogLine(text=b"plain")])
    me.PushSandboxLogs(iter([plain, plain]), timeout=20)
    assert [l.text for l in logs_of(gw, sid)][-2:] == [b"plain", b"plain"]


def test_bad_session_or_number_is_invalid_and_stores_nothing(gw):
    sid = gw.create_sandbox().sandbox.id
    me = gw.stub(gw.sandbox_identity(sid))
    for session, seq in (("", 1), ("ab", 0), ("ab", -5), ("AB", 1), ("not-hex", 1),
                         ("a" * 65, 1)):
        code, _ = code_of(lambda: me.PushSandboxLogs(
            iter([batch(sid, seq, 0, 1, session=session)]), timeout=10))
        assert code == S.INVALID_ARGUMENT, (session, seq)
    assert list(logs_of(gw, sid)) == []
