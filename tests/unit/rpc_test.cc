// RpcServer and RpcChannel over real loopback sockets.
#include <gtest/gtest.h>

#include <thread>

#include "src/rpc_channel.h"
#include "src/rpc_server.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

// Echoes field "x" and the payload; type kNodeInfo sleeps for field "sleep_ms".
RpcReply EchoHandler(RpcRequest& req) {
  auto x = req.header.fields.OptU64("x", 0);
  if (!x.ok()) return RpcReply::Error(x.status());
  auto sleep_ms = req.header.fields.OptU64("sleep_ms", 0);
  if (sleep_ms.ok() && *sleep_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(*sleep_ms));
  if (*x == 13) return RpcReply::Error(Status::Error(ErrorCode::kNotFound, "unlucky"));
  FieldWriter w;
  w.U64("x", *x);
  if (req.has_payload) {
    return RpcReply::WithPayload(req.type(), std::move(w), std::move(req.payload));
  }
  return RpcReply::Ok(req.type(), std::move(w));
}

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ =
        std::make_unique<RpcServer>(ctx_, RpcServer::Options{"tcp://127.0.0.1:0", 4}, EchoHandler);
    ASSERT_TRUE(server_->Start().ok());
    channel_ = std::make_unique<RpcChannel>(ctx_, server_->endpoint());
  }
  void TearDown() override {
    channel_.reset();
    server_->Stop();
  }
  zmq::context_t ctx_;
  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<RpcChannel> channel_;
};

TEST_F(RpcTest, RoundTripWithPayload) {
  FieldWriter w;
  w.U64("x", 42);
  std::string payload(1 << 20, 'p');
  auto r = channel_->Call(MessageType::kNodePing, w, 2000ms, payload, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r->header.fields.U64("x"), 42u);
  EXPECT_EQ(r->payload_view(), payload);
}

TEST_F(RpcTest, ErrorReplyBecomesStatus) {
  FieldWriter w;
  w.U64("x", 13);
  auto r = channel_->Call(MessageType::kNodePing, w, 2000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(r.status().message(), "unlucky");
  // The socket stays usable after an error reply.
  FieldWriter ok;
  ok.U64("x", 1);
  EXPECT_TRUE(channel_->Call(MessageType::kNodePing, ok, 2000ms).ok());
}

TEST_F(RpcTest, DeadlineAndLateReplyIsNotMistaken) {
  FieldWriter slow;
  slow.U64("x", 1).U64("sleep_ms", 500);
  auto r = channel_->Call(MessageType::kNodePing, slow, 100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kTimeout);
  FieldWriter next;
  next.U64("x", 2);
  auto r2 = channel_->Call(MessageType::kNodePing, next, 2000ms);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2->header.fields.U64("x"), 2u);
}

