// Fuzz target: DecodeHeader() and FieldReader on any byte string.
//
// The header frame is the first thing a node or the registry parses from any
// peer, before anything is authenticated by content, so it must turn every
// byte string into either a header or an error value: no crash, no
// unbounded allocation, no undefined behaviour. Beyond "does not crash" the
// target checks what the readers promise: an error is a protocol error, a
// bounded read never returns more than its bound, an absent field is an
// error for required reads and the fallback for optional ones, and a decoded
// header's numbers survive re-encoding.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/envelope.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using shardfs::ErrorCode;
using shardfs::FieldReader;

// Every key the node, registry and error messages use, plus the short ones
// of the seed corpus, so the readers meet real fields of every type.
constexpr std::string_view kKeys[] = {
    "code",     "message", "ino",    "idx",     "gen",   "sync", "sum",     "len",   "off",
    "shardlen", "base",    "newlen", "patches", "after", "max",  "entries", "more",  "id",
    "cap",      "used",    "shards", "u",       "i",     "t",    "s",       "b",     "ua",
    "sa",       "m",       "ma",     "name",    "mode",  "size", "epoch",   "nodes", ""};

bool IsProtocolError(ErrorCode code) {
  return code == ErrorCode::kBadMessage || code == ErrorCode::kTooLarge;
}

void ExerciseFields(const FieldReader& r, int depth) {
  for (std::string_view key : kKeys) {
    const bool present = r.Has(key);
    auto u = r.U64(key);
    auto bounded = r.U64(key, 1000);
    auto i = r.I64(key);
    auto b = r.Bool(key);
    auto s = r.Str(key, 16);
    auto bin = r.Bin(key, 1 << 20);
    auto ua = r.U64Array(key, 8);
    auto sa = r.StrArray(key, 8, 8);
    auto m = r.Map(key);
    auto ma = r.MapArray(key, 8);
    if (!present) {
      FUZZ_CHECK(!u.ok() && !bounded.ok() && !i.ok() && !b.ok() && !s.ok() && !bin.ok() &&
                 !ua.ok() && !sa.ok() && !m.ok() && !ma.ok());
      FUZZ_CHECK(*r.OptU64(key, 42) == 42);
      FUZZ_CHECK(*r.OptBool(key, true));
      FUZZ_CHECK(*r.OptStr(key, 4, "fallback") == "fallback");
    }
    for (const shardfs::Status* st :
         {&u.status(), &bounded.status(), &i.status(), &b.status(), &s.status(), &bin.status(),
          &ua.status(), &sa.status(), &m.status(), &ma.status()}) {
      FUZZ_CHECK(st->ok() || st->code() == ErrorCode::kBadMessage);
    }
    if (bounded.ok()) FUZZ_CHECK(*bounded <= 1000 && u.ok() && *u == *bounded);
    if (u.ok() && *u <= 1000) FUZZ_CHECK(bounded.ok());
    if (u.ok() && *u <= static_cast<uint64_t>(INT64_MAX)) {
      FUZZ_CHECK(i.ok() && static_cast<uint64_t>(*i) == *u);
    }
    if (s.ok()) FUZZ_CHECK(s->size() <= 16 && bin.ok() && *bin == *s);
    if (ua.ok()) FUZZ_CHECK(ua->size() <= 8);
    if (sa.ok()) {
      FUZZ_CHECK(sa->size() <= 8);
      for (const auto& item : *sa) FUZZ_CHECK(item.size() <= 8);
    }
    if (ma.ok()) FUZZ_CHECK(ma->size() <= 8);
    if (depth < 3) {
      if (m.ok()) ExerciseFields(*m, depth + 1);
      if (ma.ok()) {
        for (const auto& item : *ma) ExerciseFields(item, depth + 1);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto env = shardfs::DecodeHeader(bytes);
  if (!env.ok()) {
    FUZZ_CHECK(IsProtocolError(env.status().code()));
    return 0;
  }
  FUZZ_CHECK(size <= shardfs::kMaxHeaderBytes);
  // An error reply's fields never turn into success, whatever they hold.
  shardfs::Status as_error = shardfs::StatusFromErrorFields(env->fields);
  FUZZ_CHECK(!as_error.ok());
  ExerciseFields(env->fields, 0);

  // The numbers of a decoded header survive re-encoding.
  std::string again = shardfs::EncodeHeader(env->type, env->request_id, shardfs::FieldWriter());
  auto env2 = shardfs::DecodeHeader(again);
  FUZZ_CHECK(env2.ok());
  FUZZ_CHECK(env2->type == env->type && env2->request_id == env->request_id &&
             env2->version == shardfs::kProtocolVersion);
  return 0;
}
