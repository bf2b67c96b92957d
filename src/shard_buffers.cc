#include "src/shard_buffers.h"

#include <malloc.h>

namespace shardfs {

void KeepShardBuffersInHeap() {
  // Larger than a shard (4 MiB) plus its frame, so shards come from the
  // heap; above it (rare: read-ahead of many shards at once) mmap as before.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
}

}  // namespace shardfs
