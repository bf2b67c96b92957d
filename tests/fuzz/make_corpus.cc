// Writes the seed corpora of the fuzz targets: valid header frames, beacons,
// log files and snapshots made with the real encoders, so fuzzing starts
// from input the decoders accept.
//
//   make_fuzz_corpus OUT_DIR     writes OUT_DIR/{envelope,node_messages,
//                                registry_messages,beacon,meta_log,snapshot}/*
//
// The output is checked in under tests/fuzz/corpus/; rerun this after a wire
// format change.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "protocol/beacon.h"
#include "protocol/envelope.h"
#include "protocol/health_messages.h"
#include "protocol/node_messages.h"
#include "protocol/registry_messages.h"
#include "src/cluster_map.h"
#include "src/meta_log.h"
#include "src/meta_snapshot.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"

namespace {

using namespace shardfs;

void Write(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string Reply(MessageType request, uint64_t id, const FieldWriter& fields) {
  return EncodeHeader(ReplyTypeOf(request), id, fields);
}

constexpr std::string_view kNodeA = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kNodeB = "fedcba9876543210fedcba9876543210";

void WriteRegistryMessages(const std::filesystem::path& dir) {
  RegisterNodeRequest reg{
      std::string(kNodeA), "tcp://10.0.0.5:7410", "host-a", 1ull << 40, 1ull << 30, 1234};
  Write(dir, "register_request", EncodeHeader(MessageType::kRegisterNode, 1, reg.Encode()));
  reg.node_id = "0123456789ABCDEF0123456789ABCDEF";  // upper case is accepted
  reg.endpoint = "tcp://[::1]:65535";
  Write(dir, "register_request_upper_ipv6",
        EncodeHeader(MessageType::kRegisterNode, 2, reg.Encode()));
  Write(dir, "register_reply", Reply(MessageType::kRegisterNode, 1, RegisterNodeReply{7}.Encode()));
  Write(dir, "heartbeat_request",
        EncodeHeader(MessageType::kHeartbeat, 3,
                     HeartbeatRequest{std::string(kNodeB), 5, 10, 2}.Encode()));
  Write(dir, "heartbeat_reply",
        Reply(MessageType::kHeartbeat, 3, HeartbeatReply{~0ull, false}.Encode()));
  Write(dir, "cluster_map_request",
        EncodeHeader(MessageType::kClusterMap, 4, GetClusterMapRequest{}.Encode()));
  ClusterMap map;
  map.epoch = 42;
  map.nodes.push_back(NodeRecord{std::string(kNodeA), "tcp://10.0.0.5:7410", "host-a",
                                 NodeState::kUp, 100, 10, 3, 1700000000000});
  map.nodes.push_back(NodeRecord{std::string(kNodeB), "tcp://node-b:7410", "host-b",
                                 NodeState::kDraining, 100, 200, 0, -1});
  Write(dir, "cluster_map_reply", Reply(MessageType::kClusterMap, 4, map.Encode()));
  Write(dir, "report_bad_replica",
        EncodeHeader(MessageType::kReportBadReplica, 5,
                     ReportBadReplicaRequest{std::string(kNodeA), ShardKey{9, 1, 2},
                                             "block 3 checksum mismatch"}
                         .Encode()));
  Write(dir, "fsck_request", EncodeHeader(MessageType::kFsck, 6, FsckRequest{100}.Encode()));
  FsckReply fsck;
  fsck.files = 10;
  fsck.shards = 30;
  fsck.healthy = 27;
  fsck.under_replicated = 2;
  fsck.lost = 1;
  fsck.files_degraded = 2;
  fsck.files_lost = 1;
  fsck.affected = {{"/a/b", 5, "degraded", 2, 1}, {"", 9, "lost", 1, 0}};
  fsck.nodes = {{std::string(kNodeA), 20, 1 << 20}, {std::string(kNodeB), 10, 0}};
  fsck.repair = {3, 3 << 20, 100, 100 << 20, 50 << 20, 1};
  Write(dir, "fsck_reply", Reply(MessageType::kFsck, 6, fsck.Encode()));
  Write(dir, "rebalance_reply", Reply(MessageType::kRebalance, 7, RebalanceReply{12, 10}.Encode()));
  Write(dir, "set_draining_request",
        EncodeHeader(MessageType::kSetDraining, 8,
                     SetDrainingRequest{std::string(kNodeB), false}.Encode()));
}

void WriteBeacons(const std::filesystem::path& dir) {
  const BeaconInfo infos[] = {
      {kProtocolVersion, "prod", "tcp://10.0.0.1:7400", "tcp://10.0.0.1:7401"},
      {2, "a.b-c_d", "tcp://[fe80::1]:1", "tcp://registry.example:65535"},
      {kProtocolVersion, std::string(kMaxClusterNameLength, 'x'),
       "tcp://" + std::string(240, 'h') + ":7400", "tcp://h:7401"},
  };
  int i = 0;
  for (const BeaconInfo& info : infos) {
    auto datagram = EncodeBeacon(info);
    if (!datagram.ok()) {
      std::cerr << "beacon " << i << ": " << datagram.status().ToString() << "\n";
      std::exit(1);
    }
    Write(dir, "beacon_" + std::to_string(i), *datagram);
    // The body alone: the target also tries every input after the magic.
    Write(dir, "body_" + std::to_string(i), datagram->substr(kBeaconMagic.size()));
    ++i;
  }
  Write(dir, "endpoint", "tcp://127.0.0.1:7400");
  Write(dir, "endpoint_wildcard", "tcp://*:0");
  Write(dir, "cluster_name", "cluster-1.test_a");
}

// The records of a small namespace's history, as a registry logs them
// (prepared ops: inode numbers and times filled in).
std::vector<std::string> HistoryRecords(NamespaceStore* store) {
  ShardEntry shard0;
  shard0.index = 0;
  shard0.generation = 1;
  shard0.length = 4096;
  shard0.checksum = 0xfeed;
  shard0.replicas = {std::string(kNodeA), std::string(kNodeB)};
  ShardEntry shard1 = shard0;
  shard1.index = 1;
  shard1.length = 100;
  std::vector<NamespaceOp> ops = {
      MkdirOp{.parent = kRootIno, .name = "d", .mode = 0755},
      MknodOp{.parent = 2, .name = "f", .mode = 0644, .shard_size = 4096},
      SymlinkOp{.parent = kRootIno, .name = "s", .target = "d/f"},
      CommitShardsOp{.ino = 3, .shards = {shard0, shard1}, .size = 4196},
      SetxattrOp{.ino = 3, .name = "user.k", .value = "v"},
      LinkOp{.ino = 3, .parent = kRootIno, .name = "hard"},
      RenameOp{.parent = kRootIno, .name = "hard", .new_parent = 2, .new_name = "g"},
      SetattrOp{.ino = 3, .mask = kSetAttrSize, .size = 10},
      UnlinkOp{.parent = 2, .name = "g"},
      AllocateInodesOp{.count = 3},
      ForgetGarbageOp{.keys = {ShardKey{3, 1, 1}}},
  };
  std::vector<std::string> records;
  for (NamespaceOp& op : ops) {
    if (int64_t* t = OpTime(&op); t != nullptr) *t = 1000;
    store->Prepare(&op);
    auto applied = store->Apply(op);
    if (!applied.ok()) {
      std::cerr << OpName(op) << ": " << applied.status().ToString() << "\n";
      std::exit(1);
    }
    records.push_back(EncodeOp(op));
  }
  return records;
}

void WriteLogs(const std::filesystem::path& dir) {
  NamespaceStore store;
  const std::vector<std::string> records = HistoryRecords(&store);
  // Framed log files, as on disk; one with a torn tail.
  std::string log;
  for (size_t i = 0; i < records.size(); ++i) log += EncodeLogRecord(i + 1, records[i]);
  Write(dir, "log_file", log);
  Write(dir, "log_file_torn", log.substr(0, log.size() - 5));
  Write(dir, "log_file_late_seq", EncodeLogRecord(1000, records[0]) + EncodeLogRecord(1001, ""));
  // Bare records (the target frames each MessagePack object of its input).
  std::string bare;
  for (const std::string& r : records) bare += r;
  Write(dir, "records_all", bare);
  for (size_t i = 0; i < records.size(); i += 3) {
    Write(dir, "records_from_" + std::to_string(i), records[i] + records[(i + 1) % records.size()]);
  }
}

void WriteSnapshots(const std::filesystem::path& dir) {
  NamespaceStore empty;
  Write(dir, "payload_empty", empty.EncodeSnapshot());
  NamespaceStore store;
  HistoryRecords(&store);
  const std::string payload = store.EncodeSnapshot();
  Write(dir, "payload_small", payload);
  Write(dir, "file_small", EncodeSnapshotFile(77, payload));
  Write(dir, "file_empty", EncodeSnapshotFile(1, empty.EncodeSnapshot()));
  // With an open file unlinked (an orphan) and garbage shards.
  NamespaceOp mk = MknodOp{.parent = kRootIno, .name = "open", .mode = 0600};
  store.Prepare(&mk);
  auto made = store.Apply(mk);
  if (!made.ok() || !store.OpenRef(made->ino).ok()) std::exit(1);
  NamespaceOp unlink = UnlinkOp{.parent = kRootIno, .name = "open"};
  store.Prepare(&unlink);
  if (!store.Apply(unlink).ok()) std::exit(1);
  Write(dir, "payload_orphan", store.EncodeSnapshot());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_fuzz_corpus OUT_DIR\n";
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const std::filesystem::path node = out / "node_messages";
  const std::filesystem::path env = out / "envelope";
  const ShardKey key{0x1234, 7, 3};
  const ShardKey base{0x1234, 7, 2};

  Write(node, "put_shard_request",
        EncodeHeader(MessageType::kPutShard, 1, PutShardRequest{key, true, 0xfeedface}.Encode()));
  Write(node, "put_shard_request_nosum",
        EncodeHeader(MessageType::kPutShard, 2, PutShardRequest{key, false, {}}.Encode()));
  Write(node, "put_shard_reply",
        Reply(MessageType::kPutShard, 1, PutShardReply{4 << 20, 0xabcdef, 8192}.Encode()));
  PutPatchedShardRequest patched;
  patched.key = key;
  patched.base = base;
  patched.new_length = 1 << 20;
  patched.sync = true;
  patched.patches = {{0, 10}, {4096, 8192}, {(1 << 20) - 1, 1}};
  Write(node, "put_patched_request",
        EncodeHeader(MessageType::kPutPatchedShard, 3, patched.Encode()));
  Write(node, "get_shard_request",
        EncodeHeader(MessageType::kGetShard, 4, GetShardRequest{key, 65536, 4096}.Encode()));
  Write(node, "get_shard_reply",
        Reply(MessageType::kGetShard, 4, GetShardReply{(4 << 20) - 5}.Encode()));
  Write(node, "delete_request",
        EncodeHeader(MessageType::kDeleteShard, 5, ShardKeyRequest{key}.Encode()));
  Write(node, "stat_reply", Reply(MessageType::kStatShard, 6, ShardStatReply{123, 456}.Encode()));
  Write(node, "shard_extents_reply",
        Reply(MessageType::kShardExtents, 6,
              ShardExtentsReply{4 << 20, {{0, 8192}, {3 << 20, 4096}}}.Encode()));
  Write(node, "inventory_request_first",
        EncodeHeader(MessageType::kInventory, 7, InventoryRequest{std::nullopt, 1000}.Encode()));
  Write(node, "inventory_request_after",
        EncodeHeader(MessageType::kInventory, 8, InventoryRequest{key, 10}.Encode()));
  InventoryReply inventory;
  inventory.entries = {{key, 100, 1}, {base, 0, 2}, {ShardKey{~0ull, ~0u, ~0ull}, 64 << 20, ~0ull}};
  inventory.more = true;
  Write(node, "inventory_reply", Reply(MessageType::kInventory, 8, inventory.Encode()));
  Write(node, "node_info_reply",
        Reply(MessageType::kNodeInfo, 9,
              NodeInfoReply{"0123456789abcdef0123456789abcdef", 1ull << 40, 1ull << 30, 4242}
                  .Encode()));
  CopyShardFromRequest copy;
  copy.key = key;
  copy.length = 4 << 20;
  copy.checksum = 0xfeedface;
  copy.sources = {"tcp://127.0.0.1:7410", "tcp://node-b.example:7411", "tcp://[::1]:7412"};
  copy.sync = true;
  Write(node, "copy_shard_from_request",
        EncodeHeader(MessageType::kCopyShardFrom, 11, copy.Encode()));
  Write(node, "error_reply",
        EncodeHeader(MessageType::kError, 10,
                     ErrorFields(Status::Error(ErrorCode::kNotFound, "no shard"))));

  // The envelope target gets headers of every shape the field readers know.
  Write(env, "ping", EncodeHeader(MessageType::kNodePing, 1, FieldWriter()));
  Write(env, "error_reply",
        EncodeHeader(MessageType::kError, 2,
                     ErrorFields(Status::Error(ErrorCode::kCorrupt, "block 3 fails"))));
  Write(env, "error_code_zero", EncodeHeader(MessageType::kError, 3, [] {
          FieldWriter w;
          w.U64("code", 0).Str("message", "");
          return w;
        }()));
  Write(env, "wrong_version", [] {
    std::string h = EncodeHeader(MessageType::kNodePing, 4, FieldWriter());
    h[1] = 2;  // [0] is the array tag, [1] the fixint version
    return h;
  }());
  Write(env, "unknown_type", EncodeHeader(static_cast<uint16_t>(9999), 5, FieldWriter()));
  Write(env, "max_request_id", EncodeHeader(MessageType::kNodeInfo, ~0ull, FieldWriter()));
  FieldWriter inner;
  inner.U64("u", 1).Str("s", "inner");
  FieldWriter all;
  all.U64("u", 7)
      .I64("i", -7)
      .Bool("t", true)
      .Str("s", "text")
      .Bin("b", std::string("\0\1\2", 3))
      .U64Array("ua", {1, 2, ~0ull})
      .StrArray("sa", {"a", "bc", ""})
      .Map("m", inner);
  std::vector<FieldWriter> items;
  items.push_back(std::move(inner));
  items.emplace_back().U64("u", 2);
  all.MapArray("ma", items);
  Write(env, "all_field_kinds", EncodeHeader(MessageType::kNodePing, 6, all));
  Write(env, "put_shard_request",
        EncodeHeader(MessageType::kPutShard, 7, PutShardRequest{key, true, 1}.Encode()));
  Write(env, "put_patched_request",
        EncodeHeader(MessageType::kPutPatchedShard, 8, patched.Encode()));
  Write(env, "inventory_reply", Reply(MessageType::kInventory, 9, inventory.Encode()));
  Write(env, "node_info_reply",
        Reply(MessageType::kNodeInfo, 10, NodeInfoReply{"id", 1, 2, 3}.Encode()));
  Write(env, "nested_maps", EncodeHeader(MessageType::kNodePing, 11, [] {
          FieldWriter level3;
          level3.U64("u", 3);
          FieldWriter level2;
          level2.Map("m", level3);
          FieldWriter level1;
          level1.Map("m", level2);
          return level1;
        }()));
  WriteRegistryMessages(out / "registry_messages");
  WriteBeacons(out / "beacon");
  WriteLogs(out / "meta_log");
  WriteSnapshots(out / "snapshot");
  std::cout << "wrote the seed corpora under " << out.string() << "\n";
  return 0;
}
