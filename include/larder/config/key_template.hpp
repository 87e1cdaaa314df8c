#pragma once
// Keyspace key templates ("user:{id}", "order:{tenant}:{id}") split into literal
// text and placeholders. The loader validates with this; routing code can use
// the same split to match and build keys, so both agree on the syntax.
#include <string>
#include <string_view>
#include <vector>

namespace larder::config {

// "user:{id}:v{ver}" -> literals {"user:", ":v", ""}, placeholders {"id", "ver"}.
// Invariant: literals.size() == placeholders.size() + 1; every literal between
// two placeholders is non-empty.
struct KeyTemplate {
  std::vector<std::string> literals;
  std::vector<std::string> placeholders;  // primary-key columns, in order

  // Text before the first placeholder; templates whose prefixes are
  // prefix-related are treated as overlapping.
  const std::string& prefix() const { return literals.front(); }
};

// Returns false and sets `error` to a human reason when `text` is not a valid
// template: no placeholder, unbalanced braces, a placeholder that is not an
// identifier, adjacent placeholders ("{a}{b}"), or a repeated placeholder.
bool parseKeyTemplate(std::string_view text, KeyTemplate& out, std::string& error);

// [A-Za-z_][A-Za-z0-9_]*
bool isIdentifier(std::string_view text);

}  // namespace larder::config
