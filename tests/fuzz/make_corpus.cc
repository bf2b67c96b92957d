// Writes the seed corpora of the fuzz targets: valid header frames made with
// the real encoders, so fuzzing starts from messages the decoders accept.
//
//   make_fuzz_corpus OUT_DIR     writes OUT_DIR/envelope/*, OUT_DIR/node_messages/*
//
// The output is checked in under tests/fuzz/corpus/; rerun this after a wire
// format change.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "protocol/envelope.h"
#include "protocol/node_messages.h"

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
        Reply(MessageType::kPutShard, 1, PutShardReply{4 << 20, 0xabcdef}.Encode()));
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
  std::cout << "wrote the seed corpora under " << out.string() << "\n";
  return 0;
}
