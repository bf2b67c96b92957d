#include "src/meta_log.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace shardfs {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "shardfs-metalog-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string PayloadFor(uint64_t i) {
  return "record-" + std::to_string(i) + std::string(i % 37, 'x');
}

struct Replayed {
  std::vector<uint64_t> seqs;
  std::vector<std::string> payloads;
  MetaLog::RecordFn Fn() {
    return [this](uint64_t seq, std::string_view payload) {
      seqs.push_back(seq);
      payloads.emplace_back(payload);
      return Status::Ok();
    };
  }
};

TEST(LogRecordTest, RoundTrip) {
  for (std::string payload : {std::string(), std::string("a"), std::string(1000, '\0')}) {
    std::string bytes = EncodeLogRecord(42, payload);
    ASSERT_EQ(bytes.size(), kLogRecordHeaderSize + payload.size());
    LogRecordView rec;
    ASSERT_EQ(DecodeLogRecord(bytes, &rec), LogRecordCheck::kOk);
    EXPECT_EQ(rec.seq, 42u);
    EXPECT_EQ(rec.payload, payload);
    EXPECT_EQ(rec.encoded_size, bytes.size());
    // Followed by more bytes, only the first record is decoded.
    ASSERT_EQ(DecodeLogRecord(bytes + "trailing", &rec), LogRecordCheck::kOk);
    EXPECT_EQ(rec.encoded_size, bytes.size());
  }
}

TEST(LogRecordTest, EveryPrefixIsShortAndEveryFlipIsCaught) {
  const std::string bytes = EncodeLogRecord(7, "some payload bytes");
  LogRecordView rec;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_EQ(DecodeLogRecord(std::string_view(bytes).substr(0, cut), &rec), LogRecordCheck::kShort)
        << cut;
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      EXPECT_NE(DecodeLogRecord(damaged, &rec), LogRecordCheck::kOk) << i << "/" << bit;
    }
  }
  // Zero-filled space (what a crash can leave after preallocation) is damage.
  EXPECT_EQ(DecodeLogRecord(std::string(64, '\0'), &rec), LogRecordCheck::kBad);
}

TEST(MetaLogTest, AppendWaitAndReplay) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (uint64_t i = 1; i <= 100; ++i) {
      auto seq = (*log)->Append(PayloadFor(i));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, i);
    }
    EXPECT_EQ((*log)->durable_seq(), 0u);
    ASSERT_TRUE((*log)->WaitDurable(50).ok());
    EXPECT_EQ((*log)->durable_seq(), 100u);  // one flush covered everything buffered
    EXPECT_EQ((*log)->sync_count(), 1u);
    EXPECT_EQ((*log)->WaitDurable(101).code(), ErrorCode::kInvalidArgument);
  }
  Replayed r;
  LogReadResult info;
  auto log = MetaLog::Open(path, 1, r.Fn(), &info);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(r.seqs.size(), 100u);
  for (uint64_t i = 1; i <= 100; ++i) {
    EXPECT_EQ(r.seqs[i - 1], i);
    EXPECT_EQ(r.payloads[i - 1], PayloadFor(i));
  }
  EXPECT_EQ(info.first_seq, 1u);
  EXPECT_EQ(info.last_seq, 100u);
  EXPECT_TRUE(info.stopped_because.empty());
  EXPECT_EQ((*log)->Append("next").value(), 101u);
}

TEST(MetaLogTest, DestructorKeepsBufferedRecords) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    ASSERT_TRUE((*log)->Append("unwaited").ok());
  }
  Replayed r;
  ASSERT_TRUE(MetaLog::ReadFile(path, r.Fn()).ok());
  EXPECT_EQ(r.payloads, std::vector<std::string>{"unwaited"});
}

