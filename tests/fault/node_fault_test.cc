// shardfs-node under faults: kill -9, a full disk, and hostile input.
//
// Like tests/integration/node_test.cc these run the built `shardfs-node` on a
// free loopback port. What they show is that the node's promises hold when
// things go wrong: an acknowledged shard survives a crash and a half-written
// one never appears; a full disk is an error to the writer, not an outage for
// readers; and no byte sequence a peer can send takes the node down or stops
// it from serving everyone else.
//
// The full-disk test mounts a small tmpfs and so needs root. Without it the
// test is skipped, except under CI (CI=true), where it fails: CI must not
// silently lose the test.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "protocol/node_messages.h"
#include "src/block_checksum.h"
#include "src/node_client.h"
#include "tests/integration/daemon_process.h"
#include "tests/raw_zmtp.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

size_t CountEntries(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

// Every shard a node lists, paged through the Inventory request.
Result<std::vector<InventoryEntry>> FullInventory(NodeClient& client, const std::string& ep) {
  std::vector<InventoryEntry> all;
  std::optional<ShardKey> after;
  for (int page = 0; page < 1000; ++page) {
    SHARDFS_ASSIGN_OR_RETURN(InventoryReply reply, client.Inventory(ep, after, 500));
    for (const auto& e : reply.entries) all.push_back(e);
    if (!reply.entries.empty()) after = reply.entries.back().key;
    if (!reply.more) return all;
  }
  return Status::Error(ErrorCode::kInternal, "inventory never ends");
}

// A tmpfs mounted for one test; unmounted on destruction, also after a
// failed assertion.
class TmpfsMount {
 public:
  TmpfsMount() = default;
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  ~TmpfsMount() { Unmount(); }

  Status Mount(const std::string& dir, const std::string& options) {
    if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      return Status::Error(ErrnoToErrorCode(errno),
                           "mount tmpfs on " + dir + ": " + std::strerror(errno));
    }
    dir_ = dir;
    return Status::Ok();
  }

  void Unmount() {
    if (dir_.empty()) return;
    // A process that just exited may still hold the mount for a moment.
    for (int i = 0; i < 50; ++i) {
      if (::umount2(dir_.c_str(), 0) == 0 || errno == EINVAL || errno == ENOENT) {
        dir_.clear();
        return;
      }
      std::this_thread::sleep_for(100ms);
    }
    std::cerr << "umount " << dir_ << ": " << std::strerror(errno) << "; detaching\n";
    ::umount2(dir_.c_str(), MNT_DETACH);
    dir_.clear();
  }

 private:
  std::string dir_;
};

class NodeFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // The node goes before the file system it uses is unmounted.
    node_.Stop(SIGKILL);
    mount_.Unmount();
    if (!HasFailure()) return;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path(), ec)) {
      if (entry.path().extension() != ".log") continue;
      std::string log = ReadFile(entry.path().string());
      if (log.size() > 8000) log = "...\n" + log.substr(log.size() - 8000);
      std::cerr << "---- " << entry.path().filename().string() << " ----\n" << log << "\n";
    }
  }

  // Starts shardfs-node as node_ and waits until it answers a ping.
  void StartNode(const std::string& data_dir, uint16_t port, const std::string& log_name,
                 const std::vector<std::string>& extra_args = {}) {
    unsetenv("SHARDFS_REGISTRY");  // would point the node at a registry
    DaemonProcess::Options o;
    // A cluster of its own and an unused beacon port: the node must not join
    // a registry that another test runs on this machine.
    o.argv = {BuildPath("nodeserver/shardfs-node"),
              "--data",
              data_dir,
              "--listen",
              Endpoint(port),
              "--cluster",
              "node-fault-" + std::to_string(getpid()),
              "--beacon-port",
              std::to_string(FreeUdpPort()),
              "--key",
              key_.path()};
    o.argv.insert(o.argv.end(), extra_args.begin(), extra_args.end());
    o.log_path = dir_.Sub(log_name);
    auto p = DaemonProcess::Start(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    node_ = std::move(p).value();
    NodeClient::Options quick;
    quick.attempt_timeout = 200ms;
    quick.attempts = 1;
    NodeClient probe(context_, quick);
    bool up = WaitUntil([&] { return !node_.Running() || probe.Ping(Endpoint(port)).ok(); }, 15s);
    ASSERT_TRUE(node_.Running()) << "shardfs-node exited at start:\n" << node_.ReadLog();
    ASSERT_TRUE(up) << "shardfs-node does not answer pings:\n" << node_.ReadLog();
  }

  TempDir dir_{"node-fault"};
  TestKey key_{dir_.Sub("cluster.key")};  // the node's and this process's
  zmq::context_t context_;
  TmpfsMount mount_;
  DaemonProcess node_;
};

