// The RESP2 -> RESP3 translator, pub/sub push frames and ReplyForms (see
// resp3.hpp); the table of shapes is in resp3_commands.cpp.
#include "larder/resp/resp3.hpp"

#include <cctype>
#include <charconv>
#include <iterator>

#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::resp {

namespace {

using Kind = Resp3Shape::Kind;

const Resp3Shape kHelloMap{Kind::Map};

// -------------------------------------------------------- the translator

constexpr int kMaxDepth = 64;

// Walks one RESP2 frame and writes its RESP3 form. Any surprise (a map with an
// odd count, a malformed frame) makes it fail; the caller then falls back.
class Translator {
 public:
  Translator(std::string_view in, std::string& out) : in_(in), out_(out) {}

  bool run(const Resp3Shape* shape) { return value(shape, 0) && pos_ == in_.size(); }

 private:
  // Reads the header line at pos_: the type byte, then the number up to CRLF.
  bool header(long long& n, std::size_t& start) {
    start = pos_;
    const auto cr = in_.find("\r\n", pos_);
    if (cr == std::string_view::npos) return false;
    const char* b = in_.data() + pos_ + 1;
    const char* e = in_.data() + cr;
    auto [ptr, ec] = std::from_chars(b, e, n);
    if (ec != std::errc() || ptr != e) return false;
    pos_ = cr + 2;
    return true;
  }

  bool copyLine() {
    const auto cr = in_.find("\r\n", pos_);
    if (cr == std::string_view::npos) return false;
    out_.append(in_.substr(pos_, cr + 2 - pos_));
    pos_ = cr + 2;
    return true;
  }

  // A RESP3 frame inside: copied whole.
  bool copyFrame() {
    ReplyScanner scanner;
    if (scanner.scan(in_.substr(pos_)) != ScanStatus::Complete) return false;
    out_.append(in_.substr(pos_, scanner.frameSize()));
    pos_ += scanner.frameSize();
    return true;
  }

  // The contents of the bulk string at pos_, without consuming it.
  std::string_view peekBulk() const {
    if (pos_ >= in_.size() || in_[pos_] != '$') return {};
    const auto cr = in_.find("\r\n", pos_);
    long long n = 0;
    if (cr == std::string_view::npos) return {};
    auto [ptr, ec] = std::from_chars(in_.data() + pos_ + 1, in_.data() + cr, n);
    if (ec != std::errc() || n < 0 || cr + 2 + static_cast<std::size_t>(n) > in_.size()) return {};
    return in_.substr(cr + 2, static_cast<std::size_t>(n));
  }

  static bool numberText(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      c == '.' || c == '-' || c == '+';
      if (!ok) return false;
    }
    return true;
  }

  bool bulk(Kind kind) {
    long long n = 0;
    std::size_t start = 0;
    if (!header(n, start)) return false;
    if (n < 0) {
      out_.append("_\r\n", 3);
      return true;
    }
    const auto len = static_cast<std::size_t>(n);
    if (in_.size() - pos_ < len + 2 || in_.compare(pos_ + len, 2, "\r\n") != 0) return false;
    const std::string_view data = in_.substr(pos_, len);
    pos_ += len + 2;
    if ((kind == Kind::Double || kind == Kind::Stat) && numberText(data)) {
      out_.push_back(',');
      out_.append(data);
      out_.append("\r\n", 2);
    } else if (kind == Kind::Verbatim) {
      appendNumberLine(out_, '=', n + 4);
      out_.append("txt:", 4);
      out_.append(data);
      out_.append("\r\n", 2);
    } else {
      out_.append(in_.substr(start, pos_ - start));
    }
    return true;
  }

  bool elements(long long n, const Resp3Shape* element, int depth) {
    for (long long i = 0; i < n; ++i) {
      if (!value(element, depth + 1)) return false;
    }
    return true;
  }

  bool map(long long n, const Resp3Shape& shape, int depth) {
    if (n % 2 != 0) return false;
    appendNumberLine(out_, '%', n / 2);
    for (long long i = 0; i < n; i += 2) {
      const Resp3Shape* value_shape = shape.element;
      if (!shape.fields.empty()) {
        const std::string_view key = peekBulk();
        for (const auto& field : shape.fields) {
          if (field.key == key) value_shape = field.shape;
        }
      }
      if (!value(nullptr, depth + 1) || !value(value_shape, depth + 1)) return false;
    }
    return true;
  }

