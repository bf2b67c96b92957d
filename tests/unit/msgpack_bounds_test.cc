// Hostile MessagePack must not make a decoder allocate for what it merely
// claims: CheckClaimedSizes() itself, and the decoders that use it (wire
// headers, log records, snapshots), measured by the peak virtual memory of a
// child process that decodes one forged input.
#include "protocol/msgpack_bounds.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <msgpack.hpp>
#include <string>

#include "protocol/envelope.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"

namespace shardfs {
namespace {

// `levels` arrays nested in each other, each claiming `claim` elements but
// holding only the next array (the input ends there).
std::string NestedClaims(int levels, uint32_t claim) {
  std::string out;
  for (int i = 0; i < levels; ++i) {
    out += '\xdd';  // array 32
    for (int b = 3; b >= 0; --b) out += static_cast<char>(claim >> (8 * b));
  }
  return out;
}

std::string Pack(const msgpack::object& o) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, o);
  return std::string(buffer.data(), buffer.size());
}

// VmPeak of this process in KiB.
long PeakVmKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmPeak:", 0) == 0) return std::strtol(line.c_str() + 7, nullptr, 10);
  }
  return -1;
}

// Runs `decode` in a child and exits 0 there if it failed (as it must) and
// raised the peak virtual memory by less than 32 MiB.
void ExpectRefusedCheaply(const std::function<bool()>& decode) {
  EXPECT_EXIT(
      {
        const long before = PeakVmKiB();
        const bool refused = decode();
        const long grown = PeakVmKiB() - before;
        std::fprintf(stderr, "refused=%d peak grew by %ld KiB\n", refused, grown);
        std::_Exit(refused && before > 0 && grown < 32 * 1024 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(CheckClaimedSizesTest, AcceptsRealDocuments) {
  msgpack::zone zone;
  std::vector<uint64_t> numbers(1000, 7);
  std::map<std::string, std::vector<uint64_t>> doc{{"a", numbers}, {"b", {}}, {"c", {1, 2}}};
  const std::string bytes = Pack(msgpack::object(doc, zone));
  EXPECT_TRUE(CheckClaimedSizes(bytes, 0, 4).ok());
  // An object later in a buffer is checked against the bytes after it.
  const std::string two = Pack(msgpack::object(numbers, zone)) + bytes;
  EXPECT_TRUE(CheckClaimedSizes(two, two.size() - bytes.size(), 4).ok());
  EXPECT_TRUE(CheckClaimedSizes(std::string("\x90", 1), 0, 1).ok());  // []
  EXPECT_TRUE(CheckClaimedSizes(std::string("\x05", 1), 0, 0).ok());  // 5
}

TEST(CheckClaimedSizesTest, RefusesClaimsBeyondTheBytes) {
  EXPECT_EQ(CheckClaimedSizes(NestedClaims(1, 1000), 0, 16).code(), ErrorCode::kBadMessage);
  // Each claim alone fits in the bytes; together they do not.
  const std::string nested = NestedClaims(16, 50) + std::string(40, '\x01');
  EXPECT_EQ(CheckClaimedSizes(nested, 0, 16).code(), ErrorCode::kBadMessage);
  // A map's pairs count twice: {1: 2} claims 2 elements of 3 bytes, a map
  // header claiming 3 pairs in 4 bytes claims 6.
  EXPECT_TRUE(CheckClaimedSizes(std::string("\x81\x01\x02", 3), 0, 1).ok());
  EXPECT_EQ(CheckClaimedSizes(std::string("\x83\x01\x02\x03", 4), 0, 1).code(),
            ErrorCode::kBadMessage);
}

TEST(CheckClaimedSizesTest, RefusesDeepNestingAndTruncation) {
  std::string deep(20, '\x91');  // [[[[...]]]] twenty deep
  deep += '\x00';
  EXPECT_TRUE(CheckClaimedSizes(deep, 0, 20).ok());
  EXPECT_EQ(CheckClaimedSizes(deep, 0, 16).code(), ErrorCode::kBadMessage);
  EXPECT_EQ(CheckClaimedSizes(deep.substr(0, 20), 0, 20).code(), ErrorCode::kBadMessage);
  EXPECT_EQ(CheckClaimedSizes(std::string("\xc1", 1), 0, 4).code(), ErrorCode::kBadMessage);
  EXPECT_EQ(CheckClaimedSizes("", 0, 4).code(), ErrorCode::kBadMessage);
  EXPECT_EQ(CheckClaimedSizes(std::string("\x01", 1), 1, 4).code(), ErrorCode::kBadMessage);
}

// 80 bytes that used to make msgpack-c allocate 16 x 1M x 24 bytes (the
// header parser allows a million elements per array, 16 deep).
TEST(ClaimedSizesDecodersTest, WireHeaderDoesNotAllocateForClaims) {
  const std::string forged = NestedClaims(16, (1u << 20) - 1);
  ExpectRefusedCheaply([&] { return !DecodeHeader(forged).ok(); });
}

// A log record's limits scale with its size (each array may claim up to the
// record's size), so a 1 MiB record nesting 16 such claims asked for
// 16 x 1M x 24 bytes.
TEST(ClaimedSizesDecodersTest, LogRecordDoesNotAllocateForClaims) {
  std::string forged = NestedClaims(16, 1000000);
  forged.resize(1 << 20, '\x01');
  ExpectRefusedCheaply([&] { return !DecodeOp(forged).ok(); });
}

TEST(ClaimedSizesDecodersTest, SnapshotDoesNotAllocateForClaims) {
  NamespaceStore one;
  NamespaceOp op = MknodOp{.parent = kRootIno, .name = "f", .mode = 0644, .shard_size = 4096};
  one.Prepare(&op);
  ASSERT_TRUE(one.Apply(op).ok());
  const std::string good = one.EncodeSnapshot();
  ASSERT_TRUE(NamespaceStore().LoadSnapshot(good).ok());
  // The header object stays; the inode after it becomes nested claims over
  // 1 MiB (the snapshot parser's limits scale with the snapshot's size).
  size_t header_end = 0;
  msgpack::object_handle ignored = msgpack::unpack(good.data(), good.size(), header_end);
  std::string bad = good.substr(0, header_end) + NestedClaims(16, 1000000);
  bad.resize(header_end + (1 << 20), '\x01');
  ExpectRefusedCheaply([&] { return !NamespaceStore().LoadSnapshot(bad).ok(); });
}

// Replica ids are indexes into the snapshot's node table: one byte each in
// the file, a copy of the id in memory. A table id far longer than any node
// id would make a small file cost (file size)^2, so it is refused.
TEST(ClaimedSizesDecodersTest, SnapshotRefusesOverlongNodeIds) {
  for (size_t length : {size_t{32}, size_t{64}, size_t{65}, size_t{100000}}) {
    NamespaceStore store;
    NamespaceOp op = MknodOp{.parent = kRootIno, .name = "f", .mode = 0644, .shard_size = 4096};
    store.Prepare(&op);
    auto made = store.Apply(op);
    ASSERT_TRUE(made.ok());
    ShardEntry e;
    e.index = 0;
    e.generation = 1;
    e.length = 10;
    e.replicas = {std::string(length, 'a')};
    NamespaceOp commit = CommitShardsOp{.ino = made->ino, .shards = {e}, .size = 10};
    store.Prepare(&commit);
    ASSERT_TRUE(store.Apply(commit).ok());
    Status loaded = NamespaceStore().LoadSnapshot(store.EncodeSnapshot());
    EXPECT_EQ(loaded.ok(), length <= 64) << length << ": " << loaded.ToString();
  }
}

// The same bound in log records, so a record that replays can always be
// snapshotted (the namespace_op fuzz target found a committed 67-byte id
// that made the next snapshot unloadable).
TEST(ClaimedSizesDecodersTest, LogRecordsRefuseOverlongReplicaIds) {
  for (size_t length : {size_t{64}, size_t{65}}) {
    ShardEntry e;
    e.index = 0;
    e.generation = 1;
    e.length = 10;
    e.replicas = {"n1", std::string(length, 'a')};
    auto commit = DecodeOp(EncodeOp(CommitShardsOp{.ino = 5, .shards = {e}, .size = 10}));
    EXPECT_EQ(commit.ok(), length <= 64) << length;
    auto set = DecodeOp(EncodeOp(
        SetShardReplicasOp{.ino = 5, .index = 0, .generation = 1, .replicas = e.replicas}));
    EXPECT_EQ(set.ok(), length <= 64) << length;
  }
}

}  // namespace
}  // namespace shardfs
