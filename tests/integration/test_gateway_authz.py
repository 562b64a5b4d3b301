"""The authorization matrix of docs/identity.md: every RPC x every kind of caller,
exact status codes, through the stock grpcio client against the real gateway."""
import datetime
import uuid

import grpc
import pytest

import gwtest
from gwtest import TD, code_of, pb

S = grpc.StatusCode
ANY_ROLE = {"admin", "operator", "viewer"}


class Target:
    def __init__(self, sid, name, serial=""):
        self.id, self.name, self.serial = sid, name, serial


def call_table(gw):
    """name -> (invoke(stub, target), target kind, roles allowed, sandbox rule)."""
    def renew(stub, t):
        der, _ = gwtest.csr_der()
        return stub.RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)

    def push(stub, t):
        batch = pb.PushSandboxLogsRequest(sandbox_id=t.id, lines=[
            pb.LogLine(timestamp_ms=1, stream="stdout", text=b"hello")])
        return stub.PushSandboxLogs(iter([batch]), timeout=10)

    return {
        "CreateSandbox": (lambda s, t: s.CreateSandbox(pb.CreateSandboxRequest(
            name="m-" + uuid.uuid4().hex[:12], policy=gwtest.POLICY), timeout=10),
            None, {"admin", "operator"}, "denied"),
        "GetSandbox": (lambda s, t: s.GetSandbox(pb.GetSandboxRequest(id=t.id), timeout=10),
                       "id", ANY_ROLE, "denied"),
        "ListSandboxes": (lambda s, t: s.ListSandboxes(pb.ListSandboxesRequest(), timeout=10),
                          None, ANY_ROLE, "denied"),
        "DeleteSandbox": (lambda s, t: s.DeleteSandbox(pb.DeleteSandboxRequest(id=t.id),
                                                       timeout=10),
                          "fresh", {"admin", "operator"}, "denied"),
        "GetSandboxLogs": (lambda s, t: s.GetSandboxLogs(pb.GetSandboxLogsRequest(
            sandbox_id=t.id), timeout=10), "id", ANY_ROLE, "denied"),
        "ListCertificates": (lambda s, t: s.ListCertificates(pb.ListCertificatesRequest(
            sandbox_id=t.id), timeout=10), "id", ANY_ROLE, "denied"),
        "RevokeCertificate": (lambda s, t: s.RevokeCertificate(pb.RevokeCertificateRequest(
            serial=t.serial, reason="matrix"), timeout=10), "fresh", {"admin"}, "denied"),
        "GetSandboxConfig": (lambda s, t: s.GetSandboxConfig(pb.GetSandboxConfigRequest(
            sandbox_id=t.id), timeout=10), "id", ANY_ROLE, "own"),
        "GetSandboxProviderEnvironment": (lambda s, t: s.GetSandboxProviderEnvironment(
            pb.GetSandboxProviderEnvironmentRequest(sandbox_id=t.id), timeout=10),
            "id", {"admin"}, "own"),
        "ReportPolicyStatus": (lambda s, t: s.ReportPolicyStatus(pb.ReportPolicyStatusRequest(
            sandbox_id=t.id, version=1, status=pb.POLICY_STATUS_APPLIED, message="ok"),
            timeout=10), "id", set(), "own"),
        "SubmitPolicyAnalysis": (lambda s, t: s.SubmitPolicyAnalysis(
            pb.SubmitPolicyAnalysisRequest(sandbox_name=t.name, chunks=[pb.PolicyChunk(
                domain="network", content="default: deny\n")]), timeout=10),
            "name", set(), "own"),
        "GetDraftPolicy": (lambda s, t: s.GetDraftPolicy(pb.GetDraftPolicyRequest(name=t.name),
                                                         timeout=10), "name", ANY_ROLE, "own"),
        "UpdateConfig": (lambda s, t: s.UpdateConfig(pb.UpdateConfigRequest(
            name=t.name, policy=gwtest.POLICY), timeout=10), "name", {"admin", "operator"},
            "own"),
        "PushSandboxLogs": (push, "id", set(), "own"),
        "RenewCertificate": (renew, None, set(), "self"),
        "GetTrustBundle": (lambda s, t: s.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10),
                           None, ANY_ROLE, "self"),
    }


RPCS = list(call_table(None).keys())
ROLES = {"admin": "admin", "operator": "alice", "viewer": "bob"}


