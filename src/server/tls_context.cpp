#include "larder/server/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "larder/redis/tls_client.hpp"

namespace larder::server {

namespace ssl = boost::asio::ssl;

namespace {

constexpr const char* kPrefix = "tls.";

std::string reason(const boost::system::error_code& ec) { return redis::tlsErrorText(ec); }

[[noreturn]] void fail(const char* key, const std::string& file, const std::string& why) {
  redis::failTlsFile(kPrefix, key, file, why);
}

void checkReadable(const char* key, const std::string& file) {
  redis::checkTlsFile(kPrefix, key, file);
}

}  // namespace

std::shared_ptr<ssl::context> makeServerTlsContext(const config::TlsListenerConfig& tls) {
  ERR_clear_error();
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use);
  SSL_CTX* native = context->native_handle();
  const int min_version =
      tls.min_version == config::TlsVersion::Tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(native, min_version);
  // Clients verified by certificate may resume sessions only in this context.
  static const unsigned char kSessionContext[] = "larder";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);

  redis::loadCertificateAndKey(*context, kPrefix, tls.cert_file, tls.key_file);
  boost::system::error_code ec;
  if (!tls.ca_file.empty()) {
    checkReadable("ca_file", tls.ca_file);
    context->load_verify_file(tls.ca_file, ec);
    if (ec) fail("ca_file", tls.ca_file, reason(ec));
  }
  switch (tls.verify_clients) {
    case config::TlsVerifyClients::None:
      context->set_verify_mode(ssl::verify_none);
      break;
    case config::TlsVerifyClients::Optional:
      context->set_verify_mode(ssl::verify_peer);
      break;
    case config::TlsVerifyClients::Required:
      context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      break;
  }
  return context;
}

}  // namespace larder::server
