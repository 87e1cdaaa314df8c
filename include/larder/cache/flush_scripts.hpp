#pragma once
// The Lua scripts the Flusher runs in Redis (each atomic there):
//
//   claim   the Redis instance id (__larder:id), set once
//   read    after the lock is held, and after the batch's own XRANGE from
//           the cursor (exclusive; a native command, no Lua copy of the
//           entries): the queue's length, oldest and newest entry, its last
//           generated id (below what PostgreSQL applied: Redis went back in
//           time), Redis' time and the instance id
//   ack     after COMMIT: linger each marker whose last write is flushed,
//           drop the markers and cached values of replayed keys, and XTRIM
//           the queue by id (everything below the batch's end is done)
//   dead    move refused rows to the dead-letter stream
//   resync  Redis is behind PostgreSQL: make sure new entries get ids above
//           what PostgreSQL has applied
//   sweep   a cluster: which of a chunk of slots' queues have entries, on the
//           node that owns them (flusher_slots.cpp)
//   read and ack for each of a node's slots: on a cluster, one call per node
//           and round instead of one per slot (allow-cross-slot-keys); a
//           slot the node does not serve answers an error of its own
#include <string>
#include <string_view>

#include "larder/redis/script.hpp"

namespace larder::cache {

const redis::Script& claimIdScript();
const redis::Script& readBatchScript();
const redis::Script& readSlotsScript();
const redis::Script& ackScript();
const redis::Script& ackSlotsScript();
const redis::Script& deadLetterScript();
const redis::Script& resyncScript();
const redis::Script& dropMarkerScript();
const redis::Script& sweepScript();

}  // namespace larder::cache
