#include "larder/redis/tls_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace larder::redis {

namespace ssl = boost::asio::ssl;

namespace {

constexpr const char* kPrefix = "redis.tls.";

[[noreturn]] void fail(const char* key, const std::string& file, const std::string& why) {
  failTlsFile(kPrefix, key, file, why);
}

std::string reason(const boost::system::error_code& ec) { return tlsErrorText(ec); }

void checkReadable(const char* key, const std::string& file) { checkTlsFile(kPrefix, key, file); }

}  // namespace

std::string tlsErrorText(const boost::system::error_code& ec) {
  const unsigned long code = ERR_peek_last_error();
  std::string out = ec.message();
  if (code != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    out = text;
  }
  ERR_clear_error();
  return out;
}

void failTlsFile(const std::string& prefix, const char* key, const std::string& file,
                 const std::string& why) {
  throw std::runtime_error(prefix + key + ": cannot load '" + file + "': " + why);
}

void loadCertificateAndKey(ssl::context& context, const std::string& prefix,
                           const std::string& cert_file, const std::string& key_file) {
  boost::system::error_code ec;
  checkTlsFile(prefix, "cert_file", cert_file);
  context.use_certificate_chain_file(cert_file, ec);
  if (ec) failTlsFile(prefix, "cert_file", cert_file, tlsErrorText(ec));
  checkTlsFile(prefix, "key_file", key_file);
  context.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) failTlsFile(prefix, "key_file", key_file, tlsErrorText(ec));
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    failTlsFile(prefix, "key_file", key_file, "does not match the certificate in " + cert_file);
  }
}

void checkTlsFile(const std::string& prefix, const char* key, const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) failTlsFile(prefix, key, file, std::strerror(errno));
  std::fclose(f);
}

std::shared_ptr<ssl::context> makeClientTlsContext(const config::RedisTlsConfig& tls) {
  if (!tls.enabled) return nullptr;
  ERR_clear_error();
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  boost::system::error_code ec;
  if (tls.ca_file.empty()) {
    context->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("redis.tls: cannot load the system's CAs: " + reason(ec));
  } else {
    checkReadable("ca_file", tls.ca_file);
    context->load_verify_file(tls.ca_file, ec);
    if (ec) fail("ca_file", tls.ca_file, reason(ec));
  }
  if (!tls.cert_file.empty()) {
    loadCertificateAndKey(*context, kPrefix, tls.cert_file, tls.key_file);
  }
  context->set_verify_mode(ssl::verify_peer);
  return context;
}

std::string tlsServerName(const config::RedisConfig& redis) {
  return redis.tls.server_name.empty() ? redis.address.host : redis.tls.server_name;
}

}  // namespace larder::redis