// ---------------------------------------------------------------------------
// kill -9 in the middle of writes.

// Three rounds of: writers stream shards (64 KiB .. 4 MiB, synced and not),
// the node is killed with SIGKILL, and restarted on the same directory. After
// each restart every acknowledged shard reads back with its hash, every
// listed shard is complete and readable, nothing was quarantined, and the
// temporary directory is empty.
TEST_F(NodeFaultTest, KillNineDuringWritesLosesNothingAcknowledged) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  const std::string data_dir = dir_.Sub("data");
  const std::string ep = Endpoint(port);
  NodeClient::Options options;
  options.attempt_timeout = 2s;
  options.attempts = 1;

  std::mutex mu;
  std::map<ShardKey, uint64_t> attempted;  // every put sent: key -> hash
  std::map<ShardKey, uint64_t> acked;      // those the node acknowledged
  size_t leftovers_seen = 0;

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_NO_FATAL_FAILURE(StartNode(data_dir, port, "node-" + std::to_string(round) + ".log"));
    NodeClient client(context_, options);

    // What earlier rounds left must still be there after this restart.
    EXPECT_EQ(CountEntries(data_dir + "/tmp"), 0u) << "temporary files survived the restart";
    EXPECT_EQ(CountEntries(data_dir + "/quarantine"), 0u) << "a partial shard was published";
    auto inventory = FullInventory(client, ep);
    ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
    std::set<ShardKey> listed;
    for (const auto& e : *inventory) {
      listed.insert(e.key);
      std::lock_guard<std::mutex> lock(mu);
      auto it = attempted.find(e.key);
      ASSERT_NE(it, attempted.end()) << "listed shard never written: " << e.key.ToString();
      EXPECT_EQ(e.checksum, it->second) << e.key.ToString();
      auto r = client.Get(ep, e.key, 0, kMaxShardBytes);
      ASSERT_TRUE(r.ok()) << e.key.ToString() << ": " << r.status().ToString();
      EXPECT_EQ(r->bytes.size(), e.length) << e.key.ToString();
      EXPECT_EQ(Hash(r->bytes), it->second) << e.key.ToString();
    }
    for (const auto& [key, hash] : acked) {
      EXPECT_TRUE(listed.contains(key)) << "acknowledged shard lost: " << key.ToString();
    }

    std::atomic<size_t> acked_this_round{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 3; ++t) {
      writers.emplace_back([&, t] {
        NodeClient own(context_, options);
        std::mt19937_64 rng(round * 10 + t);
        for (uint32_t i = 0; !stop; ++i) {
          std::string data = RandomBytes(rng, (64 << 10) + rng() % (4 << 20));
          const ShardKey key{static_cast<uint64_t>(100 * round + t + 1), i, 1};
          const uint64_t hash = Hash(data);
          {
            std::lock_guard<std::mutex> lock(mu);
            attempted[key] = hash;
          }
          if (!own.Put(ep, key, data, /*sync=*/i % 2 == 0, hash).ok()) return;
          std::lock_guard<std::mutex> lock(mu);
          acked[key] = hash;
          ++acked_this_round;
        }
      });
    }
    // Kill once the writers are well under way, at a time that varies.
    EXPECT_TRUE(WaitUntil([&] { return acked_this_round >= 6u + 3 * round; }, 30s));
    std::this_thread::sleep_for(std::chrono::milliseconds(37 * round));
    node_.Kill();
    stop = true;
    for (auto& w : writers) w.join();
    const size_t leftovers = CountEntries(data_dir + "/tmp");
    leftovers_seen += leftovers;
    if (leftovers == 0) {
      // The kill fell between writes. Leave what a kill inside one leaves,
      // a half-written temporary file, so the restart has to clean it up.
      std::ofstream(data_dir + "/tmp/" + ShardKey{9999, 0, 1}.ToString() + ".1.0.tmp")
          << std::string(10000, 'x');
      ASSERT_EQ(CountEntries(data_dir + "/tmp"), 1u);
    }
  }
  ASSERT_NO_FATAL_FAILURE(StartNode(data_dir, port, "node-final.log"));
  NodeClient client(context_, options);
  EXPECT_EQ(CountEntries(data_dir + "/tmp"), 0u);
  EXPECT_EQ(CountEntries(data_dir + "/quarantine"), 0u);
  auto inventory = FullInventory(client, ep);
  ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
  std::set<ShardKey> listed;
  for (const auto& e : *inventory) {
    listed.insert(e.key);
    auto it = attempted.find(e.key);
    ASSERT_NE(it, attempted.end()) << e.key.ToString();
    auto r = client.Get(ep, e.key, 0, kMaxShardBytes);
    ASSERT_TRUE(r.ok()) << e.key.ToString() << ": " << r.status().ToString();
    EXPECT_EQ(Hash(r->bytes), it->second) << e.key.ToString();
  }
  for (const auto& [key, hash] : acked) {
    EXPECT_TRUE(listed.contains(key)) << "acknowledged shard lost: " << key.ToString();
  }
  std::cout << acked.size() << " shards acknowledged over 3 crashes, " << listed.size()
            << " listed after the last restart, " << leftovers_seen
            << " temporary files left behind by the crashes (all removed on restart)\n";
}

