// ConnectionGuard: what libzmq buffers per connection, measured and bounded.
//
// A real ROUTER on loopback plays the server; the test thread reports what it
// receives and sends, as RpcServer's socket thread does, and runs the scans.
#include "src/connection_guard.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zmq.h>

#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "tests/raw_zmtp.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

TEST(PortOfEndpointTest, ReadsThePort) {
  EXPECT_EQ(PortOfEndpoint("tcp://0.0.0.0:7000"), 7000);
  EXPECT_EQ(PortOfEndpoint("tcp://[::]:65535"), 65535);
  EXPECT_EQ(PortOfEndpoint("tcp://127.0.0.1:65536"), 0);
  EXPECT_EQ(PortOfEndpoint("inproc://x"), 0);
  EXPECT_EQ(PortOfEndpoint("tcp://h:"), 0);
}

class ConnectionGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::sndhwm, 100000);
    router_.bind("tcp://127.0.0.1:0");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    ConnectionGuard::Limits limits;
    limits.max_bytes_per_connection = 4u << 20;
    limits.max_bytes_total = 64u << 20;
    guard_ = std::make_unique<ConnectionGuard>(PortOfEndpoint(endpoint_), limits);
  }

  std::unique_ptr<zmq::socket_t> Dealer() {
    auto s = std::make_unique<zmq::socket_t>(client_ctx_, zmq::socket_type::dealer);
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::sndhwm, 0);
    s->connect(endpoint_);
    return s;
  }

  // Receives what has arrived and reports it, as the server's socket thread
  // does. Returns the ticket of the last message.
  ConnectionGuard::Ticket Drain(std::chrono::milliseconds wait) {
    ConnectionGuard::Ticket last;
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    while (zmq::poll(&item, 1, wait) > 0) {
      std::vector<zmq::message_t> frames;
      (void)zmq::recv_multipart(router_, std::back_inserter(frames));
      uint64_t bytes = 0;
      for (size_t i = 1; i < frames.size(); ++i) bytes += frames[i].size();
      last = guard_->Received(zmq_msg_get(frames[1].handle(), ZMQ_SRCFD),
                              frames[0].to_string_view(), bytes, frames.size() - 1);
      last_peer_ = frames[0].to_string();
      ++received_;
      wait = 0ms;
    }
    return last;
  }

  zmq::context_t ctx_;
  zmq::context_t client_ctx_;
  zmq::socket_t router_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::unique_ptr<ConnectionGuard> guard_;
  std::string last_peer_;
  size_t received_ = 0;
};

// A peer that streams the frames of a message and never sends the last one
// (raw ZMTP: libzmq itself never puts an unfinished message on the wire) is
// cut off once it holds more than the limit; a peer that sends complete
// messages of the same total size is not.
TEST_F(ConnectionGuardTest, DropsAPeerThatNeverFinishesAMessage) {
  auto good = Dealer();
  int bad = raw_zmtp::ConnectLoopback(PortOfEndpoint(endpoint_));
  ASSERT_GE(bad, 0);
  timeval five{5, 0};
  setsockopt(bad, SOL_SOCKET, SO_SNDTIMEO, &five, sizeof(five));
  ASSERT_TRUE(raw_zmtp::SendAll(bad, raw_zmtp::Hello()));
  const std::string chunk(256u << 10, 'x');
  const std::string frame = raw_zmtp::LongFrameHeader(chunk.size(), /*more=*/true) + chunk;
  for (int round = 0; round < 200 && guard_->dropped() == 0; ++round) {
    // 1 MiB complete messages from the good peer, 1 MiB of unfinished
    // message from the bad one, per round.
    ASSERT_TRUE(good->send(zmq::buffer(chunk), zmq::send_flags::sndmore));
    ASSERT_TRUE(good->send(zmq::buffer(chunk), zmq::send_flags::sndmore));
    ASSERT_TRUE(good->send(zmq::buffer(chunk), zmq::send_flags::sndmore));
    ASSERT_TRUE(good->send(zmq::buffer(chunk), zmq::send_flags::none));
    for (int i = 0; i < 4; ++i) {
      if (!raw_zmtp::SendAll(bad, frame)) break;
    }
    Drain(20ms);
    guard_->Scan();
  }
  close(bad);
  EXPECT_EQ(guard_->dropped(), 1u);
  EXPECT_GT(guard_->peak_total(), 4u << 20);
  // The good peer's connection is the one still there: its next message
  // arrives under the same routing id.
  const std::string before = last_peer_;
  ASSERT_TRUE(good->send(zmq::buffer(chunk), zmq::send_flags::none));
  Drain(2000ms);
  EXPECT_EQ(last_peer_, before);
  EXPECT_EQ(guard_->Scan(), 0u);
}

// A peer that asks and never reads the answers is cut off once the answers
// it has not taken pass the limit.
TEST_F(ConnectionGuardTest, DropsAPeerThatDoesNotReadItsReplies) {
  auto reader = Dealer();
  auto sluggard = std::make_unique<zmq::socket_t>(client_ctx_, zmq::socket_type::dealer);
  sluggard->set(zmq::sockopt::linger, 0);
  sluggard->set(zmq::sockopt::rcvhwm, 1);
  sluggard->set(zmq::sockopt::rcvbuf, 64 << 10);
  sluggard->connect(endpoint_);
  ASSERT_TRUE(sluggard->send(zmq::str_buffer("hello"), zmq::send_flags::none));
  ConnectionGuard::Ticket sluggard_ticket = Drain(2000ms);
  const std::string sluggard_id = last_peer_;
  ASSERT_TRUE(reader->send(zmq::str_buffer("hello"), zmq::send_flags::none));
  ConnectionGuard::Ticket reader_ticket = Drain(2000ms);
  const std::string reader_id = last_peer_;
  ASSERT_NE(sluggard_ticket.fd, reader_ticket.fd);

  const std::string reply(512u << 10, 'r');
  for (int round = 0; round < 200 && guard_->dropped() == 0; ++round) {
    for (auto [id, ticket] :
         {std::pair{sluggard_id, sluggard_ticket}, std::pair{reader_id, reader_ticket}}) {
      router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
      router_.send(zmq::buffer(reply), zmq::send_flags::dontwait);
      guard_->Sent(ticket, reply.size(), 1);
    }
    zmq::message_t m;
    while (reader->recv(m, zmq::recv_flags::dontwait)) {
    }
    std::this_thread::sleep_for(10ms);
    while (reader->recv(m, zmq::recv_flags::dontwait)) {
    }
    guard_->Scan();
  }
  EXPECT_EQ(guard_->dropped(), 1u);
  // The reader is still connected: it can still ask under its old identity.
  ASSERT_TRUE(reader->send(zmq::str_buffer("again"), zmq::send_flags::none));
  Drain(2000ms);
  EXPECT_EQ(last_peer_, reader_id);
}

// Nothing to hold, nothing dropped: an idle connection and a closed one.
TEST_F(ConnectionGuardTest, LeavesQuietConnectionsAlone) {
  auto quiet = Dealer();
  {
    auto gone = Dealer();
    ASSERT_TRUE(gone->send(zmq::str_buffer("bye"), zmq::send_flags::none));
    Drain(2000ms);
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(guard_->Scan(), 0u);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(guard_->dropped(), 0u);
}

}  // namespace
}  // namespace shardfs
