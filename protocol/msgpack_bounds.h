// What MessagePack input may make the parser allocate.
//
// msgpack-c allocates a container's element array as soon as it reads the
// container's header, from the count the header claims, before any element
// is there; unpack_limit bounds each container alone. So a few bytes of
// hostile input that nest sixteen arrays, each claiming a million elements,
// made the parser allocate 16 x 1M x 24 bytes (384 MiB) before failing on the
// missing elements. Every element of a real document takes at least one
// byte, so all the counts a document claims add up to at most its size:
// CheckClaimedSizes() walks the object without building it (no allocation)
// and refuses one that claims more, or nests deeper than allowed. After it,
// unpacking the object allocates at most a constant times its size.
//
// Used by every decoder of bytes from outside the process: wire headers,
// metadata log records, snapshots.
#pragma once

#include <cstddef>
#include <string_view>

#include "src/status.h"

namespace shardfs {

// Checks the one MessagePack object at `bytes[offset...]`: kBadMessage if its
// containers claim more elements (a map's pairs count twice) than there are
// bytes from `offset` to the end, if they nest deeper than `max_depth`, or
// if the object is malformed or cut short.
Status CheckClaimedSizes(std::string_view bytes, size_t offset, size_t max_depth);

}  // namespace shardfs
