// Allocator settings for the mount, which moves every shard it writes
// through several buffers.
//
// Every shard travels through buffers of up to a few MiB (a FUSE write, a
// message frame, a CURVE box, a dirty shard). glibc's malloc serves
// allocations that large with mmap and hands them back with munmap on free,
// so each message faulted its pages in again: a profile of a sequential
// write through the mount spent 8-10 % of its samples in page faults and
// page clearing, most of them in the mount's store threads. Raising the mmap
// and trim thresholds keeps freed buffers in the heap for the next message.
// The nodes keep glibc's defaults: under the flood fault test the same
// settings raised a node's peak RSS from ~250-310 to ~300-450 MiB (freed
// buffers stranded in the arenas of other threads), and a node's memory is
// what hostile peers aim at.
#pragma once

namespace shardfs {

// Call once at the start of main(), before any thread is started.
void KeepShardBuffersInHeap();

}  // namespace shardfs
