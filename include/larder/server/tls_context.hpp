#pragma once
// The TLS listener's OpenSSL context, built from config::TlsListenerConfig at
// start-up and again on every reload (so rotated certificate files are picked
// up by new connections; established ones keep the context they began with).
#include <memory>

#include "larder/config/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace larder::server {

// Throws std::runtime_error naming the key, the file and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> makeServerTlsContext(
    const config::TlsListenerConfig& tls);

}  // namespace larder::server
