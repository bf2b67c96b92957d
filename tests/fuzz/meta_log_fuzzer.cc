// Fuzz target: reading the registry's metadata log from a file's bytes.
//
// On start the registry reads each log file whole and hands its bytes to
// MetaLog::ReadBuffer(), which walks the checksummed records and calls back
// with each payload; the callback decodes it (DecodeOp) and applies it to
// the namespace, as NamespaceDb::Recover() does. A log file is ours, but a
// disk can return anything, so the reader must take any bytes: it stops at
// the first torn or damaged record, never crashes, never reads past the
// buffer, and never allocates what a length field merely claims.
//
// Checksums stop nearly every random mutation at the first record, so each
// input is used twice:
//   - as a log file as it is: what ReadBuffer() returns must be consecutive
//     records that, encoded again, are exactly the bytes it says are valid,
//     and where it stops it says why;
//   - split into MessagePack objects, each framed as a record with
//     EncodeLogRecord(): all of them must be read back, and replayed like
//     Recover() does (a record that does not decode or apply stops the
//     replay with kCorrupt); then the framed file, cut short at an
//     input-chosen offset or with one byte changed, must read back as
//     exactly the records wholly before the damage.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/msgpack_bounds.h"
#include "src/meta_log.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

constexpr size_t kMaxRecords = 16;

struct Record {
  uint64_t seq;
  std::string payload;
};

// Reads `log` and checks what the reader promises about any bytes.
LogReadResult ReadChecked(std::string_view log, std::vector<Record>* records) {
  auto read = MetaLog::ReadBuffer(log, [&](uint64_t seq, std::string_view payload) {
    records->push_back({seq, std::string(payload)});
    return Status::Ok();
  });
  FUZZ_CHECK(read.ok());  // only the callback can fail the read
  FUZZ_CHECK(read->file_bytes == log.size() && read->valid_bytes <= log.size());
  FUZZ_CHECK(read->records == records->size());
  // Only zeros (preallocated space) may follow the records of a read that
  // did not stop early.
  const bool zero_tail = log.substr(read->valid_bytes).find_first_not_of('\0') == std::string::npos;
  FUZZ_CHECK(read->stopped_because.empty() == zero_tail);
  std::string again;
  for (size_t i = 0; i < records->size(); ++i) {
    const Record& r = (*records)[i];
    FUZZ_CHECK(r.seq != 0 && r.seq != UINT64_MAX);
    if (i > 0) FUZZ_CHECK(r.seq == (*records)[i - 1].seq + 1);
    FUZZ_CHECK(r.payload.size() <= kMaxLogPayloadSize);
    again += EncodeLogRecord(r.seq, r.payload);
  }
  if (!records->empty()) {
    FUZZ_CHECK(read->first_seq == records->front().seq && read->last_seq == records->back().seq);
  }
  // The framing is canonical: the valid prefix is exactly its records.
  FUZZ_CHECK(again == log.substr(0, read->valid_bytes));
  return *read;
}

// Replays `log` into a fresh namespace the way NamespaceDb::Recover() does.
void Replay(std::string_view log) {
  NamespaceStore store;
  auto read = MetaLog::ReadBuffer(log, [&](uint64_t, std::string_view payload) -> Status {
    auto op = DecodeOp(payload);
    if (!op.ok()) {
      FUZZ_CHECK(op.status().code() == ErrorCode::kBadMessage);
      return Status::Error(ErrorCode::kCorrupt, op.status().message());
    }
    auto applied = store.Apply(*op);
    if (!applied.ok()) return Status::Error(ErrorCode::kCorrupt, applied.status().message());
    return Status::Ok();
  });
  if (!read.ok()) FUZZ_CHECK(read.status().code() == ErrorCode::kCorrupt);
  FUZZ_CHECK(store.CheckInvariants().ok());
}

// The input split into MessagePack objects, as the payloads of a log.
std::vector<std::string_view> SplitObjects(std::string_view bytes) {
  std::vector<std::string_view> out;
  size_t offset = 0;
  while (offset < bytes.size() && out.size() < kMaxRecords) {
    if (!CheckClaimedSizes(bytes, offset, 16).ok()) break;
    const size_t start = offset;
    try {
      msgpack::object_handle ignored = msgpack::unpack(bytes.data(), bytes.size(), offset);
    } catch (const std::exception&) {
      break;
    }
    if (offset <= start) break;
    out.push_back(bytes.substr(start, offset - start));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // 1. The input as a log file.
  {
    std::vector<Record> records;
    ReadChecked(bytes, &records);
    Replay(bytes);
  }

  // 2. The input's objects as the payloads of a well-framed log.
  const std::vector<std::string_view> payloads = SplitObjects(bytes);
  if (payloads.empty()) return 0;
  const uint64_t first_seq = 1 + (size % 1000);
  std::string log;
  std::vector<size_t> ends;  // where each record ends in `log`
  for (size_t i = 0; i < payloads.size(); ++i) {
    log += EncodeLogRecord(first_seq + i, payloads[i]);
    ends.push_back(log.size());
  }
  {
    std::vector<Record> records;
    auto read = ReadChecked(log, &records);
    FUZZ_CHECK(read.stopped_because.empty() && records.size() == payloads.size());
    for (size_t i = 0; i < records.size(); ++i) {
      FUZZ_CHECK(records[i].seq == first_seq + i && records[i].payload == payloads[i]);
    }
  }
  Replay(log);
  {
    // Preallocated space after the records is the clean end of the log.
    std::vector<Record> records;
    auto read = ReadChecked(log + std::string(1 + data[0] % 64, '\0'), &records);
    FUZZ_CHECK(read.stopped_because.empty() && records.size() == payloads.size());
  }

  // 3. The framed log damaged: cut short, or one byte changed. Either way
  // the records wholly before the damage are read, and none after it.
  const size_t at = (static_cast<size_t>(data[0]) * 131 + size) % log.size();
  auto records_before = [&](size_t offset) {
    size_t n = 0;
    while (n < ends.size() && ends[n] <= offset) ++n;
    return n;
  };
  {
    std::vector<Record> records;
    ReadChecked(std::string_view(log).substr(0, at), &records);
    FUZZ_CHECK(records.size() == records_before(at));
  }
  {
    std::string damaged = log;
    damaged[at] = static_cast<char>(damaged[at] ^ (1 + data[size - 1] % 255));
    std::vector<Record> records;
    ReadChecked(damaged, &records);
    // The damaged record starts at the end of the last one before it.
    FUZZ_CHECK(records.size() == records_before(at));
  }
  return 0;
}
