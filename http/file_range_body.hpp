// A Beast body type whose value is a FileRange (server.hpp): the serializer reads the range with
// pread, 64 KiB at a time, so a large file never sits in memory. Internal to http/server.cpp.
#pragma once

#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

#include "http/server.hpp"

namespace edgefleet::http {

struct FileRangeBody {
  using value_type = std::shared_ptr<const FileRange>;

  static std::uint64_t size(const value_type& body) { return body ? body->length() : 0; }

  class writer {
   public:
    using const_buffers_type = boost::asio::const_buffer;

    template <bool isRequest, class Fields>
    writer(const boost::beast::http::header<isRequest, Fields>&, const value_type& body)
        : body_(body) {}

    void init(boost::beast::error_code& ec) { ec = {}; }

    boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
      ec = {};
      const std::uint64_t length = body_ ? body_->length() : 0;
      if (sent_ >= length) return boost::none;
      if (!buffer_) buffer_ = std::make_unique<char[]>(kChunk);
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length - sent_, kChunk));
      const ssize_t n =
          ::pread(body_->fd(), buffer_.get(), want, static_cast<off_t>(body_->offset() + sent_));
      if (n <= 0) {  // a read error, or the file shrank under us: end the connection
        ec = boost::beast::errc::make_error_code(boost::beast::errc::io_error);
        return boost::none;
      }
      sent_ += static_cast<std::uint64_t>(n);
      return std::make_pair(const_buffers_type(buffer_.get(), static_cast<std::size_t>(n)),
                            sent_ < length);
    }

   private:
    static constexpr std::size_t kChunk = 64u << 10;
    value_type body_;
    std::unique_ptr<char[]> buffer_;
    std::uint64_t sent_ = 0;
  };
};

}  // namespace edgefleet::http
