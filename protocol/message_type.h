// Message types and protocol version of every shardfs socket.
//
// The numbers are part of the wire format: append, never renumber. A reply
// carries the type of its request with kReplyBit set, or kError.
#pragma once

#include <cstdint>

namespace shardfs {

inline constexpr uint16_t kProtocolVersion = 1;

enum class MessageType : uint16_t {
  kError = 1,  // fields: code, message

  // Node server (shardfs-node).
  kNodePing = 100,
  kNodeInfo = 101,
  kPutShard = 102,
  kGetShard = 103,
  kDeleteShard = 104,
  kStatShard = 105,
  kInventory = 106,
  kPutPatchedShard = 107,
  kCopyShardFrom = 108,  // node-to-node repair: fetch a shard from a peer
  kSyncShards = 109,     // make shards stored without sync durable (fsync)
  kShardExtents = 110,   // where a shard holds data: its holes left out

  // Registry (shardfs-registry): membership.
  kRegisterNode = 200,
  kHeartbeat = 201,
  kClusterMap = 202,
  kReportBadReplica = 203,
  kSetDraining = 204,

  // Registry: namespace.
  kLookup = 300,
  kGetAttr = 301,
  kSetAttr = 302,
  kMknod = 303,
  kMkdir = 304,
  kUnlink = 305,
  kRmdir = 306,
  kRename = 307,
  kLink = 308,
  kSymlink = 309,
  kReadlink = 310,
  kReadDir = 311,
  kStatFs = 312,
  kSetXattr = 313,
  kGetXattr = 314,
  kListXattr = 315,
  kRemoveXattr = 316,
  kOpen = 317,
  kRelease = 318,
  kAllocateShards = 319,
  kCommitShards = 320,
  kGetShardTable = 321,
  kSetReplicas = 322,
  kFsck = 323,
  kRebalance = 324,
  kRenewSession = 325,  // a client's open files are still held (protocol/session_messages.h)
};

inline constexpr uint16_t kReplyBit = 0x8000;

inline uint16_t ReplyTypeOf(MessageType request) {
  return static_cast<uint16_t>(static_cast<uint16_t>(request) | kReplyBit);
}

}  // namespace shardfs
