#pragma once
// A decoded RESP2 reply, for the few places Larder reads a reply's contents
// (script results, stream entries) rather than passing the frame on. Off the
// hot path: it copies.
#include <string>
#include <string_view>
#include <vector>

namespace larder::resp {

struct ReplyValue {
  enum class Type { Status, Error, Integer, Bulk, Nil, Array };
  Type type = Type::Nil;
  std::string text;  // status, error or bulk contents
  long long integer = 0;
  std::vector<ReplyValue> elements;

  bool isArray() const { return type == Type::Array; }
  bool isError() const { return type == Type::Error; }
  const std::string& str() const { return text; }
};

// Decodes one complete frame; false when it is malformed or not RESP2.
bool decodeReply(std::string_view frame, ReplyValue& out);

}  // namespace larder::resp