TEST(MetaLogTest, TornLastRecordIsDroppedAtEveryCut) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  constexpr uint64_t kRecords = 5;
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    for (uint64_t i = 1; i <= kRecords; ++i) ASSERT_TRUE((*log)->Append(PayloadFor(i)).ok());
    ASSERT_TRUE((*log)->Sync().ok());
  }
  const std::string full = ReadBytes(path);
  const size_t last_size = kLogRecordHeaderSize + PayloadFor(kRecords).size();
  const size_t last_start = full.size() - last_size;

  for (size_t cut = last_start; cut <= full.size(); ++cut) {
    SCOPED_TRACE(cut);
    const std::string cut_path = dir.File("cut");
    WriteBytes(cut_path, std::string_view(full).substr(0, cut));
    Replayed r;
    LogReadResult info;
    {
      auto log = MetaLog::Open(cut_path, 1, r.Fn(), &info);
      ASSERT_TRUE(log.ok()) << log.status().ToString();
      const uint64_t expect = cut == full.size() ? kRecords : kRecords - 1;
      ASSERT_EQ(r.seqs.size(), expect);
      for (uint64_t i = 1; i <= expect; ++i) EXPECT_EQ(r.payloads[i - 1], PayloadFor(i));
      EXPECT_EQ(info.stopped_because.empty(), cut == last_start || cut == full.size());
      // The torn tail is cut off on disk, and new records follow the last good one.
      EXPECT_EQ(fs::file_size(cut_path), cut == full.size() ? full.size() : last_start);
      auto seq = (*log)->Append("after-crash");
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, expect + 1);
      ASSERT_TRUE((*log)->WaitDurable(*seq).ok());
    }
    Replayed again;
    auto info2 = MetaLog::ReadFile(cut_path, again.Fn());
    ASSERT_TRUE(info2.ok());
    EXPECT_TRUE(info2->stopped_because.empty());
    EXPECT_EQ(again.payloads.back(), "after-crash");
  }
}

TEST(MetaLogTest, DamageInTheMiddleEndsTheLogThere) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE((*log)->Append(PayloadFor(i)).ok());
    ASSERT_TRUE((*log)->Sync().ok());
  }
  std::string bytes = ReadBytes(path);
  size_t offset = 0;
  for (uint64_t i = 1; i < 5; ++i) offset += kLogRecordHeaderSize + PayloadFor(i).size();
  bytes[offset + kLogRecordHeaderSize + 2] ^= 0x40;  // a payload byte of record 5
  WriteBytes(path, bytes);

  // Reading alone changes nothing on disk.
  Replayed peek;
  auto info = MetaLog::ReadFile(path, peek.Fn());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(peek.seqs.size(), 4u);
  EXPECT_EQ(info->valid_bytes, offset);
  EXPECT_NE(info->stopped_because.find("damaged"), std::string::npos);
  EXPECT_EQ(fs::file_size(path), bytes.size());

  // Opening for append drops record 5 and everything after it (documented).
  Replayed r;
  auto log = MetaLog::Open(path, 1, r.Fn());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(r.seqs, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(fs::file_size(path), offset);
  EXPECT_EQ((*log)->Append("x").value(), 5u);
}

TEST(MetaLogTest, SequenceGapEndsTheLog) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  WriteBytes(path, EncodeLogRecord(1, "a") + EncodeLogRecord(2, "b") + EncodeLogRecord(4, "d"));
  Replayed r;
  auto info = MetaLog::ReadFile(path, r.Fn());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "b"}));
  EXPECT_NE(info->stopped_because.find("sequence"), std::string::npos);
}

TEST(MetaLogTest, ReadBufferReadsWhatReadFileReads) {
  const std::string bytes =
      EncodeLogRecord(7, "a") + EncodeLogRecord(8, "bc") + std::string("\x05\x00", 2);
  Replayed r;
  auto info = MetaLog::ReadBuffer(bytes, r.Fn());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(r.seqs, (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(info->first_seq, 7u);
  EXPECT_EQ(info->last_seq, 8u);
  EXPECT_EQ(info->valid_bytes, bytes.size() - 2);
  EXPECT_EQ(info->file_bytes, bytes.size());
  EXPECT_NE(info->stopped_because.find("torn"), std::string::npos);
}

// Sequence numbers start at 1, and one record must be able to follow each.
TEST(MetaLogTest, ImpossibleSequenceNumbersEndTheLog) {
  for (uint64_t seq : {uint64_t{0}, UINT64_MAX}) {
    Replayed r;
    auto info =
        MetaLog::ReadBuffer(EncodeLogRecord(seq, "forged") + EncodeLogRecord(seq + 1, "x"), r.Fn());
    ASSERT_TRUE(info.ok());
    EXPECT_TRUE(r.seqs.empty()) << seq;
    EXPECT_EQ(info->valid_bytes, 0u);
    EXPECT_NE(info->stopped_because.find("impossible"), std::string::npos);
  }
}

// A forged record numbered 2^64-1 used to be taken as the last good one:
// Open then numbered new records from 1 (2^64-1 + 1 wraps), and the next
// read stopped at the first of them, silently dropping acknowledged records.
TEST(MetaLogTest, RecordsAppendedAfterAForgedMaximalSeqSurvive) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  WriteBytes(path, EncodeLogRecord(UINT64_MAX, "forged"));
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    ASSERT_TRUE(log.ok());
    auto seq = (*log)->Append("acknowledged");
    ASSERT_TRUE(seq.ok());
    ASSERT_TRUE((*log)->WaitDurable(*seq).ok());
  }
  Replayed r;
  auto info = MetaLog::ReadFile(path, r.Fn());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"acknowledged"}));
}

