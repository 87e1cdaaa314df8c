// Result, PgError and the SQL text helpers: the parts of the client that do
// no I/O.
#include <libpq-fe.h>

#include <cstdlib>

#include "larder/pg/connection.hpp"

namespace larder::pg {

bool PgError::retryable() const {
  if (message.empty()) return false;
  // No SQLSTATE: libpq itself failed (socket closed, timeout) — the server
  // never judged the statement, so another connection may well succeed.
  if (sqlstate.empty()) return true;
  if (sqlstate.size() != 5) return false;
  const std::string_view cls = std::string_view(sqlstate).substr(0, 2);
  if (cls == "08" || cls == "53") return true;  // connection exception, insufficient resources
  // 57014 (query_canceled) is deliberately absent: it is what statement_timeout
  // raises, and the same statement would most likely time out again.
  return sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03" || sqlstate == "57P01" ||
         sqlstate == "57P02" || sqlstate == "57P03";
}

Result::Result(pg_result* r) : result_(r) {}

void Result::Deleter::operator()(pg_result* r) const { PQclear(r); }

int Result::rows() const { return result_ ? PQntuples(result_.get()) : 0; }

int Result::columns() const { return result_ ? PQnfields(result_.get()) : 0; }

bool Result::isNull(int row, int column) const {
  return !result_ || PQgetisnull(result_.get(), row, column) != 0;
}

std::string_view Result::value(int row, int column) const {
  if (!result_) return {};
  // PQgetlength rather than strlen: cheaper, and exact for every text value.
  return {PQgetvalue(result_.get(), row, column),
          static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
}

std::string_view Result::columnName(int column) const {
  if (!result_) return {};
  const char* name = PQfname(result_.get(), column);
  return name ? std::string_view(name) : std::string_view();
}

long long Result::affected() const {
  if (!result_) return 0;
  const char* text = PQcmdTuples(result_.get());  // "" when the command reports no count
  return (text && *text) ? std::strtoll(text, nullptr, 10) : 0;
}

std::string quoteIdentifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string arrayLiteral(const std::vector<std::optional<std::string_view>>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (!items[i]) {
      out += "NULL";
      continue;
    }
    // Every element is quoted, so "NULL", "" and blanks stay text values.
    out += '"';
    for (char c : *items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace larder::pg
