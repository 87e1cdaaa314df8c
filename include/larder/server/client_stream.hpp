#pragma once
// A client's byte stream: a plain TCP socket, or TLS over one (the TLS
// listener). Not a virtual interface: the session tests isTls() once per read
// or write and the plain path runs exactly as before (readiness wait, then a
// non-blocking read_some; write_some first, async_write for what is left).
// TLS goes through Asio's ssl::stream, asynchronously only: a non-blocking
// synchronous write on it could drop engine output on EAGAIN.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <utility>

namespace larder::server {

class ClientStream {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  using Tls = boost::asio::ssl::stream<Socket>;

  // `tls` null: plain TCP.
  ClientStream(Socket socket, std::shared_ptr<boost::asio::ssl::context> tls)
      : context_(std::move(tls)), plain_(std::move(socket)) {
    if (context_) tls_ = std::make_unique<Tls>(std::move(plain_), *context_);
  }

  bool isTls() const { return tls_ != nullptr; }
  // The TCP socket under either: options, endpoints, shutdown, close.
  Socket& tcp() { return tls_ ? tls_->next_layer() : plain_; }
  Tls& tls() { return *tls_; }
  Socket::executor_type get_executor() { return tcp().get_executor(); }

  template <typename Handler>
  void asyncWrite(boost::asio::const_buffer bytes, Handler&& handler) {
    if (tls_) {
      boost::asio::async_write(*tls_, bytes, std::forward<Handler>(handler));
    } else {
      boost::asio::async_write(plain_, bytes, std::forward<Handler>(handler));
    }
  }

 private:
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives the SSL object
  Socket plain_;                                        // moved into tls_ when TLS
  std::unique_ptr<Tls> tls_;
};

}  // namespace larder::server
