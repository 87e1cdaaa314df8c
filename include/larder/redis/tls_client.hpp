#pragma once
// The OpenSSL context for Larder's own TLS connections to Redis
// (config::RedisTlsConfig), built once at start-up and shared by every
// BackendConnection; each connection verifies the server's certificate
// against it and the expected name (tlsServerName).
#include <boost/system/error_code.hpp>
#include <memory>
#include <string>

#include "larder/config/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace larder::redis {

// nullptr when redis.tls.enabled is false. Throws std::runtime_error naming the
// key, the file and OpenSSL's reason (start-up).
std::shared_ptr<boost::asio::ssl::context> makeClientTlsContext(const config::RedisTlsConfig& tls);

// Shared with the server's TLS context (start-up and reload only).
// OpenSSL's own words for its last error ("PEM routines::no start line"),
// else the error code's message; clears OpenSSL's error queue.
std::string tlsErrorText(const boost::system::error_code& ec);
// Throws std::runtime_error "<prefix><key>: cannot load '<file>': <why>".
[[noreturn]] void failTlsFile(const std::string& prefix, const char* key, const std::string& file,
                              const std::string& why);
// A missing or unreadable file fails with the system's reason, clearer than
// OpenSSL's.
void checkTlsFile(const std::string& prefix, const char* key, const std::string& file);
// Loads a certificate chain and its private key into `context` and checks that
// they match; failures name <prefix>cert_file or <prefix>key_file.
void loadCertificateAndKey(boost::asio::ssl::context& context, const std::string& prefix,
                           const std::string& cert_file, const std::string& key_file);

// The name sent as SNI and checked against the certificate (DNS or IP SAN).
std::string tlsServerName(const config::RedisConfig& redis);

}  // namespace larder::redis
