// Node messages on the wire: CopyShardFromRequest (node-to-node repair)
// survives a real header encode/decode unchanged, and its Decode() refuses
// every malformed or hostile variant with kBadMessage: the receiving node
// connects to the endpoints it names.
#include "protocol/node_messages.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/beacon.h"
#include "protocol/envelope.h"

namespace shardfs {
namespace {

// Puts fields through a real header encode/decode, as the wire would.
Envelope OverTheWire(const FieldWriter& fields) {
  auto env = DecodeHeader(EncodeHeader(MessageType::kCopyShardFrom, 1, fields));
  EXPECT_TRUE(env.ok());
  return std::move(env).value();
}

CopyShardFromRequest SampleCopy() {
  CopyShardFromRequest m;
  m.key = ShardKey{0x1234, 7, 99};
  m.length = 4 << 20;
  m.checksum = 0xfeedfacecafebeefull;
  m.sources = {"tcp://127.0.0.1:7410", "tcp://node-b.example:7411", "tcp://[::1]:7412"};
  m.sync = false;
  return m;
}

Status DecodeStatus(const FieldWriter& fields) {
  return CopyShardFromRequest::Decode(OverTheWire(fields).fields).status();
}

// The request as Encode() writes it, with the sources field replaced.
FieldWriter WithSources(const std::vector<std::string>& sources) {
  CopyShardFromRequest m = SampleCopy();
  FieldWriter w;
  EncodeShardKey(w, m.key);
  w.U64("len", m.length).U64("sum", m.checksum).StrArray("src", sources).Bool("sync", true);
  return w;
}

TEST(CopyShardFromRequestTest, RoundTrips) {
  const CopyShardFromRequest m = SampleCopy();
  auto back = CopyShardFromRequest::Decode(OverTheWire(m.Encode()).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->key, m.key);
  EXPECT_EQ(back->length, m.length);
  EXPECT_EQ(back->checksum, m.checksum);
  EXPECT_EQ(back->sources, m.sources);
  EXPECT_FALSE(back->sync);

  // The edges: an empty shard, the largest shard, sixteen sources of the
  // longest length.
  CopyShardFromRequest edge = m;
  edge.length = 0;
  edge.sync = true;
  EXPECT_TRUE(CopyShardFromRequest::Decode(OverTheWire(edge.Encode()).fields).ok());
  edge.length = kMaxShardBytes;
  const std::string prefix = "tcp://";
  const std::string suffix = ":7410";
  const std::string long_source =
      prefix + std::string(kMaxEndpointLength - prefix.size() - suffix.size(), 'h') + suffix;
  edge.sources.assign(kMaxCopySources, long_source);
  auto big = CopyShardFromRequest::Decode(OverTheWire(edge.Encode()).fields);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->length, kMaxShardBytes);
  EXPECT_EQ(big->sources.size(), kMaxCopySources);
  EXPECT_TRUE(big->sync);
}

TEST(CopyShardFromRequestTest, SyncDefaultsToTrue) {
  CopyShardFromRequest m = SampleCopy();
  FieldWriter w;
  EncodeShardKey(w, m.key);
  w.U64("len", m.length).U64("sum", m.checksum).StrArray("src", m.sources);
  auto back = CopyShardFromRequest::Decode(OverTheWire(w).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->sync);
}

TEST(CopyShardFromRequestTest, RefusesBadSources) {
  EXPECT_TRUE(DecodeStatus(WithSources({"tcp://127.0.0.1:1"})).ok());
  const std::vector<std::vector<std::string>> bad = {
      {},                                                          // no source
      std::vector<std::string>(kMaxCopySources + 1, "tcp://h:1"),  // too many
      {"tcp://h:1", "tcp://" + std::string(300, 'h') + ":1"},      // too long
      {"ipc:///tmp/socket"},                                       // not tcp
      {"inproc://workers"},
      {"tcp://*:7410"},  // not connectable
      {"tcp://0.0.0.0:7410"},
      {"tcp://[::]:7410"},
      {"tcp://h:0"},
      {"tcp://h"},
      {"tcp://h:99999"},
      {"tcp://h/../x:1"},
      {""},
  };
  for (const auto& sources : bad) {
    Status st = DecodeStatus(WithSources(sources));
    std::string shown = sources.empty() ? "(none)" : sources.back().substr(0, 40);
    EXPECT_EQ(st.code(), ErrorCode::kBadMessage) << sources.size() << " sources: " << shown;
  }
}

TEST(CopyShardFromRequestTest, RefusesMalformedFields) {
  const CopyShardFromRequest m = SampleCopy();
  auto expect_bad = [](const FieldWriter& w, const char* what) {
    EXPECT_EQ(DecodeStatus(w).code(), ErrorCode::kBadMessage) << what;
  };
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", kMaxShardBytes + 1).U64("sum", 1).StrArray("src", m.sources);
    expect_bad(w, "length above the largest shard");
  }
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", 1).StrArray("src", m.sources);
    expect_bad(w, "no checksum");
  }
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", 1).U64("sum", 1);
    expect_bad(w, "no sources field");
  }
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", 1).U64("sum", 1).Str("src", "tcp://h:1");
    expect_bad(w, "sources not an array");
  }
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", 1).U64("sum", 1).U64Array("src", {1, 2});
    expect_bad(w, "sources not strings");
  }
  {
    FieldWriter w;
    EncodeShardKey(w, m.key);
    w.U64("len", 1).U64("sum", 1).StrArray("src", m.sources).U64("sync", 1);
    expect_bad(w, "sync not a bool");
  }
  {
    FieldWriter w;
    w.U64("ino", 1).U64("idx", 1ull << 32).U64("gen", 1);
    w.U64("len", 1).U64("sum", 1).StrArray("src", m.sources);
    expect_bad(w, "index above 32 bits");
  }
  {
    FieldWriter w;
    w.U64("len", 1).U64("sum", 1).StrArray("src", m.sources);
    expect_bad(w, "no key");
  }
}