// ---------------------------------------------------------------------------
// A full disk.

// The node's data dir is an 8 MiB tmpfs. Shards of 256 KiB go in until the
// node answers kNoSpace; it must then go on serving every earlier shard,
// Ping and Info, leave no temporary files, and take writes again once space
// is freed. With --capacity 0 the node's own accounting of the file system
// size says no; with --capacity 1G it believes there is room and the file
// system's ENOSPC must come through as kNoSpace instead.
class NodeFullDiskTest : public NodeFaultTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(NodeFullDiskTest, KeepsServingWhenFull) {
  const std::string data_dir = dir_.Sub("data");
  ASSERT_TRUE(std::filesystem::create_directory(data_dir));
  Status mounted = mount_.Mount(data_dir, "size=8m,mode=0755");
  if (!mounted.ok()) {
    if (InCi()) FAIL() << "CI=true but cannot mount a tmpfs: " << mounted.ToString();
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << mounted.ToString();
  }
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  const std::string ep = Endpoint(port);
  ASSERT_NO_FATAL_FAILURE(StartNode(data_dir, port, "node.log", {"--capacity", GetParam()}));
  NodeClient client(context_);

  std::mt19937_64 rng(8);
  std::vector<std::pair<ShardKey, uint64_t>> stored;
  Status last;
  for (uint32_t i = 0; i < 200; ++i) {
    std::string data = RandomBytes(rng, 256 << 10);
    const ShardKey key{3, i, 1};
    last = client.Put(ep, key, data, /*sync=*/i % 4 == 0, Hash(data));
    if (!last.ok()) break;
    stored.push_back({key, Hash(data)});
  }
  ASSERT_FALSE(last.ok()) << "200 shards of 256 KiB fit in an 8 MiB file system";
  EXPECT_EQ(last.code(), ErrorCode::kNoSpace) << last.ToString();
  EXPECT_GE(stored.size(), 10u);  // it was not full from the start
  std::cout << stored.size() << " shards of 256 KiB stored, then: " << last.ToString() << "\n";

  // Full, and staying full: more puts fail the same way, and not one leaves
  // a temporary file behind.
  for (uint32_t i = 0; i < 5; ++i) {
    std::string data = RandomBytes(rng, 256 << 10);
    Status st = client.Put(ep, ShardKey{4, i, 1}, data, /*sync=*/false, Hash(data));
    EXPECT_EQ(st.code(), ErrorCode::kNoSpace) << st.ToString();
  }
  EXPECT_EQ(CountEntries(data_dir + "/tmp"), 0u);

