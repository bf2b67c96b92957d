// Fuzz target: metadata log records, decoded and applied to a namespace.
//
// The input is a sequence of MessagePack objects, each taken as one record
// of the registry's log (src/namespace_op.h). Each record that DecodeOp()
// accepts must encode back to bytes that decode to the same op, and is then
// Prepare()d and Apply()d to a small namespace the way the registry does it
// live (with open files, so unlinks leave orphans). Then:
//   - an op that fails changes nothing (all or nothing);
//   - an op that applies leaves the store's invariants intact, and its log
//     record (the prepared op, encoded) applies to a replica store that only
//     ever sees the log (no open files, as after a restart) with the same
//     result: replay rebuilds exactly the acknowledged state;
//   - growing a file (setattr or commit) never drops a shard it had;
// and at the end the live store survives a snapshot round trip unchanged.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

constexpr size_t kMaxOpsPerInput = 16;

// The namespace every input starts from; make_corpus-style seeds refer to
// these ids (Prepare hands them out in this order):
//   1 /            2 /d           3 /d/f (4 KiB shards, 2 committed, xattr,
//   4 /d/sub       5 /g (also /d/g2)        open)
//   6 /s -> d/f    7 /fifo        8 (orphan: unlinked while open)
struct World {
  NamespaceStore live;
  NamespaceStore replica;
};

void Apply(World& w, NamespaceOp op) {
  if (int64_t* t = OpTime(&op); t != nullptr && *t == 0) *t = 1000;
  w.live.Prepare(&op);
  auto applied = w.live.Apply(op);
  FUZZ_CHECK(applied.ok());
  FUZZ_CHECK(w.replica.Apply(op).ok());
}

void Build(World& w) {
  Apply(w, MkdirOp{kRootIno, "d", 0, 0755, 0, 0, 0});
  MknodOp f{2, "f", 0, FileType::kRegular, 0644, 0, 0, 0, 4096, 0, 0};
  Apply(w, f);
  Apply(w, MkdirOp{2, "sub", 0, 0755, 0, 0, 0});
  Apply(w, MknodOp{kRootIno, "g", 0, FileType::kRegular, 0600, 1, 1, 0, 0, 3, 0});
  Apply(w, LinkOp{5, 2, "g2", 0});
  Apply(w, SymlinkOp{kRootIno, "s", 0, "d/f", 0, 0, 0});
  Apply(w, MknodOp{kRootIno, "fifo", 0, FileType::kFifo, 0644, 0, 0, 0, 0, 0, 0});
  Apply(w, MknodOp{kRootIno, "open", 0, FileType::kRegular, 0644, 0, 0, 0, 0, 0, 0});
  Apply(w, CommitShardsOp{3,
                          {ShardEntry{0, 10, 4096, 1, {"n1", "n2"}, std::nullopt},
                           ShardEntry{1, 11, 1000, 2, {"n2", "n3"}, std::nullopt}},
                          5096,
                          0});
  // An overwrite, so the garbage list is not empty.
  Apply(w, CommitShardsOp{3, {ShardEntry{0, 12, 4096, 3, {"n1", "n3"}, std::nullopt}}, 5096, 0});
  Apply(w, SetxattrOp{3, "user.a", "value", 0, 0});
  FUZZ_CHECK(w.live.OpenRef(3).ok());
  FUZZ_CHECK(w.live.OpenRef(8).ok());
  Apply(w, UnlinkOp{kRootIno, "open", false, 0});  // Prepare keeps 8 as an orphan
}

// The size and shard table of a regular file, if `ino` is one.
struct FileState {
  uint64_t size = 0;
  std::vector<ShardEntry> shards;
};
std::optional<FileState> StateOf(const NamespaceStore& s, uint64_t ino) {
  auto attrs = s.GetAttr(ino);
  if (!attrs.ok() || attrs->type != FileType::kRegular) return std::nullopt;
  auto shards = s.GetShards(ino, 0, UINT32_MAX);
  FUZZ_CHECK(shards.ok());
  return FileState{attrs->size, *shards};
}

