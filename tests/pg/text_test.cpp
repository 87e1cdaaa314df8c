// The parts of the client that need no server: quoting, array literals and
// which errors are worth a retry.
#include <catch2/catch.hpp>

#include "larder/pg/connection.hpp"

namespace larder::pg {
namespace {

TEST_CASE("quoteIdentifier wraps in double quotes and doubles embedded ones", "[pg][text]") {
  CHECK(quoteIdentifier("users") == "\"users\"");
  CHECK(quoteIdentifier("My Table") == "\"My Table\"");
  CHECK(quoteIdentifier("a\"b") == "\"a\"\"b\"");
  CHECK(quoteIdentifier("\"") == "\"\"\"\"");
  CHECK(quoteIdentifier("") == "\"\"");
  CHECK(quoteIdentifier("x.y") == "\"x.y\"");
}

TEST_CASE("arrayLiteral quotes and escapes every element", "[pg][text]") {
  CHECK(arrayLiteral({}) == "{}");
  CHECK(arrayLiteral({"1", "2"}) == "{\"1\",\"2\"}");
  CHECK(arrayLiteral({std::nullopt}) == "{NULL}");
  CHECK(arrayLiteral({"NULL", std::nullopt, ""}) == "{\"NULL\",NULL,\"\"}");
  CHECK(arrayLiteral({"a\"b", "c\\d", "e,f", "{g}"}) == "{\"a\\\"b\",\"c\\\\d\",\"e,f\",\"{g}\"}");
}

TEST_CASE("retryable covers connection loss and transient server states", "[pg][text]") {
  auto retryable = [](const char* state) { return PgError{state, "boom"}.retryable(); };
  CHECK(retryable(""));
  CHECK(retryable("08006"));
  CHECK(retryable("08003"));
  CHECK(retryable("08001"));
  CHECK(retryable("40001"));
  CHECK(retryable("40P01"));
  CHECK(retryable("53300"));
  CHECK(retryable("55P03"));
  CHECK(retryable("57P01"));
  CHECK(retryable("57P02"));
  CHECK(retryable("57P03"));
  CHECK_FALSE(retryable("57014"));  // statement timeout: would time out again
  CHECK_FALSE(retryable("23505"));
  CHECK_FALSE(retryable("22012"));
  CHECK_FALSE(retryable("42P01"));
  CHECK_FALSE(retryable("40002"));
  CHECK_FALSE(PgError{}.retryable());  // no error at all
  CHECK_FALSE(PgError{"", ""}.retryable());
}

}  // namespace
}  // namespace larder::pg