TEST_F(RpcTest, NobodyListeningTimesOut) {
  RpcChannel dead(ctx_, "tcp://127.0.0.1:1");
  FieldWriter w;
  auto start = std::chrono::steady_clock::now();
  auto r = dead.Call(MessageType::kNodePing, w, 200ms);
  EXPECT_EQ(r.status().code(), ErrorCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(RpcTest, SlowRequestDoesNotStallOthers) {
  std::thread slow([&] {
    FieldWriter w;
    w.U64("x", 1).U64("sleep_ms", 1500);
    EXPECT_TRUE(channel_->Call(MessageType::kNodePing, w, 5000ms).ok());
  });
  std::this_thread::sleep_for(50ms);
  auto start = std::chrono::steady_clock::now();
  FieldWriter w;
  w.U64("x", 2);
  EXPECT_TRUE(channel_->Call(MessageType::kNodePing, w, 5000ms).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  slow.join();
}

TEST_F(RpcTest, CallAllToSeveralServers) {
  RpcServer second(ctx_, RpcServer::Options{"tcp://127.0.0.1:0", 2}, EchoHandler);
  ASSERT_TRUE(second.Start().ok());
  RpcChannel other(ctx_, second.endpoint());
  RpcChannel dead(ctx_, "tcp://127.0.0.1:1");
  FieldWriter a, b, c;
  a.U64("x", 1);
  b.U64("x", 2);
  c.U64("x", 3);
  std::vector<RpcCall> calls(3);
  calls[0] = {channel_.get(), MessageType::kNodePing, &a, {}, false};
  calls[1] = {&other, MessageType::kNodePing, &b, {}, false};
  calls[2] = {&dead, MessageType::kNodePing, &c, {}, false};
  auto results = RpcChannel::CallAll(calls, 300ms);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(*results[0]->header.fields.U64("x"), 1u);
  EXPECT_EQ(*results[1]->header.fields.U64("x"), 2u);
  EXPECT_EQ(results[2].status().code(), ErrorCode::kUnavailable);
  second.Stop();
}

TEST_F(RpcTest, CallUntilReturnsWhenEnoughAnswered) {
  FieldWriter fast, slow;
  fast.U64("x", 1);
  slow.U64("x", 2).U64("sleep_ms", 2000);
  std::vector<RpcCall> calls(2);
  calls[0] = {channel_.get(), MessageType::kNodePing, &slow, {}, false};
  calls[1] = {channel_.get(), MessageType::kNodePing, &fast, {}, false};
  auto start = std::chrono::steady_clock::now();
  auto results = RpcChannel::CallUntil(calls, 1, 5000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_TRUE(results[1].ok());
  EXPECT_FALSE(results[0].ok());
}

// Raw garbage from a DEALER socket: the server answers an error and goes on.
TEST_F(RpcTest, GarbageGetsErrorReplies) {
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::rcvtimeo, 2000);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(server_->endpoint());
  const std::vector<std::vector<std::string>> bad = {
      {"garbage"},
      {std::string("\x94\x01\x64\x01", 4)},                    // truncated array
      {std::string("\x94\x09\x64\x01\x80", 5)},                // wrong version
      {std::string("\x94\x01\x64\x01\x80", 5), "p", "extra"},  // three frames
      {std::string("\x93\x01\x64\x01", 4)},                    // array of 3
      {std::string("\xc1", 1)},                                // never-used byte
  };
  for (const auto& frames : bad) {
    for (size_t i = 0; i < frames.size(); ++i) {
      raw.send(zmq::buffer(frames[i]),
               i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    std::vector<zmq::message_t> reply;
    ASSERT_TRUE(zmq::recv_multipart(raw, std::back_inserter(reply)).has_value());
    auto header =
        DecodeHeader(std::string_view(static_cast<const char*>(reply[0].data()), reply[0].size()));
    ASSERT_TRUE(header.ok());
    EXPECT_TRUE(header->IsError());
  }
  FieldWriter w;
  w.U64("x", 5);
  EXPECT_TRUE(channel_->Call(MessageType::kNodePing, w, 2000ms).ok());
}

TEST_F(RpcTest, WrongFieldTypeIsAnErrorNotACrash) {
  FieldWriter w;
  w.Str("x", "not a number");
  auto r = channel_->Call(MessageType::kNodePing, w, 2000ms);
  EXPECT_EQ(r.status().code(), ErrorCode::kBadMessage);
}

}  // namespace
}  // namespace shardfs

namespace shardfs {
namespace {

TEST_F(RpcTest, HedgedCallGoesToTheNextWhenTheFirstIsSlow) {
  FieldWriter slow, fast;
  slow.U64("x", 1).U64("sleep_ms", 3000);
  fast.U64("x", 2);
  std::vector<RpcCall> calls(2);
  calls[0] = {channel_.get(), MessageType::kNodePing, &slow, {}, false, 0ms};
  calls[1] = {channel_.get(), MessageType::kNodePing, &fast, {}, false, 200ms};
  auto start = std::chrono::steady_clock::now();
  auto results = RpcChannel::CallUntil(calls, 1, 5000ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1500ms);
  ASSERT_TRUE(results[1].ok());
}

TEST_F(RpcTest, HedgedCallSkipsAheadOnFailure) {
  RpcChannel dead(ctx_, "tcp://127.0.0.1:1");
  FieldWriter a, b;
  a.U64("x", 13);  // error reply at once
  b.U64("x", 2);
  std::vector<RpcCall> calls(2);
  calls[0] = {channel_.get(), MessageType::kNodePing, &a, {}, false, 0ms};
  calls[1] = {channel_.get(), MessageType::kNodePing, &b, {}, false, 3000ms};
  auto start = std::chrono::steady_clock::now();
  auto results = RpcChannel::CallUntil(calls, 1, 5000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  EXPECT_EQ(results[0].status().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(results[1].ok());
}

TEST_F(RpcTest, HedgedCallNeverSendsUnneededCopies) {
  FieldWriter a, b;
  a.U64("x", 1);
  b.U64("x", 2);
  std::vector<RpcCall> calls(2);
  calls[0] = {channel_.get(), MessageType::kNodePing, &a, {}, false, 0ms};
  calls[1] = {channel_.get(), MessageType::kNodePing, &b, {}, false, 3000ms};
  auto results = RpcChannel::CallUntil(calls, 1, 5000ms);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].status().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace shardfs