  bool value(const Resp3Shape* shape, int depth) {
    if (pos_ >= in_.size() || depth > kMaxDepth) return false;
    const Kind kind = shape ? shape->kind : Kind::Keep;
    switch (in_[pos_]) {
      case '+':
      case '-':
      case ':':
        return copyLine();
      case '$':
        return bulk(kind);
      case '*':
        break;
      default:
        return copyFrame();
    }
    long long n = 0;
    std::size_t start = 0;
    if (!header(n, start)) return false;
    if (n < 0) {
      out_.append("_\r\n", 3);
      return true;
    }
    if (static_cast<std::size_t>(n) > in_.size() - pos_) return false;  // cannot be
    switch (kind) {
      case Kind::Set:
        appendNumberLine(out_, '~', n);
        return elements(n, shape->element, depth);
      case Kind::SetIfEmpty:
        appendNumberLine(out_, n == 0 ? '~' : '*', n);
        return elements(n, shape->element, depth);
      case Kind::Array:
        appendArrayHeader(out_, static_cast<std::size_t>(n));
        return elements(n, shape->element, depth);
      case Kind::Tuple:
        appendArrayHeader(out_, static_cast<std::size_t>(n));
        for (long long i = 0; i < n; ++i) {
          const auto at = static_cast<std::size_t>(i);
          if (!value(at < shape->items.size() ? shape->items[at] : nullptr, depth + 1))
            return false;
        }
        return true;
      case Kind::Map:
        return map(n, *shape, depth);
      case Kind::Stat:
        return map(n, Resp3Shape{Kind::Map}, depth);
      case Kind::StreamsMap:
        appendNumberLine(out_, '%', n);
        for (long long i = 0; i < n; ++i) {
          if (in_.compare(pos_, 4, "*2\r\n") != 0) return false;
          pos_ += 4;
          if (!value(nullptr, depth + 2) || !value(shape->element, depth + 2)) return false;
        }
        return true;
      case Kind::Pairs:
        if (n % 2 != 0) return false;
        appendArrayHeader(out_, static_cast<std::size_t>(n / 2));
        for (long long i = 0; i < n; i += 2) {
          out_.append("*2\r\n", 4);
          if (!value(nullptr, depth + 2) || !value(shape->element, depth + 2)) return false;
        }
        return true;
      case Kind::Keep:
      case Kind::Double:
      case Kind::Verbatim:
        break;
    }
    appendArrayHeader(out_, static_cast<std::size_t>(n));
    return elements(n, nullptr, depth);
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::string& out_;
};

bool hasNull(std::string_view frame) {
  return frame.find("$-1\r\n") != std::string_view::npos ||
         frame.find("*-1\r\n") != std::string_view::npos;
}

}  // namespace

std::string_view toResp3(std::string_view frame, const Resp3Shape* shape, std::string& scratch) {
  if (frame.empty()) return frame;
  const char type = frame.front();
  if (type != '$' && type != '*') return frame;  // statuses, errors, integers, RESP3
  if (shape == nullptr) {
    // A bulk's contents are data: only the null bulk itself changes.
    if (type == '$') return frame == "$-1\r\n" ? std::string_view("_\r\n") : frame;
    if (!hasNull(frame)) return frame;
  }
  scratch.clear();
  if (Translator(frame, scratch).run(shape)) return scratch;
  scratch.clear();
  if (shape != nullptr && Translator(frame, scratch).run(nullptr)) return scratch;
  return frame;
}