  // Reads, Ping and Info go on as before.
  for (const auto& [key, hash] : stored) {
    auto r = client.Get(ep, key, 0, kMaxShardBytes);
    ASSERT_TRUE(r.ok()) << key.ToString() << ": " << r.status().ToString();
    EXPECT_EQ(Hash(r->bytes), hash) << key.ToString();
  }
  EXPECT_TRUE(client.Ping(ep).ok());
  auto info = client.Info(ep);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->shard_count, stored.size());
  EXPECT_TRUE(node_.Running());

  // Freeing space makes room again.
  ASSERT_TRUE(client.Delete(ep, stored.front().first).ok());
  std::string data = RandomBytes(rng, 256 << 10);
  Status again = client.Put(ep, ShardKey{5, 0, 1}, data, /*sync=*/true, Hash(data));
  EXPECT_TRUE(again.ok()) << again.ToString();
}

INSTANTIATE_TEST_SUITE_P(Capacity, NodeFullDiskTest, ::testing::Values("0", "1G"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param) == "0" ? std::string("FileSystemSize")
                                                                 : std::string("Overcommitted");
                         });

// ---------------------------------------------------------------------------
// Hostile input.

// The header frame of a message: [version, type, id, fields], with `fields`
// already MessagePack (so it can be deliberately wrong).
std::string RawHeader(uint64_t version, uint64_t type, uint64_t id, std::string_view fields) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(4);
  p.pack_uint64(version);
  p.pack_uint64(type);
  p.pack_uint64(id);
  out.write(fields.data(), fields.size());
  return std::string(out.data(), out.size());
}

// A MessagePack value of a type no node field has (or a wrong one).
void PackWrongValue(msgpack::packer<msgpack::sbuffer>& p, std::mt19937_64& rng) {
  switch (rng() % 7) {
    case 0:
      p.pack_nil();
      break;
    case 1:
      p.pack_int64(-1 - static_cast<int64_t>(rng() % 1000));
      break;
    case 2:
      p.pack_double(3.5);
      break;
    case 3:
      p.pack("not a number");
      break;
    case 4:
      p.pack_array(2);
      p.pack_uint64(1);
      p.pack_uint64(2);
      break;
    case 5:
      p.pack_map(1);
      p.pack("x");
      p.pack_uint64(1);
      break;
    default: {
      std::string b = RandomBytes(rng, rng() % 16);
      p.pack_bin(static_cast<uint32_t>(b.size()));
      p.pack_bin_body(b.data(), static_cast<uint32_t>(b.size()));
    }
  }
}

// One hostile message and what the node must answer.
struct Probe {
  std::string kind;
  std::vector<std::string> frames;
  // The error the reply must carry; nullopt: any error.
  std::optional<ErrorCode> code;
  // The request id the reply must echo; 0: not checked (an undecodable
  // header is answered with id 0).
  uint64_t echo_id = 0;
  // A mutated valid message may well be valid: then any reply will do.
  bool ok_allowed = false;
};

const std::vector<uint16_t> kNodeTypes = {100, 101, 102, 103, 104, 105, 106, 107};

