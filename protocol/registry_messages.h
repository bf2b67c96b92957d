// Typed membership messages between node servers and the registry.
//
// A node server registers once (kRegisterNode) and then heartbeats every
// second (kHeartbeat) with its free space; the registry answers with its
// cluster-map epoch. A heartbeat reply with known=false means the registry
// has no record of the node (it restarted and keeps membership in memory
// only), and the node registers again. kClusterMap asks for the whole map;
// its reply fields are ClusterMap::Encode() (src/cluster_map.h), which lives
// in the core library because clients keep and query it.
//
// Each message is a plain struct with Encode() to header fields and a
// Decode() that checks every field, so handlers never see a malformed value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/fields.h"
#include "src/shard_key.h"
#include "src/status.h"

namespace shardfs {

// A node id is 128 random bits as 32 hex characters, made once and kept in
// the node's data directory. Decoders accept either case and return it in
// lower case, so one node cannot appear under two spellings.
inline constexpr size_t kNodeIdLength = 32;
inline constexpr size_t kMaxHostNameLength = 255;
inline constexpr size_t kMaxBadReplicaReasonLength = 256;

// Validates and lower-cases a node id.
Result<std::string> CanonicalNodeId(std::string_view id);

struct RegisterNodeRequest {
  std::string node_id;
  std::string endpoint;  // connectable tcp://HOST:PORT of the node's ROUTER socket
  std::string host;      // host name, so placement can spread replicas over machines
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t shard_count = 0;

  FieldWriter Encode() const;
  static Result<RegisterNodeRequest> Decode(const FieldReader& fields);
};

struct RegisterNodeReply {
  uint64_t epoch = 0;

  FieldWriter Encode() const;
  static Result<RegisterNodeReply> Decode(const FieldReader& fields);
};

struct HeartbeatRequest {
  std::string node_id;
  uint64_t used = 0;
  uint64_t capacity = 0;
  uint64_t shard_count = 0;

  FieldWriter Encode() const;
  static Result<HeartbeatRequest> Decode(const FieldReader& fields);
};

struct HeartbeatReply {
  uint64_t epoch = 0;
  bool known = false;  // false: register again

  FieldWriter Encode() const;
  static Result<HeartbeatReply> Decode(const FieldReader& fields);
};

// Asks for the cluster map. No fields yet; a struct so fields (say, "only if
// newer than epoch N") can be added without changing call sites.
struct GetClusterMapRequest {
  FieldWriter Encode() const;
  static Result<GetClusterMapRequest> Decode(const FieldReader& fields);
};

// A replica that failed its checksum (found by a node's scrubber or by a
// reader). The registry drops it from the shard table and repairs the shard.
// The reply has no fields.
// Encode() cuts a longer reason to kMaxBadReplicaReasonLength bytes, so
// senders may pass a Status message as it is.
struct ReportBadReplicaRequest {
  std::string node_id;  // the node holding the bad replica
  ShardKey key;
  std::string reason;  // for the log; at most 256 bytes
  FieldWriter Encode() const;
  static Result<ReportBadReplicaRequest> Decode(const FieldReader& r);
};

}  // namespace shardfs