TEST(SyncShardsRequestTest, RoundTripsAndRefusesTooManyKeys) {
  SyncShardsRequest m;
  m.keys = {ShardKey{1, 2, 3}, ShardKey{UINT64_MAX, UINT32_MAX, 7}};
  auto decoded = SyncShardsRequest::Decode(OverTheWire(m.Encode()).fields);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->keys, m.keys);
  EXPECT_FALSE(SyncShardsRequest::Decode(OverTheWire(FieldWriter()).fields).ok());
  SyncShardsRequest big;
  big.keys.resize(kMaxSyncKeys + 1);
  EXPECT_EQ(SyncShardsRequest::Decode(OverTheWire(big.Encode()).fields).status().code(),
            ErrorCode::kBadMessage);
}

// The node says how much of a put it stored (holes left out); a node that
// does not say stored all of it, and one that claims more than it was sent
// is not believed.
TEST(PutShardReplyTest, DataBytesRoundTripAndDefaultToTheLength) {
  const PutShardReply m{4 << 20, 0xabcdef, 8192};
  auto back = PutShardReply::Decode(OverTheWire(m.Encode()).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->length, m.length);
  EXPECT_EQ(back->checksum, m.checksum);
  EXPECT_EQ(back->data_bytes, 8192u);

  FieldWriter older;
  older.U64("len", 1000).U64("sum", 5);
  back = PutShardReply::Decode(OverTheWire(older).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->data_bytes, 1000u);

  FieldWriter lying;
  lying.U64("len", 1000).U64("sum", 5).U64("data", 1001);
  EXPECT_EQ(PutShardReply::Decode(OverTheWire(lying).fields).status().code(),
            ErrorCode::kBadMessage);
}

// Extents must be sorted, disjoint, non-empty and inside the shard: the
// mount reports everything else as holes, so a bad list is refused.
TEST(ShardExtentsReplyTest, RoundTripsAndRefusesBadExtents) {
  const ShardExtentsReply m{4 << 20, {{0, 8192}, {3 << 20, 4096}, {(4 << 20) - 10, 10}}};
  auto back = ShardExtentsReply::Decode(OverTheWire(m.Encode()).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->length, m.length);
  EXPECT_EQ(back->extents, m.extents);
  const ShardExtentsReply none{100, {}};
  back = ShardExtentsReply::Decode(OverTheWire(none.Encode()).fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->extents.empty());

  for (const std::vector<uint64_t>& flat :
       std::vector<std::vector<uint64_t>>{{0},                 // not pairs
                                          {0, 0},              // empty
                                          {100, 10, 50, 10},   // out of order
                                          {0, 100, 50, 10},    // overlapping
                                          {4090, 10},          // past the end
                                          {UINT64_MAX, 2}}) {  // overflowing
    FieldWriter w;
    w.U64("len", 4096).U64Array("ext", flat);
    EXPECT_EQ(ShardExtentsReply::Decode(OverTheWire(w).fields).status().code(),
              ErrorCode::kBadMessage)
        << flat.size();
  }
}

}  // namespace
}  // namespace shardfs