Probe MakeProbe(std::mt19937_64& rng, uint64_t id) {
  Probe probe;
  // Mutated puts may store shards; the requests that expect kNotFound use
  // keys from a range those can never reach.
  const ShardKey key{(1ull << 40) + rng() % 1000, static_cast<uint32_t>(rng() % 10), 1};
  const ShardKey absent_key{(1ull << 42) + rng() % 1000000, 0, 1};
  switch (rng() % 10) {
    case 0: {  // random bytes, one frame
      probe.kind = "random";
      probe.frames.push_back(RandomBytes(rng, rng() % 600));
      break;
    }
    case 1: {  // three or four random frames
      probe.kind = "frames";
      size_t n = 3 + rng() % 2;
      for (size_t i = 0; i < n; ++i) probe.frames.push_back(RandomBytes(rng, rng() % 200));
      break;
    }
    case 2: {  // a well-formed header whose fields have the wrong types
      probe.kind = "wrong-types";
      uint16_t type = 102 + rng() % 6;  // every type that reads fields
      msgpack::sbuffer fields;
      msgpack::packer<msgpack::sbuffer> p(fields);
      const char* names[] = {"ino",  "idx", "gen",   "off",  "len",    "sum",
                             "sync", "max", "after", "base", "newlen", "patches"};
      p.pack_map(12);
      for (const char* name : names) {
        p.pack(std::string(name));
        // "ino" and "max" are always wrong, so no message type can decode.
        if (std::string(name) == "ino" || std::string(name) == "max" || rng() % 2 == 0) {
          PackWrongValue(p, rng);
        } else {
          p.pack_uint64(rng() % 4);
        }
      }
      probe.frames.push_back(RawHeader(kProtocolVersion, type, id, {fields.data(), fields.size()}));
      if (rng() % 2 == 0) probe.frames.push_back(RandomBytes(rng, rng() % 4096));
      probe.code = ErrorCode::kBadMessage;
      probe.echo_id = id;
      break;
    }
    case 3: {  // lengths and counts that promise far more than is there
      probe.kind = "huge-lengths";
      static const std::vector<std::string> kHuge = {
          std::string("\xdf\xff\xff\xff\xff", 5),                       // map32 of 4G pairs
          std::string("\xdd\xff\xff\xff\xff", 5),                       // array32 of 4G items
          std::string("\x81\xa3ino\xdb\xff\xff\xff\xf0", 9),            // str32 of 4 GB
          std::string("\x81\xa3ino\xc6\x7f\xff\xff\xff", 9),            // bin32 of 2 GB
          std::string("\x81\xa3ino\xc9\x00\x00\x10\x00\x01", 10),       // ext32
          std::string("\x82\xa7patches\xdd\x00\x10\x00\x00\xa1x", 16),  // 1M patches, absent
          std::string(100, '\x91') + "\x80",                            // nesting depth 100
      };
      std::string fields = kHuge[rng() % kHuge.size()];
      if (rng() % 2 == 0) {
        probe.frames.push_back(RawHeader(kProtocolVersion, 102 + rng() % 6, id, fields));
      } else {
        probe.frames.push_back(fields);  // as the whole header
      }
      break;
    }
    case 4: {  // a type no node serves
      probe.kind = "unknown-type";
      uint64_t type;
      do {
        type = rng() % 65536;
      } while (type >= 100 && type <= 108);
      probe.frames.push_back(RawHeader(kProtocolVersion, type, id, FieldWriter().Finish()));
      probe.code = ErrorCode::kUnknownType;
      probe.echo_id = id;
      break;
    }
    case 5: {  // another protocol version
      probe.kind = "wrong-version";
      static const uint64_t kVersions[] = {0, 2, 3, 255, 65535};
      uint64_t version = kVersions[rng() % 5];
      probe.frames.push_back(RawHeader(version, 100, id, FieldWriter().Finish()));
      probe.code = ErrorCode::kVersionMismatch;
      probe.echo_id = id;
      break;
    }
    case 6: {  // numbers out of range
      probe.kind = "out-of-range";
      FieldWriter w;
      w.U64("ino", key.inode).U64("idx", (1ull << 32) + rng() % 100).U64("gen", 1);
      w.U64("off", ~0ull).U64("len", ~0ull);
      probe.frames.push_back(EncodeHeader(MessageType::kGetShard, id, w));
      probe.code = ErrorCode::kBadMessage;
      probe.echo_id = id;
      break;
    }
    case 7: {  // well-typed requests that are wrong in what they ask
      probe.echo_id = id;
      switch (rng() % 6) {
        case 0:
          probe.kind = "inventory-0";
          probe.frames.push_back(EncodeHeader(MessageType::kInventory, id,
                                              InventoryRequest{std::nullopt, 0}.Encode()));
          probe.code = ErrorCode::kBadMessage;
          break;
        case 1:
          probe.kind = "put-no-payload";
          probe.frames.push_back(EncodeHeader(MessageType::kPutShard, id,
                                              PutShardRequest{key, false, std::nullopt}.Encode()));
          probe.code = ErrorCode::kBadMessage;
          break;
        case 2:
          probe.kind = "put-bad-sum";
          probe.frames.push_back(
              EncodeHeader(MessageType::kPutShard, id, PutShardRequest{key, false, 1}.Encode()));
          probe.frames.push_back(RandomBytes(rng, 1 + rng() % 5000));
          probe.code = ErrorCode::kCorrupt;
          break;
        case 3:
          probe.kind = "get-missing";
          probe.frames.push_back(EncodeHeader(MessageType::kGetShard, id,
                                              GetShardRequest{absent_key, 0, 100}.Encode()));
          probe.code = ErrorCode::kNotFound;
          break;
        case 4: {
          probe.kind = "patch-past-end";
          PutPatchedShardRequest req;
          req.key = key;
          req.base = key;
          req.new_length = 10;
          req.patches = {{5, 100}};
          probe.frames.push_back(EncodeHeader(MessageType::kPutPatchedShard, id, req.Encode()));
          probe.frames.push_back(std::string(100, 'p'));
          probe.code = ErrorCode::kBadMessage;
          break;
        }
        default: {
          probe.kind = "patch-payload-mismatch";
          PutPatchedShardRequest req;
          req.key = key;
          req.base = key;
          req.new_length = 1000;
          req.patches = {{0, 10}, {20, 10}};
          probe.frames.push_back(EncodeHeader(MessageType::kPutPatchedShard, id, req.Encode()));
          probe.frames.push_back(std::string(rng() % 2 == 0 ? 5 : 50, 'p'));
          probe.code = ErrorCode::kBadMessage;
          break;
        }
      }
      break;
    }
    case 8: {  // empty frames
      probe.kind = "empty";
      size_t n = 1 + rng() % 3;
      for (size_t i = 0; i < n; ++i) probe.frames.push_back("");
      break;
    }
    default: {  // a valid request with a few bytes changed
      probe.kind = "mutated";
      FieldWriter w;
      switch (rng() % 4) {
        case 0:
          w = GetShardRequest{key, rng() % 100, rng() % 100}.Encode();
          break;
        case 1:
          w = InventoryRequest{key, 1 + rng() % 5}.Encode();
          break;
        case 2:
          w = ShardKeyRequest{key}.Encode();
          break;
        default:
          w = PutShardRequest{key, false, std::nullopt}.Encode();
          break;
      }
      std::string header = EncodeHeader(kNodeTypes[rng() % kNodeTypes.size()], id, w);
      size_t flips = 1 + rng() % 4;
      for (size_t i = 0; i < flips; ++i) header[rng() % header.size()] = static_cast<char>(rng());
      probe.frames.push_back(header);
      if (rng() % 2 == 0) probe.frames.push_back(RandomBytes(rng, rng() % 1000));
      probe.ok_allowed = true;
      break;
    }
  }
  return probe;
}