TEST(MetaLogTest, CallbackErrorStopsOpen) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  WriteBytes(path, EncodeLogRecord(1, "a"));
  auto log = MetaLog::Open(path, 1, [](uint64_t, std::string_view) {
    return Status::Error(ErrorCode::kCorrupt, "bad op");
  });
  EXPECT_EQ(log.status().code(), ErrorCode::kCorrupt);
}

TEST(MetaLogTest, NumberingStartsAtNextSeqForAnEmptyFile) {
  TempDir dir;
  auto log = MetaLog::Open(dir.File("log.000002"), 1000, nullptr);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->last_seq(), 999u);
  EXPECT_EQ((*log)->Append("a").value(), 1000u);
}

TEST(MetaLogTest, SwitchFileContinuesNumbering) {
  TempDir dir;
  auto log = MetaLog::Open(dir.File("log.000001"), 1, nullptr);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append("one").ok());
  ASSERT_TRUE((*log)->Append("two").ok());
  ASSERT_TRUE((*log)->SwitchFile(dir.File("log.000002")).ok());
  EXPECT_EQ((*log)->durable_seq(), 2u);  // switching made the old file durable
  ASSERT_EQ((*log)->Append("three").value(), 3u);
  ASSERT_TRUE((*log)->Sync().ok());
  EXPECT_EQ((*log)->path(), dir.File("log.000002"));
  EXPECT_EQ((*log)->SwitchFile(dir.File("log.000002")).code(), ErrorCode::kIoError);  // exists

  Replayed first, second;
  ASSERT_TRUE(MetaLog::ReadFile(dir.File("log.000001"), first.Fn()).ok());
  ASSERT_TRUE(MetaLog::ReadFile(dir.File("log.000002"), second.Fn()).ok());
  EXPECT_EQ(first.seqs, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(second.seqs, (std::vector<uint64_t>{3}));
  EXPECT_EQ(MetaLog::ReadFile(dir.File("log.000009"), nullptr).status().code(),
            ErrorCode::kNotFound);
}

