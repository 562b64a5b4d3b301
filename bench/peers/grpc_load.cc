// grpc_load: an independent unary load generator for `make bench` — Debian's
// gRPC C++ client (libgrpc++, async API), not Tessera's client library, so
// that the tail latency of the gateway and of the gRPC C++ server (grpc_ref)
// is measured by the same third-party client.
//
//   grpc_load --addr 127.0.0.1:PORT --bundle F --ids F --conns C --streams N
//             --seconds S [--threads T] [--warmup MS]
// IDS_FILE: "<sandbox_id> <cert> <key>" lines (bn_load's --ids); channel i
// uses identity i (its own certificate, so its own connection) and asks for
// that sandbox's config. N calls are kept in flight in all, spread evenly
// over the C channels (one HTTP/2 connection each, never shared: a local
// subchannel pool per channel); each completed call is replaced at once by
// the next (closed loop). Calls of the first --warmup ms (connection setup
// included) are not counted. Prints one JSON object: ops, seconds, rate,
// errors, p50/p90/p99/p999/max latency in µs.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tessera/v1/gateway.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using tessera::v1::GetSandboxConfigRequest;
using tessera::v1::GetSandboxConfigResponse;

std::string slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct Identity {
    std::string sandbox, cert, key;
};

struct Call {
    int slot = 0;
    Clock::time_point t0;
    grpc::ClientContext ctx;
    GetSandboxConfigResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<GetSandboxConfigResponse>> rpc;
};

struct Worker {
    grpc::CompletionQueue cq;
    std::vector<uint32_t> lat_us;
    long errors = 0;
    std::string first_error;
    std::thread t;
};

std::atomic<bool> stop_flag{false};
std::atomic<bool> counting{false};

void die(const char *what)
{
    std::fprintf(stderr, "grpc_load: %s\n", what);
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv)
{
    std::string addr, bundle_file, ids_file;
    int conns = 4, streams = 64, seconds = 5, threads = 2, warmup_ms = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i], v = argv[i + 1];
        if (a == "--addr") addr = v;
        else if (a == "--bundle") bundle_file = v;
        else if (a == "--ids") ids_file = v;
        else if (a == "--conns") conns = std::stoi(v);
        else if (a == "--streams") streams = std::stoi(v);
        else if (a == "--seconds") seconds = std::stoi(v);
        else if (a == "--threads") threads = std::stoi(v);
        else if (a == "--warmup") warmup_ms = std::stoi(v);
        else die("unknown option (see bench/peers/grpc_load.cc)");
    }
    if (addr.empty() || bundle_file.empty() || ids_file.empty()) die("--addr, --bundle, --ids");
    if (conns < 1 || streams < conns || seconds < 1 || threads < 1 || threads > 64)
        die("option out of range");

    std::vector<Identity> ids;
    {
        std::ifstream f(ids_file);
        Identity d;
        while (f >> d.sandbox >> d.cert >> d.key) ids.push_back(d);
    }
    if ((int)ids.size() < conns) die("fewer identities than --conns");
    std::string roots = slurp(bundle_file);

    std::vector<std::shared_ptr<grpc::Channel>> channels;
    std::vector<std::unique_ptr<tessera::v1::Gateway::Stub>> stubs;
    for (int i = 0; i < conns; i++) {
        grpc::SslCredentialsOptions o;
        o.pem_root_certs = roots;
        o.pem_cert_chain = slurp(ids[i].cert);
        o.pem_private_key = slurp(ids[i].key);
        grpc::ChannelArguments args;
        args.SetSslTargetNameOverride("localhost");
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        args.SetInt("grpc.bench_channel_index", i);  // never shared
        auto ch = grpc::CreateCustomChannel(addr, grpc::SslCredentials(o), args);
        if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)))
            die("cannot connect");
        channels.push_back(ch);
        stubs.push_back(tessera::v1::Gateway::NewStub(ch));
    }
    std::vector<GetSandboxConfigRequest> reqs(conns);
    for (int i = 0; i < conns; i++) reqs[i].set_sandbox_id(ids[i].sandbox);

    std::vector<std::unique_ptr<Worker>> workers;
    for (int t = 0; t < threads; t++) workers.push_back(std::make_unique<Worker>());

    auto start_call = [&](Worker &w, int slot) {
        Call *c = new Call;
        c->slot = slot;
        int ch = slot % conns;
        c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        c->t0 = Clock::now();
        c->rpc = stubs[ch]->PrepareAsyncGetSandboxConfig(&c->ctx, reqs[ch], &w.cq);
        c->rpc->StartCall();
        c->rpc->Finish(&c->resp, &c->status, c);
    };

    for (int t = 0; t < threads; t++) {
        workers[t]->lat_us.reserve(1 << 20);
        workers[t]->t = std::thread([&, t] {
            Worker &me = *workers[t];
            // Slots t, t+threads, ...: slot s uses channel s % conns.
            int inflight = 0;
            for (int s = t; s < streams; s += threads, inflight++) start_call(me, s);
            void *tag;
            bool ok;
            while (me.cq.Next(&tag, &ok)) {
                Call *c = static_cast<Call *>(tag);
                long long us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   Clock::now() - c->t0)
                                   .count();
                if (counting.load(std::memory_order_relaxed)) {
                    if (ok && c->status.ok()) {
                        me.lat_us.push_back((uint32_t)std::min<long long>(us, 4000000000LL));
                    } else {
                        me.errors++;
                        if (me.first_error.empty())
                            me.first_error = std::to_string((int)c->status.error_code()) +
                                             " " + c->status.error_message();
                    }
                }
                int slot = c->slot;
                delete c;
                if (!stop_flag.load(std::memory_order_relaxed)) {
                    start_call(me, slot);
                } else if (--inflight == 0) {
                    me.cq.Shutdown();
                }
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(warmup_ms));
    counting.store(true);
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    counting.store(false);
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    stop_flag.store(true);
    for (auto &w : workers) w->t.join();

    std::vector<uint32_t> all;
    long errors = 0;
    std::string first_error;
    for (auto &w : workers) {
        all.insert(all.end(), w->lat_us.begin(), w->lat_us.end());
        errors += w->errors;
        if (first_error.empty()) first_error = w->first_error;
    }
    if (!first_error.empty())
        std::fprintf(stderr, "grpc_load: first error: %s\n", first_error.c_str());
    std::sort(all.begin(), all.end());
    size_t n = all.size();
    auto pct = [&](double q) -> uint32_t {
        if (n == 0) return 0;
        size_t i = (size_t)(q * (double)n);
        return all[i < n ? i : n - 1];
    };
    std::printf("{\"mode\":\"grpc_load\",\"ops\":%zu,\"seconds\":%.3f,\"rate\":%.1f,"
                "\"errors\":%ld,\"conns\":%d,\"streams\":%d,\"threads\":%d,\"p50_us\":%u,"
                "\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u}\n",
                n, secs, (double)n / secs, errors, conns, streams, threads, pct(0.50),
                pct(0.90), pct(0.99), pct(0.999), n ? all[n - 1] : 0);
    return 0;
}
