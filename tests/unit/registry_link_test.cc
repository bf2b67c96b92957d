// RegistryLink's bad-replica reports against a stand-in registry (an
// RpcServer in this process that answers registrations and heartbeats and
// records kReportBadReplica): reports arrive with the node's id, wait while
// the registry is away, are sent once each, and a full queue drops the
// oldest.
#include "src/registry_link.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <vector>

#include "src/rpc_server.h"
#include "tests/integration/daemon_process.h"
#include "tests/test_data.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

const std::string kNodeId = "00112233445566778899aabbccddeeff";

// Answers what a node's link sends; handlers run on the server's workers.
class FakeRegistry {
 public:
  FakeRegistry(zmq::context_t& context, uint16_t port, ErrorCode report_answer = ErrorCode::kOk)
      : report_answer_(report_answer) {
    RpcServer::Options o;
    o.endpoint = Endpoint(port);
    o.workers = 2;
    server_ = std::make_unique<RpcServer>(context, o, [this](RpcRequest& r) { return Handle(r); });
  }
  ~FakeRegistry() { server_->Stop(); }

  Status Start() { return server_->Start(); }
  std::vector<ReportBadReplicaRequest> reports() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

 private:
  RpcReply Handle(RpcRequest& request) {
    switch (request.type()) {
      case MessageType::kRegisterNode:
        return RpcReply::Ok(request.type(), RegisterNodeReply{1}.Encode());
      case MessageType::kHeartbeat:
        return RpcReply::Ok(request.type(), HeartbeatReply{1, true}.Encode());
      case MessageType::kReportBadReplica: {
        auto report = ReportBadReplicaRequest::Decode(request.header.fields);
        if (!report.ok()) return RpcReply::Error(report.status());
        {
          std::lock_guard<std::mutex> lock(mu_);
          reports_.push_back(*report);
        }
        if (report_answer_ != ErrorCode::kOk) {
          return RpcReply::Error(Status::Error(report_answer_, "no such shard"));
        }
        return RpcReply::Ok(request.type());
      }
      default:
        return RpcReply::Error(Status::Error(ErrorCode::kUnknownType, "not here"));
    }
  }

  const ErrorCode report_answer_;
  std::unique_ptr<RpcServer> server_;
  mutable std::mutex mu_;
  std::vector<ReportBadReplicaRequest> reports_;  // guarded by mu_
};

class RegistryLinkReportTest : public ::testing::Test {
 protected:
  std::unique_ptr<RegistryLink> MakeLink(uint16_t registry_port, size_t max_queued = 1024) {
    RegistryLink::Options o;
    o.registry_endpoint = Endpoint(registry_port);
    o.heartbeat_interval = 100ms;
    o.rpc_timeout = 500ms;
    o.max_queued_reports = max_queued;
    return std::make_unique<RegistryLink>(context_, o, [] {
      RegistryLink::NodeReport r;
      r.node_id = kNodeId;
      r.endpoint = "tcp://127.0.0.1:7410";
      r.host = "test-host";
      r.capacity = 1 << 30;
      return r;
    });
  }

  zmq::context_t context_;
};

TEST_F(RegistryLinkReportTest, ReportsReachTheRegistryOnce) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  FakeRegistry registry(context_, port);
  ASSERT_TRUE(registry.Start().ok());
  auto link = MakeLink(port);
  ASSERT_TRUE(link->Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link->registered(); }, 10s));

  link->ReportBadReplica(ShardKey{5, 1, 9}, "CORRUPT: block 0");
  link->ReportBadReplica(ShardKey{5, 1, 9}, "CORRUPT: again");  // already queued
  link->ReportBadReplica(ShardKey{5, 2, 9}, std::string(1000, 'x'));
  ASSERT_TRUE(WaitUntil([&] { return link->reports_sent() >= 2; }, 10s));
  std::this_thread::sleep_for(300ms);  // a few more heartbeat rounds: nothing is sent twice
  link->Stop();

  auto reports = registry.reports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].node_id, kNodeId);
  EXPECT_EQ(reports[0].key, (ShardKey{5, 1, 9}));
  EXPECT_EQ(reports[0].reason, "CORRUPT: block 0");
  EXPECT_EQ(reports[1].key, (ShardKey{5, 2, 9}));
  EXPECT_EQ(reports[1].reason.size(), kMaxBadReplicaReasonLength);
  EXPECT_EQ(link->reports_sent(), 2u);
}

TEST_F(RegistryLinkReportTest, ReportsWaitForAnAbsentRegistryAndAFullQueueDropsTheOldest) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  auto link = MakeLink(port, /*max_queued=*/3);
  ASSERT_TRUE(link->Start().ok());
  for (uint32_t i = 0; i < 5; ++i) link->ReportBadReplica(ShardKey{7, i, 1}, "bad");
  // Longer than report_attempts heartbeat rounds: the reports must still be
  // there when the registry appears.
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(link->reports_sent(), 0u);

  FakeRegistry registry(context_, port);
  ASSERT_TRUE(registry.Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link->reports_sent() >= 3; }, 15s));
  link->Stop();
  auto reports = registry.reports();
  ASSERT_EQ(reports.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(reports[i].key, (ShardKey{7, i + 2, 1}));
}

TEST_F(RegistryLinkReportTest, AnErrorAnswerSettlesAReport) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  FakeRegistry registry(context_, port, ErrorCode::kNotFound);
  ASSERT_TRUE(registry.Start().ok());
  auto link = MakeLink(port);
  ASSERT_TRUE(link->Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link->registered(); }, 10s));
  link->ReportBadReplica(ShardKey{9, 0, 1}, "bad");
  ASSERT_TRUE(WaitUntil([&] { return !registry.reports().empty(); }, 10s));
  std::this_thread::sleep_for(500ms);
  link->Stop();
  EXPECT_EQ(registry.reports().size(), 1u);  // answered, so not sent again
  EXPECT_EQ(link->reports_sent(), 0u);
}

}  // namespace
}  // namespace shardfs
