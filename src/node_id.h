// A node server's stable identity, kept in its data directory.
//
// The id is made once (128 random bits, 32 hex digits) and stored in
// DIR/node.id, so a node keeps its identity across restarts and address
// changes and the registry can tell a returning node from a new one.
#pragma once

#include <string>

#include "src/status.h"

namespace shardfs {

// Reads DIR/node.id, creating it durably on first use.
Result<std::string> LoadOrCreateNodeId(const std::string& data_dir);

// True for 32 lowercase hex digits.
bool IsValidNodeId(std::string_view id);

}  // namespace shardfs
