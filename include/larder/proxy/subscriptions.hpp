#pragma once
// How many channels, patterns and shard channels a subscribed client holds,
// read off the confirmations Redis streams back: each (un)subscribe
// confirmation carries the client's count after it, channels and patterns
// together (shard channels apart), so the last confirmation of each kind
// gives the current numbers. For CLIENT LIST's sub/psub/ssub and to know,
// for a RESP3 client, when its subscriptions are over. Pure.
#include <string_view>

namespace larder::proxy {

struct SubscriptionCounts {
  long long channels = 0;
  long long patterns = 0;
  long long shard = 0;

  bool any() const { return channels > 0 || patterns > 0 || shard > 0; }
  // Takes in one frame of a subscribed connection, RESP2 array or RESP3
  // push; false when it is not a confirmation (a message, a reply).
  bool observe(std::string_view frame);
};

}  // namespace larder::proxy