// Checks one reply against what the probe expects; "" when it is right.
std::string CheckReply(const Probe& probe, std::vector<zmq::message_t>& frames) {
  if (frames.empty() || frames.size() > 2)
    return "reply of " + std::to_string(frames.size()) + " frames";
  auto header =
      DecodeHeader(std::string_view(static_cast<const char*>(frames[0].data()), frames[0].size()));
  if (!header.ok()) return "undecodable reply: " + header.status().ToString();
  if (probe.echo_id != 0 && header->request_id != probe.echo_id) return "reply to another id";
  if (!header->IsError()) {
    return probe.ok_allowed ? "" : "success reply to a bad request";
  }
  Status st = StatusFromErrorFields(header->fields);
  if (st.ok()) return "error reply without a code";
  if (probe.code && st.code() != *probe.code) {
    return "expected " + std::string(ErrorCodeName(*probe.code)) + ", got " + st.ToString();
  }
  return "";
}

// Opens a TCP connection to the node's port, bypassing ZeroMQ.
int RawConnect(uint16_t port) {
  // Connecting may take a SYN retransmission (1 s, then 3 s) when the
  // node's accept queue is briefly full under this load; longer than that
  // is a stall.
  int fd = raw_zmtp::ConnectLoopback(port, 0, timeval{5, 0});
  if (fd < 0) return -1;
  timeval io_timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof(io_timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof(io_timeout));
  return fd;
}

// A ZMTP 3.0 greeting (NULL mechanism) and a READY command naming a DEALER:
// enough to get past libzmq's handshake so that what follows reaches the
// frame decoder.
std::string ZmtpHandshake() {
  std::string g;
  g += '\xff';
  g += std::string(8, '\0');
  g += '\x7f';
  g += '\x03';
  g += '\x00';
  g += std::string("NULL") + std::string(16, '\0');
  g += '\x00';
  g += std::string(31, '\0');
  std::string ready =
      std::string("\x05READY") + "\x0bSocket-Type" + std::string("\0\0\0\x06", 4) + "DEALER";
  g += '\x04';
  g += static_cast<char>(ready.size());
  g += ready;
  return g;
}

