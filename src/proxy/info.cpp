#include "larder/proxy/info.hpp"

#include <algorithm>
#include <cctype>

namespace larder::proxy {

namespace {

bool sameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void appendSection(std::string& out, const InfoSection& s) {
  if (!out.empty()) out += "\r\n";
  out += "# " + s.name + "\r\n";
  for (const auto& [k, v] : s.fields) out += k + ":" + v + "\r\n";
}

}  // namespace

std::string composeInfo(std::string_view backend, const std::vector<InfoSection>& overlays) {
  std::vector<bool> used(overlays.size(), false);
  std::string out;
  const InfoSection* overlay = nullptr;
  std::vector<bool> written;  // fields of `overlay` already laid over a backend line

  auto closeSection = [&] {
    if (!overlay) return;
    for (std::size_t i = 0; i < overlay->fields.size(); ++i) {
      if (!written[i]) out += overlay->fields[i].first + ":" + overlay->fields[i].second + "\r\n";
    }
    overlay = nullptr;
  };

  std::size_t pos = 0;
  while (pos < backend.size()) {
    std::size_t end = backend.find('\n', pos);
    if (end == std::string_view::npos) end = backend.size();
    std::string_view line = backend.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.substr(0, 2) == "# ") {
      closeSection();
      if (!out.empty()) out += "\r\n";
      out.append(line);
      out += "\r\n";
      const std::string_view name = line.substr(2);
      for (std::size_t i = 0; i < overlays.size(); ++i) {
        if (!used[i] && sameName(overlays[i].name, name)) {
          used[i] = true;
          overlay = &overlays[i];
          written.assign(overlay->fields.size(), false);
          break;
        }
      }
      continue;
    }
    if (line.empty()) continue;  // the blank line between sections is rewritten above
    const std::size_t colon = line.find(':');
    if (overlay && colon != std::string_view::npos) {
      const std::string_view key = line.substr(0, colon);
      bool replaced = false;
      for (std::size_t i = 0; i < overlay->fields.size(); ++i) {
        if (overlay->fields[i].first == key) {
          out.append(key);
          out += ":" + overlay->fields[i].second + "\r\n";
          written[i] = true;
          replaced = true;
          break;
        }
      }
      if (replaced) continue;
    }
    out.append(line);
    out += "\r\n";
  }
  closeSection();
  for (std::size_t i = 0; i < overlays.size(); ++i) {
    if (!used[i]) appendSection(out, overlays[i]);
  }
  return out;
}

std::vector<std::string> infoSectionsAsked(const std::vector<std::string_view>& args) {
  std::vector<std::string> out;
  for (std::string_view a : args) {
    std::string s(a);
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(std::move(s));
  }
  if (out.empty()) out.push_back("default");
  return out;
}

}  // namespace larder::proxy
