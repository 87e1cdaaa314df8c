#include "larder/cluster/merge.hpp"

#include <charconv>
#include <map>

#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace {

bool isError(std::string_view frame) { return !frame.empty() && frame.front() == '-'; }

bool integerOf(std::string_view frame, long long& out) {
  if (frame.size() < 4 || frame.front() != ':') return false;
  const std::string_view digits = frame.substr(1, frame.size() - 3);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  return ec == std::errc() && end == digits.data() + digits.size();
}

std::string unexpected(std::string_view what) {
  return resp::errorReply("ERR Larder: unexpected reply from a cluster node to " +
                          std::string(what));
}

// The bulk's contents, or empty when `frame` is not a bulk.
std::string_view bulkText(std::string_view frame) {
  if (frame.empty() || frame.front() != '$') return {};
  const std::size_t header = frame.find("\r\n");
  if (header == std::string_view::npos || frame.size() < header + 4) return {};
  return frame.substr(header + 2, frame.size() - header - 4);
}

struct DbStats {
  long long keys = 0;
  long long expires = 0;
  long long ttl_weight = 0;  // avg_ttl * expires, summed
};

// "keys=3,expires=1,avg_ttl=500" added into `into`; false when malformed.
bool addDbLine(std::string_view fields, DbStats& into) {
  DbStats line;
  long long avg_ttl = 0;
  while (!fields.empty()) {
    const std::size_t comma = fields.find(',');
    const std::string_view field = fields.substr(0, comma);
    fields = comma == std::string_view::npos ? std::string_view() : fields.substr(comma + 1);
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view name = field.substr(0, eq);
    const std::string_view value = field.substr(eq + 1);
    long long n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size()) return false;
    if (name == "keys") line.keys = n;
    if (name == "expires") line.expires = n;
    if (name == "avg_ttl") avg_ttl = n;
  }
  into.keys += line.keys;
  into.expires += line.expires;
  into.ttl_weight += avg_ttl * line.expires;
  return true;
}

// [begin, end) of the "# Keyspace" section's lines (each with its CRLF) in
// an INFO text; npos when absent. The section ends at a blank line, the next
// header or the end.
std::pair<std::size_t, std::size_t> keyspaceSection(std::string_view text) {
  constexpr std::string_view kHeader = "# Keyspace\r\n";
  std::size_t begin = text.find(kHeader);
  if (begin == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  begin += kHeader.size();
  std::size_t end = begin;
  while (end < text.size()) {
    const std::size_t eol = text.find("\r\n", end);
    if (eol == end || text[end] == '#') break;  // blank line or next section
    end = eol == std::string_view::npos ? text.size() : eol + 2;
  }
  return {begin, end};
}

}  // namespace

bool arrayElements(std::string_view frame, std::vector<std::string_view>& out) {
  out.clear();
  if (frame.size() < 4 || frame.front() != '*') return false;
  const std::size_t header = frame.find("\r\n");
  long long n = 0;
  auto [end, ec] = std::from_chars(frame.data() + 1, frame.data() + header, n);
  if (ec != std::errc() || end != frame.data() + header || n < 0) return false;
  std::size_t pos = header + 2;
  resp::ReplyScanner scanner;
  for (long long i = 0; i < n; ++i) {
    scanner.reset();
    if (scanner.scan(frame.substr(pos)) != resp::ScanStatus::Complete) return false;
    out.push_back(frame.substr(pos, scanner.frameSize()));
    pos += scanner.frameSize();
  }
  return pos == frame.size();
}