std::string_view pubSubToResp3(std::string_view frame, std::string& scratch) {
  static constexpr std::string_view kPong = "*2\r\n$4\r\npong\r\n";
  if (frame.starts_with(kPong)) {
    // PING while subscribed: RESP3 answers it as outside pub/sub.
    const std::string_view message = frame.substr(kPong.size());
    return message == "$0\r\n\r\n" ? std::string_view("+PONG\r\n") : message;
  }
  if (frame.starts_with("*3\r\n$") || frame.starts_with("*4\r\n$")) {
    static constexpr std::string_view kKinds[] = {"message",      "subscribe",    "unsubscribe",
                                                  "psubscribe",   "punsubscribe", "ssubscribe",
                                                  "sunsubscribe", "smessage"};
    const auto cr = frame.find("\r\n", 5);
    const auto body = cr == std::string_view::npos ? std::string_view() : frame.substr(cr + 2);
    std::string_view kind;
    for (std::string_view k : kKinds) {
      if (body.starts_with(k) && body.substr(k.size()).starts_with("\r\n")) kind = k;
    }
    if (body.starts_with("pmessage\r\n") && frame[1] == '4') kind = "pmessage";
    if (!kind.empty() && (frame[1] == '3') == (kind != "pmessage")) {
      scratch.clear();
      if (Translator(frame, scratch).run(nullptr)) {
        scratch[0] = '>';
        return scratch;
      }
      return frame;
    }
  }
  return toResp3(frame, nullptr, scratch);
}

// ------------------------------------------------------------ ReplyForms

void ReplyForms::set(std::uint64_t tag, Form form) {
  if (!forms_.empty()) {
    const Form& last = forms_.rbegin()->second;
    if (!form.exec && !last.exec && last.resp3 == form.resp3 && last.shape == form.shape) return;
  }
  forms_.insert_or_assign(tag, std::move(form));
}

void ReplyForms::prune(std::uint64_t head_tag) {
  // A form is over once the next one starts at or before the oldest outstanding slot.
  while (forms_.size() >= 2 && std::next(forms_.begin())->first <= head_tag) {
    forms_.erase(forms_.begin());
  }
  if (forms_.size() == 1 && !forms_.begin()->second.resp3 && queued_.empty()) forms_.clear();
}

void ReplyForms::request(const commands::Command* command,
                         const std::vector<std::string_view>& args, bool resp3, bool in_multi,
                         std::uint64_t next_tag, std::uint64_t head_tag) {
  prune(head_tag);
  if (!resp3) {
    queued_.clear();
    if (!forms_.empty()) set(next_tag, Form{});
    return;
  }
  using commands::LocalCommand;
  using commands::Route;
  const LocalCommand local = command ? command->handling.local : LocalCommand::None;
  const Route route = command ? command->handling.route : Route::Forward;
  const Resp3Shape* shape = command ? resp3ShapeOf(command->handling.reply, args) : nullptr;
  Form form;
  form.resp3 = true;
  if (!in_multi) {
    if (route == Route::Transaction) queued_.clear();  // MULTI (and WATCH, harmless)
    form.shape = shape;
  } else if (local == LocalCommand::Exec) {
    form.exec = true;
    form.queued = std::move(queued_);
    queued_.clear();
  } else if (local == LocalCommand::Discard) {
    queued_.clear();
  } else if (route != Route::Transaction && local != LocalCommand::Quit &&
             local != LocalCommand::Reset) {
    queued_.push_back(shape);  // answered +QUEUED now, inside EXEC later
  }
  set(next_tag, std::move(form));
}

void ReplyForms::switched(bool resp3, std::uint64_t next_tag, std::uint64_t head_tag) {
  prune(head_tag);
  queued_.clear();
  if (!resp3 && forms_.empty()) return;
  Form form;
  form.resp3 = resp3;
  form.shape = resp3 ? &kHelloMap : nullptr;  // HELLO's reply
  set(next_tag, std::move(form));
}

std::string_view ReplyForms::translate(std::uint64_t tag, std::string_view frame,
                                       std::uint64_t head_tag) {
  prune(head_tag);
  auto it = forms_.upper_bound(tag);
  if (it == forms_.begin()) return frame;  // asked before any HELLO 3
  const Form& form = std::prev(it)->second;
  if (!form.resp3) return frame;
  if (!form.exec) return toResp3(frame, form.shape, scratch_);
  // EXEC: element i is the reply of the i-th queued command.
  const Resp3Shape shape{.kind = Kind::Tuple, .items = form.queued};
  return toResp3(frame, &shape, scratch_);
}

}  // namespace larder::resp
