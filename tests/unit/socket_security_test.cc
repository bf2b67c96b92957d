// Socket security: RpcServer and RpcChannel with CURVE over real loopback
// sockets, a server and its clients in contexts with keys of their own.
#include "src/socket_security.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "src/rpc_channel.h"
#include "src/rpc_server.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

RpcReply Echo(RpcRequest& req) {
  FieldWriter w;
  w.U64("x", req.header.fields.OptU64("x", 0).value());
  return RpcReply::Ok(req.type(), std::move(w));
}

ClusterKey NewKey() {
  auto k = ClusterKey::Generate();
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return *k;
}

class SocketSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server's refusals are logged from its ZAP thread: catch them.
    sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
    previous_logger_ = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
    key_ = NewKey();
  }
  void TearDown() override {
    // Before the logger goes: the server's threads log through it.
    server_.reset();
    server_key_.reset();
    spdlog::set_default_logger(previous_logger_);
  }

  void StartServer(std::optional<ClusterKey> key) {
    server_key_.emplace(server_ctx_, std::move(key));
    server_ =
        std::make_unique<RpcServer>(server_ctx_, RpcServer::Options{"tcp://127.0.0.1:0", 2}, Echo);
    ASSERT_TRUE(server_->Start().ok());
  }

  // One call from a context of its own holding `key` (nullopt: plain TCP).
  Result<RpcResponse> CallWith(std::optional<ClusterKey> key, uint64_t x = 7) {
    zmq::context_t ctx;
    ScopedContextKey scoped(ctx, std::move(key));
    RpcChannel channel(ctx, server_->endpoint());
    FieldWriter w;
    w.U64("x", x);
    return channel.Call(MessageType::kNodePing, w, 5s);
  }

  std::vector<std::string> LogLines(const std::string& containing) {
    std::vector<std::string> out;
    for (const auto& line : sink_->last_formatted()) {
      if (line.find(containing) != std::string::npos) out.push_back(line);
    }
    return out;
  }

  // Waits (briefly) for a server log line; refusals are logged from the
  // server's own thread, a moment after the client gave up.
  bool WaitForLog(const std::string& containing) {
    for (auto end = Clock::now() + 3s; Clock::now() < end; std::this_thread::sleep_for(20ms)) {
      if (!LogLines(containing).empty()) return true;
    }
    return false;
  }

  std::string AllLogs() {
    std::string all;
    for (const auto& line : sink_->last_formatted()) all += line;
    return all;
  }

  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_logger_;
  ClusterKey key_;
  zmq::context_t server_ctx_;
  std::optional<ScopedContextKey> server_key_;
  std::unique_ptr<RpcServer> server_;
};

TEST_F(SocketSecurityTest, MembersWithTheClusterKeyTalk) {
  ASSERT_NO_FATAL_FAILURE(StartServer(key_));
  for (uint64_t x : {1, 2, 3}) {
    auto r = CallWith(key_, x);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r->header.fields.U64("x"), x);
  }
  // The same key loaded from its secret is the same membership.
  auto r = CallWith(*ClusterKey::FromSecret(key_.secret_z85));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(LogLines("refused").empty()) << AllLogs();
}

