"""The gRPC surfaces stock tools expect (docs/operations.md): health Watch
(a server stream: changes, NOT_SERVING while draining, sends stop when the
caller's credentials end), server reflection v1 and v1alpha to
authenticated callers, gzip-compressed requests with the size limit on the
decompressed bytes, and the grpc_server_* / process_* / tessera_build_info
metrics. Every client here is stock grpcio."""
import importlib.util
import os
import queue
import re
import signal
import subprocess
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

import gwtest
from gwtest import BIN, TD, pb, health_pb2

S = grpc.StatusCode
HC = health_pb2.HealthCheckResponse


def load_generated(rel):
    for entry in os.environ.get("PYTHONPATH", "").split(":"):
        path = os.path.join(entry, rel)
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("tsr_" + rel.replace("/", "_")[:-3],
                                                          path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise ImportError(rel)


refl_v1 = load_generated("grpc/reflection/v1/reflection_pb2.py")
refl_v1alpha = load_generated("grpc/reflection/v1alpha/reflection_pb2.py")


def watch(ch, service=""):
    call = ch.unary_stream("/grpc.health.v1.Health/Watch",
                           request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                           response_deserializer=HC.FromString)
    return call(health_pb2.HealthCheckRequest(service=service), timeout=60)


def reader(stream):
    """Messages of a stream on a queue; then ('end', code, details)."""
    q = queue.Queue()

    def run():
        try:
            for m in stream:
                q.put(("msg", m.status))
            q.put(("end", S.OK, ""))
        except grpc.RpcError as e:
            q.put(("end", e.code(), e.details()))
    threading.Thread(target=run, daemon=True).start()
    return q


def test_health_watch_reports_draining():
    g = gwtest.Gateway()
    ch = g.channel()
    q = reader(watch(ch))
    assert q.get(timeout=10) == ("msg", HC.SERVING)
    unknown = reader(watch(ch, "no.such.Service"))
    assert unknown.get(timeout=10) == ("msg", HC.SERVICE_UNKNOWN)
    time.sleep(0.6)
    assert q.empty()   # no change: nothing sent
    t0 = time.monotonic()
    os.kill(g.pid, signal.SIGTERM)
    assert q.get(timeout=10) == ("msg", HC.NOT_SERVING)
    assert q.get(timeout=10) == ("end", S.UNAVAILABLE, "the gateway is shutting down")
    assert g.proc.wait(timeout=10) == 0
    # The drain did not wait out its 5 s for the open streams.
    assert time.monotonic() - t0 < 3, time.monotonic() - t0
    ch.close()


def test_watch_stops_when_credentials_end():
    g = gwtest.Gateway()
    try:
        sb = g.create_sandbox()
        ident = g.placed_identity(sb.sandbox.id)
        ch = g.channel(ident)
        q = reader(watch(ch, "tessera.v1.Gateway"))
        assert q.get(timeout=10) == ("msg", HC.SERVING)
        g.stub(g.user("admin")).RevokeCertificate(pb.RevokeCertificateRequest(serial=ident.serial),
                                                  timeout=10)
        kind, code, details = q.get(timeout=5)
        assert (kind, code, details) == ("end", S.UNAUTHENTICATED, "certificate revoked")
        ch.close()
    finally:
        g.stop()


def reflect(ch, module, requests, version="v1"):
    call = ch.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                            request_serializer=module.ServerReflectionRequest.SerializeToString,
                            response_deserializer=module.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection(version):
    mod = refl_v1 if version == "v1" else refl_v1alpha
    R = mod.ServerReflectionRequest
    g = gwtest.Gateway()
    try:
        # Anonymous callers get health only.
        with pytest.raises(grpc.RpcError) as e:
            reflect(g.channel(), mod, [R(list_services="")], version)
        assert e.value.code() == S.UNAUTHENTICATED
        assert e.value.details() == "client certificate required"

        ch = g.channel(g.user("bob"))   # any role
        out = reflect(ch, mod, [R(host="h", list_services=""),
                                R(file_containing_symbol="tessera.v1.Gateway"),
                                R(file_containing_symbol="tessera.v1.CreateSandboxRequest"),
                                R(file_by_filename="grpc/health/v1/health.proto"),
                                R(file_containing_symbol="no.such.Symbol"),
                                R(all_extension_numbers_of_type="tessera.v1.Sandbox")], version)
        assert len(out) == 6
        assert out[0].valid_host == "h" and out[0].original_request.list_services == ""
        assert sorted(s.name for s in out[0].list_services_response.service) == [
            "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection", "tessera.v1.Gateway"]
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in out[1].file_descriptor_response.file_descriptor_proto]
        assert files[0].name == "tessera/v1/gateway.proto"
        pool = descriptor_pool.DescriptorPool()
        for f in reversed(files):
            pool.Add(f)
        svc = pool.FindServiceByName("tessera.v1.Gateway")
        assert {m.name for m in svc.methods} == {m.name for m in
                                                 pb.DESCRIPTOR.services_by_name["Gateway"].methods}
        create = svc.FindMethodByName("CreateSandbox")
        assert create.input_type.full_name == "tessera.v1.CreateSandboxRequest"
        assert [f.name for f in create.input_type.fields] == \
            [f.name for f in pb.CreateSandboxRequest.DESCRIPTOR.fields]
        assert out[2].file_descriptor_response.file_descriptor_proto[0] == \
            out[1].file_descriptor_response.file_descriptor_proto[0]
        health = descriptor_pb2.FileDescriptorProto.FromString(
            out[3].file_descriptor_response.file_descriptor_proto[0])
        assert health.package == "grpc.health.v1"
        assert [m.name for m in health.service[0].method] == ["Check", "Watch"]
        assert out[4].error_response.error_code == 5
        assert out[4].error_response.error_message == "symbol not found: no.such.Symbol"
        assert out[5].all_extension_numbers_response.base_type_name == "tessera.v1.Sandbox"
        assert list(out[5].all_extension_numbers_response.extension_number) == []
        ch.close()
    finally:
        g.stop()


