// Fuzz target: reading a snapshot of the registry's namespace from a file's
// bytes.
//
// On start the registry loads the newest snapshot file: DecodeSnapshotFile()
// checks its header and checksum, and NamespaceStore::LoadSnapshot() decodes
// the payload into the whole namespace. Neither may crash or allocate what a
// count merely claims, whatever the bytes.
//
// Checksums stop nearly every random mutation at the header, so each input
// is used three ways:
//   - as a snapshot file as it is: if it verifies, its payload is loaded, and
//     encoding the same seq and payload gives back exactly the input;
//   - as the payload of a well-formed file (the decoder behind the checksum):
//     the file verifies; LoadSnapshot() either fails with kCorrupt and
//     leaves the store as it was, or loads a namespace that holds its
//     invariants and survives EncodeSnapshot() -> LoadSnapshot() unchanged;
//   - that file with one byte changed, which must not verify.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/meta_snapshot.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

// A store with something in it, so a failed load has a state to keep.
void Populate(NamespaceStore& store) {
  for (NamespaceOp op :
       {NamespaceOp{MkdirOp{.parent = kRootIno, .name = "d", .mode = 0755}},
        NamespaceOp{MknodOp{.parent = kRootIno, .name = "f", .mode = 0644, .shard_size = 4096}}}) {
    store.Prepare(&op);
    FUZZ_CHECK(store.Apply(op).ok());
  }
}

void Load(std::string_view payload) {
  NamespaceStore store;
  Populate(store);
  const std::string before = store.DumpCanonical();
  Status loaded = store.LoadSnapshot(payload);
  if (!loaded.ok()) {
    FUZZ_CHECK(loaded.code() == ErrorCode::kCorrupt);
    FUZZ_CHECK(store.DumpCanonical() == before);  // all or nothing
    return;
  }
  FUZZ_CHECK(store.CheckInvariants().ok());
  const std::string encoded = store.EncodeSnapshot();
  NamespaceStore copy;
  Status reloaded = copy.LoadSnapshot(encoded);
  if (!reloaded.ok()) std::fprintf(stderr, "%s\n", reloaded.ToString().c_str());
  FUZZ_CHECK(reloaded.ok());
  FUZZ_CHECK(copy.DumpCanonical() == store.DumpCanonical());
  FUZZ_CHECK(copy.EncodeSnapshot() == encoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // 1. The input as a snapshot file.
  auto file = DecodeSnapshotFile(bytes);
  if (file.ok()) {
    FUZZ_CHECK(EncodeSnapshotFile(file->seq, file->payload) == bytes);
    Load(file->payload);
  } else {
    FUZZ_CHECK(file.status().code() == ErrorCode::kCorrupt);
  }

  // 2. The input as the payload of a well-formed file.
  const uint64_t seq = size * 7919;
  const std::string wrapped = EncodeSnapshotFile(seq, bytes);
  auto verified = DecodeSnapshotFile(wrapped);
  FUZZ_CHECK(verified.ok() && verified->seq == seq && verified->payload == bytes);
  Load(bytes);

  // 3. That file with one byte changed does not verify.
  std::string damaged = wrapped;
  const size_t at = (size == 0 ? 0 : static_cast<size_t>(data[0]) * 131 + size) % damaged.size();
  damaged[at] = static_cast<char>(damaged[at] ^ (size == 0 ? 1 : 1 + data[size - 1] % 255));
  FUZZ_CHECK(!DecodeSnapshotFile(damaged).ok());
  return 0;
}
