#!/usr/bin/python3
"""A small Tessera client on the stock gRPC library (python3-grpcio).

Run from the repository root after `make run` (which generates the stubs in
build/py and the PKI in var/pki):

    /usr/bin/python3 docs/examples/client.py health
    /usr/bin/python3 docs/examples/client.py create demo
    /usr/bin/python3 docs/examples/client.py list
    /usr/bin/python3 docs/examples/client.py get demo
    /usr/bin/python3 docs/examples/client.py certs demo
    /usr/bin/python3 docs/examples/client.py revoke SERIAL
    /usr/bin/python3 docs/examples/client.py delete demo

Options: --addr HOST:PORT (default localhost:8443), --pki DIR (default
var/pki), --user NAME (default admin: var/pki/users/admin.pem/.key).
"""
import argparse
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "build", "py"))

import importlib.util  # noqa: E402

import grpc  # noqa: E402
from tessera.v1 import gateway_pb2 as pb, gateway_pb2_grpc  # noqa: E402

# grpcio owns the `grpc` package name, so the generated health module is
# loaded by its path.
_spec = importlib.util.spec_from_file_location(
    "health_pb2", os.path.join(ROOT, "build", "py", "grpc", "health", "v1", "health_pb2.py"))
health_pb2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health_pb2)

POLICY = """version: 1
filesystem:
  read_write: [/workspace]
network:
  default: deny
process:
  max_processes: 64
"""


def channel(args, with_cert=True):
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(os.path.join(args.pki, "bundle.pem")),
        private_key=read(os.path.join(args.pki, "users", args.user + ".key")) if with_cert else None,
        certificate_chain=read(os.path.join(args.pki, "users", args.user + ".pem")) if with_cert
        else None)
    return grpc.secure_channel(args.addr, creds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--addr", default="localhost:8443")
    ap.add_argument("--pki", default=os.path.join(ROOT, "var", "pki"))
    ap.add_argument("--user", default="admin")
    ap.add_argument("command", choices=["health", "create", "list", "get", "delete", "certs",
                                        "revoke", "bundle"])
    ap.add_argument("arg", nargs="?")
    args = ap.parse_args()

    try:
        if args.command == "health":
            check = channel(args, with_cert=False).unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString)
            r = check(health_pb2.HealthCheckRequest(), timeout=5)
            print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
            return 0
        gw = gateway_pb2_grpc.GatewayStub(channel(args))
        if args.command == "create":
            r = gw.CreateSandbox(pb.CreateSandboxRequest(name=args.arg, policy=POLICY), timeout=10)
            print(f"created {r.sandbox.name}  id={r.sandbox.id}\n  identity {r.sandbox.spiffe_id}"
                  f"\n  first certificate serial {r.certificate_serial}")
        elif args.command == "list":
            token = ""
            while True:
                page = gw.ListSandboxes(pb.ListSandboxesRequest(page_token=token), timeout=10)
                for s in page.sandboxes:
                    print(f"{s.id}  {s.name:<20} {s.state:<8} {s.driver}")
                token = page.next_page_token
                if not token:
                    break
        elif args.command == "get":
            s = gw.GetSandbox(pb.GetSandboxRequest(name=args.arg), timeout=10).sandbox
            print(s)
        elif args.command == "delete":
            r = gw.DeleteSandbox(pb.DeleteSandboxRequest(name=args.arg), timeout=10)
            print(f"deleted {r.sandbox.name}; {r.revoked_certificates} certificate(s) revoked")
        elif args.command == "certs":
            s = gw.GetSandbox(pb.GetSandboxRequest(name=args.arg), timeout=10).sandbox
            token = ""
            while True:
                page = gw.ListCertificates(pb.ListCertificatesRequest(
                    sandbox_id=s.id, page_token=token), timeout=10)
                for c in page.certificates:
                    state = f"revoked ({c.revocation_reason})" if c.revoked_at else "valid"
                    print(f"{c.serial}  not_after={c.not_after}  {state}")
                token = page.next_page_token
                if not token:
                    break
        elif args.command == "revoke":
            r = gw.RevokeCertificate(pb.RevokeCertificateRequest(serial=args.arg), timeout=10)
            print(f"revoked {r.certificate.serial} ({r.certificate.spiffe_id})")
        elif args.command == "bundle":
            print(gw.GetTrustBundle(pb.GetTrustBundleRequest(), timeout=10).bundle_pem, end="")
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
