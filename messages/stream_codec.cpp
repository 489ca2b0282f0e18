#include "messages/stream_codec.hpp"

#include <zstd.h>

#include "messages/error.hpp"
#include "messages/varint.hpp"

namespace fleetd {

caf::expected<size_t> frame_end(std::string_view buf, size_t max_payload,
                                size_t& payload_at, uint64_t* payload_bytes) {
  size_t pos = 0;
  uint64_t len = 0;
  if (!get_varint(buf, pos, len)) {
    // Incomplete unless it is already longer than any varint.
    if (buf.size() >= max_frame_prefix)
      return make_error(ec::decode_failed, "bad frame length");
    return size_t{0};
  }
  if (len > max_payload)
    return make_error(ec::too_large, "frame of " + std::to_string(len)
                                       + " bytes exceeds the limit of "
                                       + std::to_string(max_payload));
  payload_at = pos;
  if (payload_bytes != nullptr)
    *payload_bytes = len;
  if (buf.size() - pos < len)
    return size_t{0};
  return pos + static_cast<size_t>(len);
}

stream_compressor::stream_compressor(int level) : ctx_(ZSTD_createCCtx()) {
  if (ctx_ == nullptr)
    return;
  // Tables no bigger than the window: ~0.3 MiB instead of ~1 MiB at level 3.
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_windowLog, stream_window_log);
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_hashLog, stream_window_log);
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_chainLog, stream_window_log);
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_checksumFlag, 0);
}

stream_compressor::~stream_compressor() {
  ZSTD_freeCCtx(ctx_);
}

caf::expected<std::string> stream_compressor::frame(std::string_view plain) {
  if (ctx_ == nullptr)
    return make_error(ec::io_error, "no zstd context");
  std::string body(ZSTD_compressBound(plain.size()) + 32, '\0');
  ZSTD_inBuffer in{plain.data(), plain.size(), 0};
  ZSTD_outBuffer out{body.data(), body.size(), 0};
  size_t left = 1;
  while (left != 0) {
    left = ZSTD_compressStream2(ctx_, &out, &in, ZSTD_e_flush);
    if (ZSTD_isError(left))
      return make_error(ec::io_error, std::string("zstd: ")
                                        + ZSTD_getErrorName(left));
    if (left != 0) {
      body.resize(body.size() * 2);
      out.dst = body.data();
      out.size = body.size();
    }
  }
  body.resize(out.pos);
  std::string framed;
  framed.reserve(body.size() + max_frame_prefix);
  put_varint(framed, body.size());
  framed += body;
  return framed;
}

stream_decompressor::stream_decompressor() : ctx_(ZSTD_createDCtx()) {
  if (ctx_ != nullptr)
    ZSTD_DCtx_setParameter(ctx_, ZSTD_d_windowLogMax, stream_window_log);
}

stream_decompressor::~stream_decompressor() {
  ZSTD_freeDCtx(ctx_);
}

caf::expected<std::string>
stream_decompressor::decode(std::string_view payload, size_t max_plain) {
  if (ctx_ == nullptr)
    return make_error(ec::decode_failed, "no zstd context");
  std::string plain;
  std::string chunk(16 * 1024, '\0');
  ZSTD_inBuffer in{payload.data(), payload.size(), 0};
  // Until the input is used and the last call left room in its output: a
  // flushed part then gives all it holds.
  for (;;) {
    ZSTD_outBuffer out{chunk.data(), chunk.size(), 0};
    auto ret = ZSTD_decompressStream(ctx_, &out, &in);
    if (ZSTD_isError(ret))
      return make_error(ec::decode_failed, std::string("corrupt stream: ")
                                             + ZSTD_getErrorName(ret));
    if (out.pos > max_plain - plain.size())
      return make_error(ec::too_large, "stream frame decompresses to more "
                                       "than "
                                         + std::to_string(max_plain)
                                         + " bytes");
    plain.append(chunk.data(), out.pos);
    if (in.pos == in.size && out.pos < out.size)
      break;
  }
  if (plain.empty())
    return make_error(ec::decode_failed, "stream frame without content");
  return plain;
}

namespace {

void put_text(std::string& out, const std::string& s) {
  put_varint(out, s.size());
  out += s;
}

bool get_text(std::string_view in, size_t& pos, std::string& s) {
  uint64_t n = 0;
  if (!get_varint(in, pos, n) || n > in.size() - pos)
    return false;
  s.assign(in.substr(pos, static_cast<size_t>(n)));
  pos += static_cast<size_t>(n);
  return true;
}

} // namespace

std::string encode_answer_frame(const http_reply& rep,
                                const std::string& retry_after) {
  std::string payload;
  put_varint(payload, rep.status);
  put_text(payload, rep.content_type);
  put_text(payload, rep.error);
  put_text(payload, retry_after);
  put_text(payload, rep.body);
  std::string framed;
  put_varint(framed, payload.size());
  return framed + payload;
}

caf::expected<answer_frame> decode_answer_frame(std::string_view payload) {
  answer_frame out;
  size_t pos = 0;
  uint64_t status = 0;
  if (!get_varint(payload, pos, status) || status < 100 || status > 599
      || !get_text(payload, pos, out.content_type)
      || !get_text(payload, pos, out.error)
      || !get_text(payload, pos, out.retry_after)
      || !get_text(payload, pos, out.body) || pos != payload.size())
    return make_error(ec::decode_failed, "bad answer frame");
  out.status = static_cast<uint16_t>(status);
  return out;
}

} // namespace fleetd