TEST_F(SocketSecurityTest, AnotherKeyIsRefusedQuicklyAndClearlyOnBothSides) {
  ASSERT_NO_FATAL_FAILURE(StartServer(key_));
  const auto start = Clock::now();
  auto r = CallWith(NewKey());
  const auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnauthenticated) << r.status().ToString();
  EXPECT_TRUE(IsKeyRefused(r.status()));
  EXPECT_FALSE(IsNotConnected(r.status()));
  EXPECT_NE(r.status().message().find("different cluster key"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("--key"), std::string::npos);
  // The connect timeout, not the call's deadline.
  EXPECT_LT(took, 3s);
  ASSERT_TRUE(WaitForLog("security: refused")) << AllLogs();
  auto lines = LogLines("security: refused");
  // The address is read while the connection is open, which a loaded
  // machine may miss ("an unknown address"); the reason is always there.
  EXPECT_NE(lines[0].find(" from "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("another cluster key"), std::string::npos) << lines[0];
  // The client retried about ten times; one line per address and 10 s.
  EXPECT_LE(lines.size(), 2u) << AllLogs();
  // Members are not disturbed.
  EXPECT_TRUE(CallWith(key_).ok());
}

TEST_F(SocketSecurityTest, AClientWithoutAKeyIsToldToGetOne) {
  ASSERT_NO_FATAL_FAILURE(StartServer(key_));
  auto r = CallWith(std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnauthenticated) << r.status().ToString();
  EXPECT_NE(r.status().message().find("requires a cluster key"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("--insecure"), std::string::npos);
  // Which side sees the mismatch first varies: the server refuses the
  // client, or the client hangs up first; either way the line names the key.
  ASSERT_TRUE(WaitForLog("security: ")) << AllLogs();
  EXPECT_FALSE(LogLines("cluster key").empty()) << AllLogs();
  EXPECT_FALSE(LogLines("127.0.0.1").empty()) << AllLogs();
}

TEST_F(SocketSecurityTest, AKeyedClientOfAnInsecureServerIsToldSo) {
  ASSERT_NO_FATAL_FAILURE(StartServer(std::nullopt));
  auto r = CallWith(key_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnauthenticated) << r.status().ToString();
  // Usually seen as a mechanism mismatch; when the server hangs up first
  // (a loaded machine) the client can only name both causes.
  EXPECT_NE(r.status().message().find("runs without a cluster key"), std::string::npos)
      << r.status().message();
  // Both without a key: plain TCP, as with --insecure everywhere.
  EXPECT_TRUE(CallWith(std::nullopt).ok());
}

TEST_F(SocketSecurityTest, TheZapHandlerAdmitsOnlyTheClusterKey) {
  // A client that knows the server's public key (so the handshake itself
  // goes through) but holds another keypair: only the ZAP check stops it.
  ASSERT_NO_FATAL_FAILURE(StartServer(key_));
  zmq::context_t ctx;
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  ClusterKey other = NewKey();
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::immediate, 1);
  socket.set(zmq::sockopt::curve_serverkey, key_.public_z85);
  socket.set(zmq::sockopt::curve_publickey, other.public_z85);
  socket.set(zmq::sockopt::curve_secretkey, other.secret_z85);
  auto watch = HandshakeWatch::Start(ctx, socket);
  ASSERT_NE(watch, nullptr);
  socket.connect(server_->endpoint());
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLOUT, 0};
  EXPECT_EQ(zmq::poll(&item, 1, 1000ms), 0);  // never connected, nothing can be sent
  auto why = watch->Explain();
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("refused this program's cluster key"), std::string::npos) << *why;
  ASSERT_TRUE(WaitForLog("its public key is not this cluster's key")) << AllLogs();
  EXPECT_NE(LogLines("its public key")[0].find("127.0.0.1"), std::string::npos);
  watch.reset();
}

TEST_F(SocketSecurityTest, ServersOfOneContextShareTheHandlerAndRestart) {
  ASSERT_NO_FATAL_FAILURE(StartServer(key_));
  // A second server in the same context (the registry has two sockets).
  RpcServer second(server_ctx_, RpcServer::Options{"tcp://127.0.0.1:0", 1}, Echo);
  ASSERT_TRUE(second.Start().ok());
  {
    zmq::context_t ctx;
    ScopedContextKey scoped(ctx, key_);
    RpcChannel channel(ctx, second.endpoint());
    FieldWriter w;
    w.U64("x", 5);
    EXPECT_TRUE(channel.Call(MessageType::kNodePing, w, 5s).ok());
  }
  second.Stop();
  EXPECT_TRUE(CallWith(key_).ok());
  // Stop both, start again in the same context: the handler comes back.
  server_.reset();
  server_ =
      std::make_unique<RpcServer>(server_ctx_, RpcServer::Options{"tcp://127.0.0.1:0", 2}, Echo);
  ASSERT_TRUE(server_->Start().ok());
  EXPECT_TRUE(CallWith(key_).ok());
  EXPECT_FALSE(CallWith(NewKey()).ok());
}

TEST(HandshakeWatchTest, NothingToExplainWhenNoServerListens) {
  zmq::context_t ctx;
  RpcChannel channel(ctx, "tcp://127.0.0.1:1");
  auto r = channel.Call(MessageType::kNodePing, FieldWriter(), 2s);
  ASSERT_FALSE(r.ok());
  // A server that is down is not a key problem.
  EXPECT_TRUE(IsNotConnected(r.status())) << r.status().ToString();
  EXPECT_FALSE(IsKeyRefused(r.status()));
}

}  // namespace
}  // namespace shardfs
