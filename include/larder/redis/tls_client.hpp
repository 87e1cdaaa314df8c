#pragma once
// The OpenSSL context for Larder's own TLS connections to Redis
// (config::RedisTlsConfig), built once at start-up and shared by every
// BackendConnection; each connection verifies the server's certificate
// against it and the expected name (tlsServerName).
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

// The name sent as SNI and checked against the certificate (DNS or IP SAN).
std::string tlsServerName(const config::RedisConfig& redis);

}  // namespace larder::redis