TEST(MetaLogTest, GroupCommitSharesSyncsAcrossThreads) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    ASSERT_TRUE(log.ok());
    MetaLog* l = log->get();
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([l, t, &failures] {
        for (int i = 0; i < kPerThread; ++i) {
          auto seq = l->Append("t" + std::to_string(t) + "-" + std::to_string(i));
          if (!seq.ok() || !l->WaitDurable(*seq).ok() || l->durable_seq() < *seq) failures++;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(l->durable_seq(), uint64_t{kThreads * kPerThread});
    EXPECT_LT(l->sync_count(), uint64_t{kThreads * kPerThread});
    EXPECT_GE(l->sync_count(), 1u);
    std::printf("8 x 1000 appends: %llu fdatasync calls\n",
                static_cast<unsigned long long>(l->sync_count()));
  }
  Replayed r;
  ASSERT_TRUE(MetaLog::ReadFile(path, r.Fn()).ok());
  ASSERT_EQ(r.seqs.size(), size_t{kThreads * kPerThread});
  // Each thread's records appear in its own order.
  std::vector<int> next(kThreads, 0);
  for (const std::string& p : r.payloads) {
    int t = p[1] - '0';
    EXPECT_EQ(p, "t" + std::to_string(t) + "-" + std::to_string(next[t]++));
  }
}

// Flushes overwrite zero-filled space the file already has, so fdatasync
// need not push a new file size through the journal each time; a clean
// close leaves only the records.
TEST(MetaLogTest, FlushesWriteIntoZeroFilledSpaceThatACleanCloseCutsOff) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  std::string records;
  {
    auto log = MetaLog::Open(path, 1, nullptr);
    ASSERT_TRUE(log.ok());
    uintmax_t size_after_first_flush = 0;
    for (uint64_t i = 1; i <= 200; ++i) {
      ASSERT_TRUE((*log)->WaitDurable((*log)->Append(PayloadFor(i)).value()).ok());
      records += EncodeLogRecord(i, PayloadFor(i));
      // The size is set once, by the first flush.
      if (i == 1) size_after_first_flush = fs::file_size(path);
      ASSERT_EQ(fs::file_size(path), size_after_first_flush);
    }
    const std::string bytes = ReadBytes(path);
    EXPECT_EQ(bytes.size(), EncodeLogRecord(1, PayloadFor(1)).size() + kLogPreallocateBytes);
    EXPECT_EQ(bytes.substr(0, records.size()), records);
    EXPECT_EQ(bytes.find_first_not_of('\0', records.size()), std::string::npos);

    // A reader (a restart after kill -9 sees the same) takes the zeros as the end.
    Replayed r;
    auto info = MetaLog::ReadFile(path, r.Fn());
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(r.seqs.size(), 200u);
    EXPECT_TRUE(info->stopped_because.empty()) << info->stopped_because;
    EXPECT_EQ(info->valid_bytes, records.size());
  }
  EXPECT_EQ(ReadBytes(path), records);
}

// kill -9 leaves the zero-filled space behind; reopening reads every
// acknowledged record, warns of nothing, and new records follow them.
TEST(MetaLogTest, ReopenAfterACrashContinuesAfterTheLastRecord) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto log = MetaLog::Open(path, 1, nullptr);
    bool ok = log.ok();
    for (uint64_t i = 1; ok && i <= 50; ++i) {
      auto seq = (*log)->Append(PayloadFor(i));
      ok = seq.ok() && (*log)->WaitDurable(*seq).ok();
    }
    std::_Exit(ok ? 0 : 1);  // no destructor: the zeros stay
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  ASSERT_GT(fs::file_size(path), kLogPreallocateBytes);

  for (int reopen = 0; reopen < 2; ++reopen) {
    Replayed r;
    LogReadResult info;
    auto log = MetaLog::Open(path, 1, r.Fn(), &info);
    ASSERT_TRUE(log.ok());
    ASSERT_EQ(r.seqs.size(), 50u + reopen);
    EXPECT_TRUE(info.stopped_because.empty()) << info.stopped_because;
    EXPECT_EQ((*log)->Append("after").value(), 51u + reopen);
  }
  Replayed all;
  ASSERT_TRUE(MetaLog::ReadFile(path, all.Fn()).ok());
  EXPECT_EQ(all.seqs.size(), 52u);
  EXPECT_EQ(all.payloads[50], "after");
}

// A record torn by the crash sits between the last good record and the
// zeros; it is damage, and it is cut off.
TEST(MetaLogTest, TornRecordBeforeZeroFilledSpaceIsDropped) {
  TempDir dir;
  const std::string path = dir.File("log.000001");
  const std::string good = EncodeLogRecord(1, "a") + EncodeLogRecord(2, "b");
  const std::string torn = EncodeLogRecord(3, PayloadFor(30));
  std::string bytes = good + torn.substr(0, torn.size() / 2);
  bytes.resize(good.size() + 4096, '\0');
  WriteBytes(path, bytes);
  Replayed r;
  LogReadResult info;
  auto log = MetaLog::Open(path, 1, r.Fn(), &info);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(info.stopped_because.empty());
  EXPECT_EQ(fs::file_size(path), good.size());
  EXPECT_EQ((*log)->Append("c").value(), 3u);
}

TEST(MetaLogTest, WriteErrorFailsTheLog) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto log = MetaLog::Open("/dev/full", 1, nullptr);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  auto seq = (*log)->Append("x");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ((*log)->WaitDurable(*seq).code(), ErrorCode::kIoError);
  EXPECT_EQ((*log)->Append("y").status().code(), ErrorCode::kIoError);
  EXPECT_EQ((*log)->Sync().code(), ErrorCode::kIoError);
}

}  // namespace
}  // namespace shardfs