def test_gzip_requests():
    g = gwtest.Gateway()   # limits.max_message_bytes: 1 MiB
    try:
        admin = g.user("admin")
        ch = g.channel(admin)
        stub = gwtest.pb_grpc.GatewayStub(ch)
        r = stub.GetTrustBundle(pb.GetTrustBundleRequest(), compression=grpc.Compression.Gzip,
                                timeout=10)
        assert r.trust_domain == TD
        name = "gz-" + os.urandom(4).hex()
        r = stub.CreateSandbox(pb.CreateSandboxRequest(name=name, policy=gwtest.POLICY),
                               compression=grpc.Compression.Gzip, timeout=10)
        assert r.sandbox.name == name
        # 2 MiB of policy compress to a few KiB: refused by its inflated size.
        big = pb.CreateSandboxRequest(name="gz-big", policy="#" + "a" * (2 << 20))
        assert len(big.SerializeToString()) > (1 << 20)
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateSandbox(big, compression=grpc.Compression.Gzip, timeout=10)
        assert e.value.code() == S.RESOURCE_EXHAUSTED
        assert e.value.details() == ("received message larger than max after decompression "
                                     "(more than 1048576 bytes)")
        # Just under the limit inflates and is served (the handler's own answer).
        fits = pb.GetTrustBundleRequest()
        assert stub.GetTrustBundle(fits, compression=grpc.Compression.Gzip, timeout=10)
        ch.close()
        assert g.alive()
    finally:
        g.stop()


def test_standard_metrics():
    before = time.time()
    g = gwtest.Gateway(metrics=True)
    after = time.time()
    try:
        stub = g.stub(g.user("bob"))
        for _ in range(3):
            stub.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.CreateSandbox(pb.CreateSandboxRequest(name="x"), timeout=10)
        reflect(g.channel(g.user("bob")), refl_v1, [refl_v1.ServerReflectionRequest(
            list_services="")])
        s = g.scrape()
        m = lambda name, **kw: gwtest.metric(s, name, **kw)
        gtb = dict(grpc_type="unary", grpc_service="tessera.v1.Gateway",
                   grpc_method="GetTrustBundle")
        assert m("grpc_server_started_total", **gtb) == 3
        assert m("grpc_server_handled_total", grpc_code="OK", **gtb) == 3
        assert m("grpc_server_handling_seconds_count", **gtb) == 3
        assert m("grpc_server_handling_seconds_bucket", le="+Inf", **gtb) == 3
        assert 0 < m("grpc_server_handling_seconds_sum", **gtb) < 3
        cs = dict(grpc_type="unary", grpc_service="tessera.v1.Gateway",
                  grpc_method="CreateSandbox")
        assert m("grpc_server_handled_total", grpc_code="PERMISSION_DENIED", **cs) == 1
        assert m("grpc_server_handled_total", grpc_code="OK", **cs) == 0
        assert m("grpc_server_started_total", grpc_type="bidi_stream",
                 grpc_service="grpc.reflection.v1.ServerReflection",
                 grpc_method="ServerReflectionInfo") == 1
        assert m("grpc_server_started_total", grpc_type="server_stream",
                 grpc_service="grpc.health.v1.Health", grpc_method="Watch") == 0
        # process_*
        assert abs(m("process_open_fds") - g.fd_count()) <= 3
        assert abs(m("process_resident_memory_bytes") / 1024 - g.rss_kib()) < 4096
        assert m("process_max_fds") >= 1024
        assert 0 < m("process_cpu_seconds_total") < 60
        assert before - 1 <= m("process_start_time_seconds") <= after + 1
        # tessera_build_info: what --version says.
        v = subprocess.run([os.path.join(BIN, "tessera-gateway"), "--version"],
                           capture_output=True, text=True).stdout
        mv = re.match(r"tessera-gateway (\S+) \(git (\S+); built with [^;]+, running (.+)\)\n",
                      v)
        assert m("tessera_build_info", version=mv.group(1), git=mv.group(2),
                 openssl=mv.group(3)) == 1
    finally:
        g.stop()
