#include "larder/config/key_template.hpp"

#include <algorithm>

namespace larder::config {

bool isIdentifier(std::string_view text) {
  if (text.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(text[0])) return false;
  return std::all_of(text.begin() + 1, text.end(), [&](char c) { return alpha(c) || digit(c); });
}

bool parseKeyTemplate(std::string_view text, KeyTemplate& out, std::string& error) {
  KeyTemplate result;
  std::string literal;
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '}') {
      error = "unmatched '}' in key template";
      return false;
    }
    if (c != '{') {
      literal += c;
      ++i;
      continue;
    }
    std::size_t close = text.find_first_of("{}", i + 1);
    if (close == std::string_view::npos || text[close] == '{') {
      error = "unmatched '{' in key template";
      return false;
    }
    std::string name(text.substr(i + 1, close - i - 1));
    if (name.empty()) {
      error = "empty placeholder {} in key template";
      return false;
    }
    if (!isIdentifier(name)) {
      error = "placeholder {" + name + "} is not an identifier";
      return false;
    }
    // "{a}{b}" cannot be split back into a and b unambiguously.
    if (!result.placeholders.empty() && literal.empty()) {
      error = "placeholders {" + result.placeholders.back() + "} and {" + name +
              "} are adjacent; separate them with literal text";
      return false;
    }
    if (std::find(result.placeholders.begin(), result.placeholders.end(), name) !=
        result.placeholders.end()) {
      error = "placeholder {" + name + "} appears more than once";
      return false;
    }
    result.literals.push_back(std::move(literal));
    literal.clear();
    result.placeholders.push_back(std::move(name));
    i = close + 1;
  }
  if (result.placeholders.empty()) {
    error = "key template needs at least one {placeholder}, e.g. user:{id}";
    return false;
  }
  result.literals.push_back(std::move(literal));
  out = std::move(result);
  return true;
}

}  // namespace larder::config
