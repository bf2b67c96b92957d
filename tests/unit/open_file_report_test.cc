// The mount's read path reports a corrupt replica: two NodeServers in this
// process hold one shard, the first one's copy corrupted on disk; a
// stand-in registry (an RpcServer) serves the shard table and records
// kReportBadReplica. A read through OpenFile gets the right bytes from the
// second replica and reports the first by node id, once per file however
// often it is read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>
#include <random>

#include "nodeserver/node_server.h"
#include "src/open_file.h"
#include "src/rpc_server.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kIno = 100;

// Serves one file's shard table; handlers run on the server's workers.
class FakeRegistry {
 public:
  FakeRegistry(zmq::context_t& context, ShardTableReply table) : table_(std::move(table)) {
    RpcServer::Options o;
    o.endpoint = "tcp://127.0.0.1:0";
    o.workers = 2;
    server_ = std::make_unique<RpcServer>(context, o, [this](RpcRequest& r) { return Handle(r); });
  }
  ~FakeRegistry() { server_->Stop(); }

  Status Start() { return server_->Start(); }
  const std::string& endpoint() const { return server_->endpoint(); }
  std::vector<ReportBadReplicaRequest> reports() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

 private:
  RpcReply Handle(RpcRequest& request) {
    switch (request.type()) {
      case MessageType::kGetShardTable:
        return RpcReply::Ok(request.type(), table_.Encode());
      case MessageType::kReportBadReplica: {
        auto report = ReportBadReplicaRequest::Decode(request.header.fields);
        if (!report.ok()) return RpcReply::Error(report.status());
        std::lock_guard<std::mutex> lock(mu_);
        reports_.push_back(*report);
        return RpcReply::Ok(request.type());
      }
      default:
        return RpcReply::Error(Status::Error(ErrorCode::kUnknownType, "not here"));
    }
  }

  const ShardTableReply table_;
  std::unique_ptr<RpcServer> server_;
  mutable std::mutex mu_;
  std::vector<ReportBadReplicaRequest> reports_;  // guarded by mu_
};

std::unique_ptr<NodeServer> StartNode(zmq::context_t& context, const std::string& dir) {
  NodeServer::Options o;
  o.data_dir = dir;
  o.listen = "tcp://127.0.0.1:0";
  o.capacity_bytes = 1ull << 30;
  o.workers = 2;
  auto node = NodeServer::Start(context, o);
  EXPECT_TRUE(node.ok()) << node.status().ToString();
  return node.ok() ? std::move(node).value() : nullptr;
}

TEST(OpenFileReportTest, ACorruptReplicaIsReportedOncePerFile) {
  TempDir dir("open-file-report-test");
  zmq::context_t context;
  auto a = StartNode(context, dir.Sub("a"));
  auto b = StartNode(context, dir.Sub("b"));
  ASSERT_TRUE(a && b);

  std::mt19937_64 rng(3);
  const std::string data = RandomBytes(rng, 300 * 1000);
  const ShardKey key{kIno, 0, 5};
  NodeClient nodes(context);
  ASSERT_TRUE(nodes.PutToAll({a->endpoint(), b->endpoint()}, key, data, false, Hash(data))[0].ok());
  ASSERT_TRUE(b->store().Stat(key).ok());
  {
    // Corrupt A's copy in its second block.
    const std::string path = a->store().ShardPath(key);
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const off_t at = static_cast<off_t>(ShardDataOffset(data.size(), kDefaultBlockSize) + 70000);
    char byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
    byte ^= 0x01;
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }

  ShardTableReply table;
  table.attrs.ino = kIno;
  table.attrs.type = FileType::kRegular;
  table.attrs.mode = 0644;
  table.attrs.nlink = 1;
  table.attrs.size = data.size();
  table.attrs.shard_size = 4 << 20;
  table.shards = {
      ShardEntry{0, 5, data.size(), Hash(data), {a->node_id(), b->node_id()}, std::nullopt}};
  table.nodes = {{a->node_id(), a->endpoint()}, {b->node_id(), b->endpoint()}};
  FakeRegistry registry(context, table);
  ASSERT_TRUE(registry.Start().ok());

  NamespaceClient ns(context, registry.endpoint());
  NodeDirectory directory;
  LatencyTracker latency(20ms, 2000ms);
  DataPath dp;
  dp.ns = &ns;
  dp.nodes = &nodes;
  dp.directory = &directory;
  dp.latency = &latency;
  auto file = OpenFile::Load(dp, kIno);
  ASSERT_TRUE(file.ok()) << file.status().ToString();

  for (int i = 0; i < 3; ++i) {
    auto read = (*file)->Read(0, data.size());
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_TRUE(*read == data) << "read " << i << " returned other bytes";
  }
  // A read that does not touch the bad block finds nothing to report.
  auto small = (*file)->Read(0, 4096);
  ASSERT_TRUE(small.ok());

  auto reports = registry.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].node_id, a->node_id());
  EXPECT_EQ(reports[0].key, key);
  EXPECT_NE(reports[0].reason.find("CORRUPT"), std::string::npos) << reports[0].reason;

  file->reset();
  a->Stop();
  b->Stop();
}

}  // namespace
}  // namespace shardfs
