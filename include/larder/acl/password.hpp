#pragma once
// ACL passwords are kept as SHA-256 digests (OpenSSL's libcrypto), as Redis
// keeps them; a password given at AUTH is hashed and compared in constant time.
#include <array>
#include <string>
#include <string_view>

namespace larder::acl {

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view data);
// 64 hex digits (either case) -> digest; false on anything else.
bool parseHexDigest(std::string_view hex, Digest& out);
// 64 lower-case hex digits.
std::string hexDigest(const Digest& digest);
// Constant-time (CRYPTO_memcmp).
bool digestEquals(const Digest& a, const Digest& b);

}  // namespace larder::acl