// Random bytes and half-protocols straight onto the node's TCP port.
std::string RawGarbage(std::mt19937_64& rng, const std::string& valid_header) {
  switch (rng() % 6) {
    case 0:
      return RandomBytes(rng, 1 + rng() % 65536);
    case 1:
      return ZmtpHandshake().substr(0, rng() % 64) + RandomBytes(rng, rng() % 256);
    case 2:
      return ZmtpHandshake() + RandomBytes(rng, 1 + rng() % 4096);
    case 3: {  // a frame claiming 2^40 bytes
      std::string s = ZmtpHandshake();
      s += '\x02';
      s += std::string("\x00\x00\x01\x00\x00\x00\x00\x00", 8);
      return s + RandomBytes(rng, 100);
    }
    case 4: {  // a real request, then gone before the reply
      std::string s = ZmtpHandshake();
      s += '\x00';
      s += static_cast<char>(valid_header.size());
      return s + valid_header;
    }
    default:
      return "";  // connect and hang up
  }
}

// Random bytes and random multipart messages from raw DEALER sockets, and raw
// TCP garbage, for a few seconds, while a well-behaved client keeps working
// beside them. Every message the node can frame gets exactly one reply, the
// right error for what is wrong with it; the well-behaved client never sees
// a failure; the node is still running and serving at the end.
TEST_F(NodeFaultTest, GarbageNeitherKillsNorStallsTheNode) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  const std::string ep = Endpoint(port);
  ASSERT_NO_FATAL_FAILURE(StartNode(dir_.Sub("data"), port, "node.log"));

  constexpr auto kStorm = 4s;
  constexpr size_t kMaxProbesPerThread = 4000;
  constexpr size_t kMaxConnections = 400;
  const auto storm_end = Clock::now() + kStorm;
  std::mutex mu;
  std::vector<std::string> failures;
  std::map<std::string, size_t> sent_by_kind;
  auto fail = [&](std::string message) {
    std::lock_guard<std::mutex> lock(mu);
    if (failures.size() < 30) failures.push_back(std::move(message));
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      std::map<std::string, size_t> kinds;
      std::unique_ptr<zmq::socket_t> socket;
      for (size_t n = 0; n < kMaxProbesPerThread && Clock::now() < storm_end; ++n) {
        // A fresh connection now and then: connection churn is part of it.
        if (!socket || n % 200 == 0) {
          socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
          socket->set(zmq::sockopt::linger, 0);
          if (!SecureClientSocket(context_, *socket).ok()) fail("cannot set the cluster key");
          socket->connect(ep);
        }
        const uint64_t id = 1 + (static_cast<uint64_t>(t) << 32) + n;
        Probe probe = MakeProbe(rng, id);
        ++kinds[probe.kind];
        for (size_t i = 0; i < probe.frames.size(); ++i) {
          socket->send(zmq::buffer(probe.frames[i]), i + 1 < probe.frames.size()
                                                         ? zmq::send_flags::sndmore
                                                         : zmq::send_flags::none);
        }
        zmq::pollitem_t item{socket->handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(5000));
        if (!(item.revents & ZMQ_POLLIN)) {
          fail(probe.kind + ": no reply within 5 s");
          socket.reset();
          continue;
        }
        std::vector<zmq::message_t> reply;
        (void)zmq::recv_multipart(*socket, std::back_inserter(reply));
        std::string problem = CheckReply(probe, reply);
        if (!problem.empty()) fail(probe.kind + ": " + problem);
      }
      // Two oversized payloads: one just past the node's limit, which it
      // must refuse with kTooLarge, and one past ZeroMQ's message limit,
      // which drops the connection (nothing to answer).
      if (t == 0) {
        zmq::socket_t big(context_, zmq::socket_type::dealer);
        big.set(zmq::sockopt::linger, 0);
        if (!SecureClientSocket(context_, big).ok()) fail("cannot set the cluster key");
        big.connect(ep);
        std::string header =
            EncodeHeader(MessageType::kPutShard, 77,
                         PutShardRequest{ShardKey{1ull << 41, 0, 1}, false, std::nullopt}.Encode());
        std::string payload(kMaxShardBytes + 1, 'x');
        big.send(zmq::buffer(header), zmq::send_flags::sndmore);
        big.send(zmq::buffer(payload), zmq::send_flags::none);
        zmq::pollitem_t item{big.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(10000));
        if (!(item.revents & ZMQ_POLLIN)) {
          fail("oversized payload: no reply");
        } else {
          std::vector<zmq::message_t> reply;
          (void)zmq::recv_multipart(big, std::back_inserter(reply));
          Probe expect;
          expect.code = ErrorCode::kTooLarge;
          expect.echo_id = 77;
          std::string problem = CheckReply(expect, reply);
          if (!problem.empty()) fail("oversized payload: " + problem);
        }
        payload.resize(kMaxPayloadBytes + 65536, 'y');
        big.send(zmq::buffer(header), zmq::send_flags::sndmore);
        big.send(zmq::buffer(payload), zmq::send_flags::none);
        std::this_thread::sleep_for(200ms);
      }
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [kind, count] : kinds) sent_by_kind[kind] += count;
    });
  }

  std::atomic<size_t> connections{0};
  threads.emplace_back([&] {
    std::mt19937_64 rng(77);
    const std::string ping = EncodeHeader(MessageType::kNodePing, 5, FieldWriter());
    for (size_t n = 0; n < kMaxConnections && Clock::now() < storm_end; ++n) {
      int fd = RawConnect(port);
      if (fd < 0) {
        fail("raw TCP: cannot connect: " + std::string(std::strerror(errno)));
        std::this_thread::sleep_for(10ms);
        continue;
      }
      ++connections;
      std::string bytes = RawGarbage(rng, ping);
      if (!bytes.empty()) (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (rng() % 2 == 0) {
        char buf[256];
        (void)::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      }
      ::close(fd);
    }
  });

  // The well-behaved client, during all of it.
  std::atomic<size_t> good_ops{0};
  threads.emplace_back([&] {
    NodeClient client(context_);
    std::mt19937_64 rng(3);
    for (uint32_t i = 0; Clock::now() < storm_end; ++i) {
      std::string data = RandomBytes(rng, 1 + rng() % 32768);
      const ShardKey key{999, i, 1};
      Status put = client.Put(ep, key, data, /*sync=*/false, Hash(data));
      if (!put.ok()) {
        fail("good client put: " + put.ToString());
        continue;
      }
      auto got = client.Get(ep, key, 0, kMaxShardBytes);
      if (!got.ok() || got->bytes != data) {
        fail("good client get: " +
             (got.ok() ? std::string("wrong bytes") : got.status().ToString()));
      }
      Status ping = client.Ping(ep);
      if (!ping.ok()) fail("good client ping: " + ping.ToString());
      good_ops += 3;
    }
  });
  for (auto& th : threads) th.join();

  size_t probes = 0;
  std::string summary;
  for (const auto& [kind, count] : sent_by_kind) {
    probes += count;
    summary += " " + kind + "=" + std::to_string(count);
  }
  std::cout << probes << " hostile messages (" << summary << " ), " << connections
            << " raw TCP connections, " << good_ops << " good requests\n";
  std::string all;
  for (const auto& f : failures) all += "\n  " + f;
  EXPECT_TRUE(failures.empty()) << failures.size() << " problems:" << all;
  EXPECT_GE(probes, 200u);
  EXPECT_GE(connections.load(), 20u);
  EXPECT_GT(good_ops.load(), 0u);

  // Still running, still serving a fresh client.
  ASSERT_TRUE(node_.Running()) << node_.ReadLog();
  NodeClient fresh(context_);
  std::string data(100000, 'z');
  ASSERT_TRUE(fresh.Put(ep, ShardKey{1, 2, 3}, data, true, Hash(data)).ok());
  auto r = fresh.Get(ep, ShardKey{1, 2, 3}, 0, kMaxShardBytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bytes, data);
  auto info = fresh.Info(ep);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  int status = node_.Stop(SIGTERM, 10s);
  EXPECT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "wait status " << status;
}

}  // namespace
}  // namespace shardfs
