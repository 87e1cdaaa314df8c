#include "larder/resp/reply_value.hpp"

#include <charconv>

namespace larder::resp {

namespace {

constexpr int kMaxDepth = 32;

bool readLine(std::string_view& in, std::string_view& line) {
  const auto end = in.find("\r\n");
  if (end == std::string_view::npos) return false;
  line = in.substr(0, end);
  in.remove_prefix(end + 2);
  return true;
}

bool toInteger(std::string_view text, long long& n) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool decode(std::string_view& in, ReplyValue& out, int depth) {
  if (depth > kMaxDepth || in.empty()) return false;
  const char type = in.front();
  in.remove_prefix(1);
  std::string_view line;
  if (!readLine(in, line)) return false;
  switch (type) {
    case '+':
      out.type = ReplyValue::Type::Status;
      out.text = line;
      return true;
    case '-':
      out.type = ReplyValue::Type::Error;
      out.text = line;
      return true;
    case ':':
      out.type = ReplyValue::Type::Integer;
      return toInteger(line, out.integer);
    case '$': {
      long long n = 0;
      if (!toInteger(line, n)) return false;
      if (n < 0) {
        out.type = ReplyValue::Type::Nil;
        return true;
      }
      if (in.size() < static_cast<std::size_t>(n) + 2) return false;
      if (in.substr(static_cast<std::size_t>(n), 2) != "\r\n") return false;
      out.type = ReplyValue::Type::Bulk;
      out.text = in.substr(0, static_cast<std::size_t>(n));
      in.remove_prefix(static_cast<std::size_t>(n) + 2);
      return true;
    }
    case '*': {
      long long n = 0;
      if (!toInteger(line, n)) return false;
      if (n < 0) {
        out.type = ReplyValue::Type::Nil;
        return true;
      }
      if (static_cast<std::size_t>(n) > in.size() / 3) return false;  // each takes >= 3 bytes
      out.type = ReplyValue::Type::Array;
      out.elements.resize(static_cast<std::size_t>(n));
      for (auto& element : out.elements) {
        if (!decode(in, element, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

bool decodeReply(std::string_view frame, ReplyValue& out) {
  out = ReplyValue{};
  return decode(frame, out, 0) && frame.empty();
}

}  // namespace larder::resp