@pytest.fixture(scope="module")
def world(gw):
    a = gw.create_sandbox()
    b = gw.create_sandbox()
    w = {
        "gw": gw,
        "a": Target(a.sandbox.id, a.sandbox.name),
        "b": Target(b.sandbox.id, b.sandbox.name),
        "missing": Target(str(uuid.uuid4()), "no-such-sandbox"),
        "a_ident": gw.placed_identity(a.sandbox.id),
    }
    # A revoked identity: a renewed (recorded) certificate, then revoked by an admin.
    c = gw.create_sandbox()
    c_ident = gw.placed_identity(c.sandbox.id)
    der, key = gwtest.csr_der()
    r = gw.stub(c_ident).RenewCertificate(pb.RenewCertificateRequest(csr=der), timeout=10)
    gw.stub(gw.user("admin")).RevokeCertificate(
        pb.RevokeCertificateRequest(serial=r.serial, reason="test"), timeout=10)
    w["revoked"] = gwtest.Identity((r.certificate_pem + r.chain_pem).encode(),
                                   gwtest.key_pem(key))
    # Foreign CA, and an expired leaf from the real issuing CA.
    ca_cert, ca_key = gwtest.make_ca("Foreign CA")
    leaf, leaf_key = gwtest.make_leaf(f"spiffe://{TD}/sandbox/{a.sandbox.id}", ca_cert, ca_key)
    w["wrong_ca"] = gwtest.Identity(gwtest.pem(leaf) + gwtest.pem(ca_cert),
                                    gwtest.key_pem(leaf_key))
    past = gwtest.now() - datetime.timedelta(hours=2)
    w["expired"] = gw.sandbox_identity(a.sandbox.id, not_before=past,
                                       not_after=past + datetime.timedelta(hours=1))
    return w


def fresh_target(gw):
    s = gw.create_sandbox()
    return Target(s.sandbox.id, s.sandbox.name, s.certificate_serial)


# An RPC that names no sandbox ("self") has only the "own" case.
SANDBOX_CASES = [(rpc, who) for who in ("own", "other", "missing") for rpc in RPCS
                 if who == "own" or call_table(None)[rpc][3] != "self"]


@pytest.mark.parametrize("rpc, who", SANDBOX_CASES)
def test_sandbox_caller(world, rpc, who):
    gw = world["gw"]
    invoke, target_kind, _, rule = call_table(gw)[rpc]
    target = {"own": world["a"], "other": world["b"], "missing": world["missing"]}[who]
    if target_kind == "fresh":
        target = fresh_target(gw) if who != "own" else world["a"]
    code, details = code_of(lambda: invoke(gw.stub(world["a_ident"]), target))
    if rule == "denied":
        assert code == S.PERMISSION_DENIED, details
    elif rule == "self" or who == "own":
        assert code == S.OK, details
    else:
        assert code == S.PERMISSION_DENIED
        # Identical for an existing and a missing sandbox: no existence oracle.
        assert details == "cross-sandbox access denied"


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_user_caller(world, rpc, role):
    gw = world["gw"]
    invoke, target_kind, roles, _ = call_table(gw)[rpc]
    target = fresh_target(gw) if target_kind == "fresh" else world["a"]
    code, details = code_of(lambda: invoke(gw.stub(gw.user(ROLES[role])), target))
    assert code == (S.OK if role in roles else S.PERMISSION_DENIED), details


@pytest.mark.parametrize("rpc", [r for r in RPCS if call_table(None)[r][1] is not None
                                 and "admin" in call_table(None)[r][2]])
def test_admin_naming_missing_sandbox(world, rpc):
    gw = world["gw"]
    invoke, target_kind, roles, _ = call_table(gw)[rpc]
    target = Target(str(uuid.uuid4()), "no-such-sandbox", "0123456789abcdef0123456789abcdef")
    code, details = code_of(lambda: invoke(gw.stub(gw.user("admin")), target))
    assert code == S.NOT_FOUND, details


@pytest.mark.parametrize("rpc", RPCS)
def test_user_without_role(world, rpc):
    gw = world["gw"]
    invoke, _, _, _ = call_table(gw)[rpc]
    code, _ = code_of(lambda: invoke(gw.stub(gw.user("mallory")), world["a"]))
    assert code == S.PERMISSION_DENIED


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("who", ["anonymous", "wrong_ca", "expired", "revoked"])
def test_unauthenticated_caller(world, rpc, who):
    gw = world["gw"]
    invoke, _, _, _ = call_table(gw)[rpc]
    ident = None if who == "anonymous" else world[who]
    code, details = code_of(lambda: invoke(gw.stub(ident), world["a"]))
    assert code == S.UNAUTHENTICATED, details


@pytest.mark.parametrize("who", ["anonymous", "wrong_ca", "expired", "admin", "own"])
def test_health_check_open_to_all(world, who):
    gw = world["gw"]
    health_pb2 = gwtest.health_pb2
    ident = {"anonymous": None, "wrong_ca": world["wrong_ca"], "expired": world["expired"],
             "admin": gw.user("admin"), "own": world["a_ident"]}[who]
    resp = gw.health(ident).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_denials_are_audited(world):
    gw = world["gw"]
    code_of(lambda: gw.stub(world["a_ident"]).GetSandboxConfig(
        pb.GetSandboxConfigRequest(sandbox_id=world["b"].id), timeout=10))
    lines = [l for l in gw.audit_lines() if '"decision":"deny"' in l and world["b"].id in l]
    assert lines, "cross-sandbox denial not in the audit log"
    assert f'"peer":"spiffe://{TD}/sandbox/{world["a"].id}"' in lines[-1]
    # Never a secret in the audit log.
    assert not any("secret-" in l for l in gw.audit_lines())
