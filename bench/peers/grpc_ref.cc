// grpc_ref: the unary-RPC reference peer for `make bench` — Debian's gRPC C++
// (libgrpc++) serving tessera.v1.Gateway/GetSandboxConfig with the gateway's
// certificate, key and trust bundle: mTLS with the client certificate
// required and verified. Like the gateway, the caller's identity comes from
// the verified peer certificate (its spiffe://.../sandbox/<id> URI SAN): a
// sandbox may read only its own config; the configs live in memory.
//
//   grpc_ref CERT_CHAIN KEY BUNDLE IDS_FILE POLICY_FILE THREADS
// IDS_FILE: "<sandbox_id> <cert> <key>" lines (bn_load's --ids). Listens on
// 127.0.0.1:0 and prints "listening on 127.0.0.1:PORT".
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <unordered_map>

#include "tessera/v1/gateway.grpc.pb.h"

namespace {

std::string slurp(const char *path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

class Gateway final : public tessera::v1::Gateway::Service {
  public:
    Gateway(std::unordered_map<std::string, std::string> names, std::string policy)
        : names_(std::move(names)), policy_(std::move(policy)) {}

    grpc::Status GetSandboxConfig(grpc::ServerContext *ctx,
                                  const tessera::v1::GetSandboxConfigRequest *req,
                                  tessera::v1::GetSandboxConfigResponse *resp) override
    {
        auto auth = ctx->auth_context();
        std::string caller;
        for (const auto &v : auth->FindPropertyValues("x509_subject_alternative_name")) {
            std::string s(v.data(), v.size());
            const std::string prefix = "spiffe://tessera.local/sandbox/";
            if (s.rfind(prefix, 0) == 0) caller = s.substr(prefix.size());
        }
        if (caller.empty())
            return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no sandbox identity");
        if (req->sandbox_id() != caller)
            return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not your sandbox");
        auto it = names_.find(caller);
        if (it == names_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sandbox");
        resp->set_sandbox_id(caller);
        resp->set_name(it->second);
        resp->set_policy(policy_);
        resp->set_policy_version(1);
        return grpc::Status::OK;
    }

  private:
    std::unordered_map<std::string, std::string> names_;
    std::string policy_;
};

}  // namespace

int main(int argc, char **argv)
{
    if (argc != 7) {
        std::cerr << "usage: grpc_ref CERT_CHAIN KEY BUNDLE IDS_FILE POLICY_FILE THREADS\n";
        return 2;
    }
    std::unordered_map<std::string, std::string> names;
    {
        std::ifstream f(argv[4]);
        std::string id, c, k;
        int i = 0;
        while (f >> id >> c >> k) names[id] = "bench-" + std::to_string(i++);
    }
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = slurp(argv[3]);
    ssl.pem_key_cert_pairs.push_back({slurp(argv[2]), slurp(argv[1])});
    Gateway svc(std::move(names), slurp(argv[5]));
    int threads = std::stoi(argv[6]);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
    b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, threads);
    b.RegisterService(&svc);
    std::unique_ptr<grpc::Server> server = b.BuildAndStart();
    if (!server || port == 0) {
        std::cerr << "grpc_ref: cannot listen\n";
        return 1;
    }
    std::cout << "listening on 127.0.0.1:" << port << std::endl;
    server->Wait();
    return 0;
}