// The file an op may grow, and whether it sets a size at all.
std::optional<std::pair<uint64_t, uint64_t>> SizeSetBy(const NamespaceOp& op) {
  if (const auto* s = std::get_if<SetattrOp>(&op); s != nullptr && (s->mask & kSetAttrSize)) {
    return std::make_pair(s->ino, s->size);
  }
  if (const auto* c = std::get_if<CommitShardsOp>(&op)) return std::make_pair(c->ino, c->size);
  return std::nullopt;
}

void RunOne(World& w, std::string_view record) {
  auto decoded = DecodeOp(record);
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.status().code() == ErrorCode::kBadMessage);
    return;
  }
  // The encoding is canonical: what decodes, encodes to bytes that decode to
  // the same op and encode the same again.
  const std::string encoded = EncodeOp(*decoded);
  auto again = DecodeOp(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(EncodeOp(*again) == encoded);

  NamespaceOp op = std::move(*decoded);
  const std::string before = w.live.DumpCanonical();
  w.live.Prepare(&op);
  std::optional<FileState> grown_from;
  const auto size_set = SizeSetBy(op);
  if (size_set) grown_from = StateOf(w.live, size_set->first);

  auto applied = w.live.Apply(op);
  if (!applied.ok()) {
    FUZZ_CHECK(w.live.DumpCanonical() == before);
    return;  // failed ops are not logged: the replica never sees them
  }
  Status invariants = w.live.CheckInvariants();
  if (!invariants.ok()) {
    std::fprintf(stderr, "%s after %s\n", invariants.ToString().c_str(),
                 std::string(OpName(op)).c_str());
  }
  FUZZ_CHECK(invariants.ok());

  // A size that only grew keeps every shard the file had, except those the
  // commit itself replaced.
  if (grown_from && size_set->second >= grown_from->size) {
    auto now = StateOf(w.live, size_set->first);
    FUZZ_CHECK(now.has_value());
    const auto* commit = std::get_if<CommitShardsOp>(&op);
    for (const ShardEntry& old : grown_from->shards) {
      bool replaced = false;
      if (commit != nullptr) {
        for (const ShardEntry& e : commit->shards) replaced = replaced || e.index == old.index;
      }
      if (replaced) continue;
      bool kept = false;
      for (const ShardEntry& e : now->shards) kept = kept || e == old;
      FUZZ_CHECK(kept);
    }
  }

  // The record as logged replays to the same state.
  const std::string logged = EncodeOp(op);
  auto replayed = DecodeOp(logged);
  FUZZ_CHECK(replayed.ok());
  auto replica_applied = w.replica.Apply(*replayed);
  FUZZ_CHECK(replica_applied.ok());
  FUZZ_CHECK(w.replica.DumpCanonical() == w.live.DumpCanonical());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  // The whole input as one record: the decoder alone.
  {
    auto whole = DecodeOp(std::string_view(bytes, size));
    if (!whole.ok()) FUZZ_CHECK(whole.status().code() == ErrorCode::kBadMessage);
  }

  // Split into objects with the same allocation bound DecodeOp uses.
  std::vector<std::string_view> records;
  size_t offset = 0;
  const msgpack::unpack_limit limit(size, size, size, size, size, 16);
  while (offset < size && records.size() < kMaxOpsPerInput) {
    const size_t start = offset;
    try {
      msgpack::object_handle ignored =
          msgpack::unpack(bytes, size, offset, nullptr, nullptr, limit);
    } catch (const std::exception&) {
      break;
    }
    if (offset <= start) break;
    records.emplace_back(bytes + start, offset - start);
  }
  if (records.empty()) return 0;

  World w;
  Build(w);
  for (std::string_view record : records) RunOne(w, record);

  NamespaceStore copy;
  FUZZ_CHECK(copy.LoadSnapshot(w.live.EncodeSnapshot()).ok());
  FUZZ_CHECK(copy.DumpCanonical() == w.live.DumpCanonical());
  return 0;
}