std::string mergeInfoText(const std::vector<std::string_view>& texts) {
  if (texts.empty()) return {};
  std::map<long long, DbStats> dbs;  // by db number
  for (std::string_view text : texts) {
    auto [begin, end] = keyspaceSection(text);
    if (begin == std::string_view::npos) continue;
    std::string_view body = text.substr(begin, end - begin);
    while (!body.empty()) {
      const std::size_t eol = body.find("\r\n");
      const std::string_view line = body.substr(0, eol);
      body = eol == std::string_view::npos ? std::string_view() : body.substr(eol + 2);
      long long db = -1;
      const std::size_t colon = line.find(':');
      if (line.substr(0, 2) != "db" || colon == std::string_view::npos) continue;
      auto [e, ec] = std::from_chars(line.data() + 2, line.data() + colon, db);
      if (ec != std::errc() || e != line.data() + colon) continue;
      addDbLine(line.substr(colon + 1), dbs[db]);
    }
  }
  std::string section;
  for (const auto& [db, s] : dbs) {
    section += "db" + std::to_string(db) + ":keys=" + std::to_string(s.keys) +
               ",expires=" + std::to_string(s.expires) +
               ",avg_ttl=" + std::to_string(s.expires ? s.ttl_weight / s.expires : 0) + "\r\n";
  }
  const std::string_view first = texts.front();
  auto [begin, end] = keyspaceSection(first);
  if (begin == std::string_view::npos) return std::string(first);
  return std::string(first.substr(0, begin)) + section + std::string(first.substr(end));
}

std::string mergeReplies(Merge merge, const std::vector<std::string>& replies,
                         const std::vector<std::vector<std::uint32_t>>& positions,
                         std::size_t keys) {
  if (merge == Merge::OneSucceeded) {
    for (const std::string& r : replies) {
      if (!isError(r)) return r;
    }
    return replies.empty() ? unexpected("an empty request") : replies.front();
  }
  for (const std::string& r : replies) {
    if (isError(r)) return r;
  }
  std::string out;
  std::vector<std::string_view> elements;
  switch (merge) {
    case Merge::None:
    case Merge::First:
    case Merge::OneSucceeded:
      return replies.empty() ? unexpected("an empty request") : replies.front();
    case Merge::AllOk:
      for (const std::string& r : replies) {
        if (r != "+OK\r\n") return unexpected("a request sent to several nodes");
      }
      return "+OK\r\n";
    case Merge::Sum: {
      long long sum = 0;
      for (const std::string& r : replies) {
        long long n = 0;
        if (!integerOf(r, n)) return unexpected("a counting request");
        sum += n;
      }
      resp::appendInteger(out, sum);
      return out;
    }
    case Merge::MGet: {
      std::vector<std::string_view> slots(keys);
      for (std::size_t p = 0; p < replies.size(); ++p) {
        if (!arrayElements(replies[p], elements) || p >= positions.size() ||
            elements.size() != positions[p].size()) {
          return unexpected("MGET");
        }
        for (std::size_t i = 0; i < elements.size(); ++i) {
          if (positions[p][i] >= keys) return unexpected("MGET");
          slots[positions[p][i]] = elements[i];
        }
      }
      resp::appendArrayHeader(out, keys);
      for (std::string_view v : slots) {
        if (v.empty()) return unexpected("MGET");
        out.append(v);
      }
      return out;
    }
    case Merge::Concat: {
      std::string body;
      std::size_t n = 0;
      for (const std::string& r : replies) {
        if (!arrayElements(r, elements)) return unexpected("KEYS");
        for (std::string_view e : elements) body.append(e);
        n += elements.size();
      }
      resp::appendArrayHeader(out, n);
      return out + body;
    }
    case Merge::ScriptExists: {
      std::vector<long long> all;
      for (std::size_t p = 0; p < replies.size(); ++p) {
        if (!arrayElements(replies[p], elements)) return unexpected("SCRIPT EXISTS");
        if (p == 0) all.assign(elements.size(), 1);
        if (elements.size() != all.size()) return unexpected("SCRIPT EXISTS");
        for (std::size_t i = 0; i < elements.size(); ++i) {
          long long n = 0;
          if (!integerOf(elements[i], n)) return unexpected("SCRIPT EXISTS");
          all[i] = all[i] && n;
        }
      }
      resp::appendArrayHeader(out, all.size());
      for (long long n : all) resp::appendInteger(out, n);
      return out;
    }
    case Merge::Info: {
      std::vector<std::string_view> texts;
      for (const std::string& r : replies) {
        if (r.empty() || r.front() != '$') return unexpected("INFO");
        texts.push_back(bulkText(r));
      }
      resp::appendBulk(out, mergeInfoText(texts));
      return out;
    }
  }
  return unexpected("a request");
}

}  // namespace larder::cluster
