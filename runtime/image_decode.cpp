// PNG and JPEG decoding through libpng and libjpeg-turbo (see runtime/image_decode.hpp).
//
// Both libraries report errors by longjmp out of a callback, and longjmp skips C++ destructors.
// So every library call that can fail runs inside a small "...Step" function whose frame holds
// nothing with a destructor: it calls setjmp, makes the library calls, and returns a plain
// status. Library handles are owned by guard objects in the callers' frames, which never call
// setjmp; error text is copied into a fixed char array inside a plain struct.
//
// The library calls mirror OpenCV 4.6's PngDecoder and JpegDecoder for IMREAD_UNCHANGED (same
// transforms, same output colour space, same CMYK formula), which is what makes the pixels
// equal to cv::imdecode's; image_decode_test.cpp checks that on every kind of image.
#include "runtime/image_decode.hpp"

#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including their headers

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include <bit>
#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#if !defined(JCS_EXTENSIONS)
#error "libjpeg-turbo's JCS_EXT_BGR is needed (Debian: libjpeg62-turbo-dev)"
#endif

namespace edgefleet::runtime {
namespace {

// ---- Header checks before any decoder runs (attacker-chosen dimensions) ----

struct Dims {
  std::uint64_t width = 0;
  std::uint64_t height = 0;
};

std::uint32_t BigEndian32(const unsigned char* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
std::uint32_t BigEndian16(const unsigned char* p) { return std::uint32_t{p[0]} << 8 | p[1]; }

bool IsPng(std::string_view b) { return b.size() >= 8 && b.substr(0, 8) == "\x89PNG\r\n\x1a\n"; }
bool IsJpeg(std::string_view b) { return b.size() >= 3 && b.substr(0, 3) == "\xff\xd8\xff"; }

// PNG: the first chunk must be IHDR (PNG spec 5.6), width and height at bytes 16..23.
std::optional<Dims> PngDims(std::string_view b) {
  if (b.size() < 24 || b.substr(12, 4) != "IHDR") return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  return Dims{BigEndian32(p + 16), BigEndian32(p + 20)};
}

// JPEG: walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT 0xC4,
// JPG 0xC8 and DAC 0xCC), whose payload holds precision, height and width.
std::optional<Dims> JpegDims(std::string_view b) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  std::size_t i = 2;
  while (i + 4 <= b.size()) {
    if (p[i] != 0xFF) return std::nullopt;
    const unsigned marker = p[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // no length field
      i += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return std::nullopt;  // end or scan before a frame
    const std::size_t length = BigEndian16(p + i + 2);
    const bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (length < 7 || i + 9 > b.size()) return std::nullopt;
      return Dims{BigEndian16(p + i + 7), BigEndian16(p + i + 5)};
    }
    if (length < 2) return std::nullopt;
    i += 2 + length;
  }
  return std::nullopt;
}

std::string DimsText(std::uint64_t width, std::uint64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

Status CheckPixels(std::uint64_t width, std::uint64_t height, std::size_t max_pixels,
                   std::string_view when) {
  // Divides instead of multiplying: header dimensions are attacker-chosen.
  if (width == 0 || height == 0) {
    return Fail(ErrorCode::kInvalidArgument, "image is " + DimsText(width, height) + " pixels");
  }
  if (width > max_pixels / height) {
    return Fail(ErrorCode::kInvalidArgument,
                "image is " + DimsText(width, height) + " pixels, over the limit of " +
                    std::to_string(max_pixels) + " (" + std::string(when) + ")");
  }
  return Ok();
}

Error Corrupt(std::string_view format, const char* reason) {
  return {ErrorCode::kInvalidArgument, "not a decodable image (" + std::string(format) +
                                           " data is corrupt or truncated: " + reason + ")"};
}

Error LayoutMismatch(std::string_view format) {
  return {ErrorCode::kInternal,
          std::string(format) + " decoder produced rows of an unexpected size (bug)"};
}

// Pixel memory for width x height x channels x bytes; the product fits: max_pixels is a size_t
// and a pixel is at most 8 bytes, checked against overflow anyway.
Result<std::vector<std::uint8_t>> AllocatePixels(std::size_t row_bytes, std::size_t height) {
  if (row_bytes != 0 && height > SIZE_MAX / row_bytes) {
    return Fail(ErrorCode::kLimit, "image of " + std::to_string(height) + " rows of " +
                                       std::to_string(row_bytes) + " bytes is too large");
  }
  try {
    return std::vector<std::uint8_t>(row_bytes * height);
  } catch (const std::bad_alloc&) {
    return Fail(ErrorCode::kLimit, "out of memory for the " + std::to_string(row_bytes * height) +
                                       " bytes of decoded pixels");
  }
}

enum class Step { kOk, kFailed, kLayout };

constexpr std::size_t kMessageSize = 200;  // JMSG_LENGTH_MAX; libpng's messages are shorter

// ---- PNG (libpng 1.6) ----

// What libpng's callbacks share with the steps. Plain data: it must survive a longjmp.
struct PngInput {
  const unsigned char* data;
  std::size_t size;
  std::size_t pos;
  char message[kMessageSize];
};

void PngRead(png_structp png, png_bytep out, std::size_t length) {
  auto* in = static_cast<PngInput*>(png_get_io_ptr(png));
  if (length > in->size - in->pos) png_error(png, "the data ends early");
  std::memcpy(out, in->data + in->pos, length);
  in->pos += length;
}

[[noreturn]] void PngError(png_structp png, png_const_charp message) {
  auto* in = static_cast<PngInput*>(png_get_error_ptr(png));
  std::snprintf(in->message, sizeof in->message, "%s", message);
  png_longjmp(png, 1);
}

// libpng warns about ancillary chunks it skips (bad CRC, odd colour profile) and benign oddities
// such as extra compressed data after the image; none of them changes the pixels, and imdecode
// accepts such files too. Silent, so a client cannot fill the agent's log.
void PngWarning(png_structp, png_const_charp) {}

// Owns libpng's read struct and its two info structs.
class PngReader final {
 public:
  explicit PngReader(PngInput* input)
      : png_(png_create_read_struct(PNG_LIBPNG_VER_STRING, input, PngError, PngWarning)) {
    if (png_ != nullptr) {
      info_ = png_create_info_struct(png_);
      end_info_ = png_create_info_struct(png_);
    }
  }
  ~PngReader() { png_destroy_read_struct(&png_, &info_, &end_info_); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;

  bool ok() const { return png_ != nullptr && info_ != nullptr && end_info_ != nullptr; }
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }
  png_infop end_info() const { return end_info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
  png_infop end_info_ = nullptr;
};

struct PngHeader {
  png_uint_32 width;
  png_uint_32 height;
  int bit_depth;
  int color_type;
  int num_trans;
};

// Reads the chunks before the image data (IHDR validated by libpng, PLTE, tRNS, ...).
bool PngReadHeaderStep(png_structp png, png_infop info, PngInput* input, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, input, PngRead);
  png_read_info(png, info);
  png_get_IHDR(png, info, &header->width, &header->height, &header->bit_depth, &header->color_type,
               nullptr, nullptr, nullptr);
  header->num_trans = 0;
  if (png_get_valid(png, info, PNG_INFO_tRNS) != 0) {
    png_bytep trans = nullptr;
    png_color_16p trans_values = nullptr;
    png_get_tRNS(png, info, &trans, &header->num_trans, &trans_values);
  }
  return true;
}

// Decodes every row into `rows` with OpenCV's transforms for `channels`, then reads the chunks
// after the image up to IEND (so a file cut after its pixels is refused, as imdecode does).
Step PngReadPixelsStep(png_structp png, png_infop info, png_infop end_info, const PngHeader* header,
                       int channels, std::size_t row_bytes, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return Step::kFailed;
  if (header->bit_depth == 16 && std::endian::native == std::endian::little) png_set_swap(png);
  if (channels < 4) {
    png_set_strip_alpha(png);
  } else {
    png_set_tRNS_to_alpha(png);
  }
  if (header->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  const bool colour = (header->color_type & PNG_COLOR_MASK_COLOR) != 0;
  if (!colour && header->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (channels > 1) {
    if (colour) {
      png_set_bgr(png);
    } else {
      png_set_gray_to_rgb(png);
    }
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != row_bytes) return Step::kLayout;
  png_read_image(png, rows);
  png_read_end(png, end_info);
  return Step::kOk;
}

Result<DecodedImage> DecodePng(std::string_view bytes, std::size_t max_pixels) {
  PngInput input{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0, {}};
  PngReader reader(&input);
  if (!reader.ok()) return Fail(ErrorCode::kLimit, "libpng could not allocate its state");
  PngHeader header{};
  if (!PngReadHeaderStep(reader.png(), reader.info(), &input, &header)) {
    return Corrupt("PNG", input.message);
  }
  EF_RETURN_IF_ERROR(CheckPixels(header.width, header.height, max_pixels, "decoder"));

  // OpenCV 4.6 PngDecoder::readHeader's choice of channels for IMREAD_UNCHANGED.
  int channels = 1;
  switch (header.color_type) {
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_PALETTE:
      channels = header.num_trans > 0 ? 4 : 3;
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
    case PNG_COLOR_TYPE_RGB_ALPHA:
      channels = 4;
      break;
    default:
      break;
  }
  DecodedImage image;
  image.width = header.width;
  image.height = header.height;
  image.channels = channels;
  image.bytes_per_sample = header.bit_depth == 16 ? 2 : 1;
  const std::size_t row_bytes = std::size_t{header.width} * static_cast<std::size_t>(channels) *
                                static_cast<std::size_t>(image.bytes_per_sample);
  EF_ASSIGN_OR_RETURN(image.pixels, AllocatePixels(row_bytes, header.height));
  std::vector<png_bytep> rows(header.height);
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = image.pixels.data() + y * row_bytes;

  switch (PngReadPixelsStep(reader.png(), reader.info(), reader.end_info(), &header, channels,
                            row_bytes, rows.data())) {
    case Step::kOk:
      return image;
    case Step::kFailed:
      return Corrupt("PNG", input.message);
    case Step::kLayout:
      break;
  }
  return LayoutMismatch("PNG");
}

// ---- JPEG (libjpeg-turbo 2.1, libjpeg 6b API) ----

// A progressive JPEG may hold any number of scans, each a full pass over the coefficients: a
// few KB of scans can cost minutes of CPU. libjpeg-turbo's own tools stop at 500.
constexpr int kMaxJpegScans = 500;

// libjpeg's state and what its callbacks share with the steps. Plain data: it must survive a
// longjmp. The callbacks find it through cinfo.client_data.
struct JpegContext {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr error;
  jpeg_source_mgr source;
  jpeg_progress_mgr progress;
  std::jmp_buf jump;
  char message[kMessageSize];
};

JpegContext* ContextOf(j_common_ptr cinfo) { return static_cast<JpegContext*>(cinfo->client_data); }

[[noreturn]] void JpegFail(j_common_ptr cinfo, const char* message) {
  JpegContext* ctx = ContextOf(cinfo);
  std::snprintf(ctx->message, sizeof ctx->message, "%s", message);
  std::longjmp(ctx->jump, 1);
}

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo) {
  char message[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, message);
  JpegFail(cinfo, message);
}

// libjpeg reports damaged entropy data (bad Huffman codes, a segment ending early, bytes skipped
// to find a marker) as warnings and goes on with made-up coefficients; here those are errors.
// Warnings about metadata only (JFIF version, Adobe transform code, ICC marker) leave the pixels
// intact and are ignored; trace messages (level >= 0) too.
void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  const int code = cinfo->err->msg_code;
  if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM || code == JWRN_BOGUS_ICC) return;
  JpegErrorExit(cinfo);
}

void JpegInitSource(j_decompress_ptr) {}
void JpegTermSource(j_decompress_ptr) {}

// The whole file is in the buffer from the start, so needing more means it was cut short.
// (libjpeg never reads past EOI, and stops at the markers that end entropy data, so complete
// files do not get here.)
boolean JpegFillInput(j_decompress_ptr cinfo) {
  JpegFail(reinterpret_cast<j_common_ptr>(cinfo), "the data ends early");
}

void JpegSkipInput(j_decompress_ptr cinfo, long count) {
  if (count <= 0) return;
  jpeg_source_mgr* src = cinfo->src;
  if (static_cast<unsigned long>(count) > src->bytes_in_buffer) {
    JpegFail(reinterpret_cast<j_common_ptr>(cinfo), "a marker segment runs past the end");
  }
  src->next_input_byte += count;
  src->bytes_in_buffer -= static_cast<std::size_t>(count);
}

void JpegProgress(j_common_ptr cinfo) {
  if (ContextOf(cinfo)->cinfo.input_scan_number > kMaxJpegScans) {
    JpegFail(cinfo, "more than 500 progressive scans");
  }
}

// Owns the context; jpeg_destroy_decompress frees every pool libjpeg allocated. It is a no-op
// on a context that jpeg_create_decompress never initialised (mem stays null).
class JpegDecompressor final {
 public:
  JpegDecompressor(const unsigned char* data, std::size_t size) : ctx_(new JpegContext{}) {
    jpeg_decompress_struct& cinfo = ctx_->cinfo;
    cinfo.err = jpeg_std_error(&ctx_->error);
    ctx_->error.error_exit = JpegErrorExit;
    ctx_->error.emit_message = JpegEmitMessage;
    cinfo.client_data = ctx_.get();  // kept by jpeg_create_decompress
    ctx_->source.next_input_byte = data;
    ctx_->source.bytes_in_buffer = size;
    ctx_->source.init_source = JpegInitSource;
    ctx_->source.fill_input_buffer = JpegFillInput;
    ctx_->source.skip_input_data = JpegSkipInput;
    ctx_->source.resync_to_restart = jpeg_resync_to_restart;
    ctx_->source.term_source = JpegTermSource;
    ctx_->progress.progress_monitor = JpegProgress;
  }
  ~JpegDecompressor() { jpeg_destroy_decompress(&ctx_->cinfo); }
  JpegDecompressor(const JpegDecompressor&) = delete;
  JpegDecompressor& operator=(const JpegDecompressor&) = delete;

  JpegContext* context() const { return ctx_.get(); }

 private:
  std::unique_ptr<JpegContext> ctx_;  // on the heap: libjpeg keeps pointers into it
};

// Creates the decompressor and reads the markers up to the first scan.
bool JpegReadHeaderStep(JpegContext* ctx) {
  if (setjmp(ctx->jump)) return false;
  jpeg_create_decompress(&ctx->cinfo);
  ctx->cinfo.src = &ctx->source;
  ctx->cinfo.progress = &ctx->progress;
  if (jpeg_read_header(&ctx->cinfo, TRUE) != JPEG_HEADER_OK) {
    JpegFail(reinterpret_cast<j_common_ptr>(&ctx->cinfo), "no image in the data");
  }
  return true;
}

// OpenCV's CMYK to BGR: Adobe-style inverted CMYK, as Photoshop writes it.
void CmykToBgr(const unsigned char* cmyk, unsigned char* bgr, JDIMENSION width) {
  for (JDIMENSION x = 0; x < width; ++x, cmyk += 4, bgr += 3) {
    const int k = cmyk[3];
    bgr[0] = static_cast<unsigned char>(k - ((255 - cmyk[2]) * k >> 8));
    bgr[1] = static_cast<unsigned char>(k - ((255 - cmyk[1]) * k >> 8));
    bgr[2] = static_cast<unsigned char>(k - ((255 - cmyk[0]) * k >> 8));
  }
}

// Decodes every scanline into `pixels` (width * channels bytes per row). Stops after the last
// scanline: what follows (normally just EOI) does not change the pixels.
Step JpegReadPixelsStep(JpegContext* ctx, int channels, unsigned char* pixels) {
  if (setjmp(ctx->jump)) return Step::kFailed;
  j_decompress_ptr cinfo = &ctx->cinfo;
  const bool cmyk = cinfo->num_components == 4;
  cinfo->out_color_space = channels == 1 ? JCS_GRAYSCALE : cmyk ? JCS_CMYK : JCS_EXT_BGR;
  jpeg_start_decompress(cinfo);  // cannot suspend: the source fails instead
  const int components = cmyk ? 4 : channels;
  if (cinfo->output_width != cinfo->image_width || cinfo->output_height != cinfo->image_height ||
      cinfo->output_components != components) {
    return Step::kLayout;
  }
  const std::size_t stride = std::size_t{cinfo->output_width} * static_cast<std::size_t>(channels);
  JSAMPARRAY cmyk_row = nullptr;
  if (cmyk) {
    cmyk_row = (*cinfo->mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(cinfo), JPOOL_IMAGE,
                                           cinfo->output_width * 4, 1);
  }
  while (cinfo->output_scanline < cinfo->output_height) {
    unsigned char* out = pixels + std::size_t{cinfo->output_scanline} * stride;
    JSAMPROW row = cmyk ? cmyk_row[0] : out;
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
      JpegFail(reinterpret_cast<j_common_ptr>(cinfo), "no scanline produced");
    }
    if (cmyk) CmykToBgr(cmyk_row[0], out, cinfo->output_width);
  }
  return Step::kOk;
}

Result<DecodedImage> DecodeJpeg(std::string_view bytes, std::size_t max_pixels) {
  JpegDecompressor decompressor(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  JpegContext* ctx = decompressor.context();
  if (!JpegReadHeaderStep(ctx)) return Corrupt("JPEG", ctx->message);
  EF_RETURN_IF_ERROR(
      CheckPixels(ctx->cinfo.image_width, ctx->cinfo.image_height, max_pixels, "decoder"));

  // OpenCV 4.6 JpegDecoder::readHeader: one component stays gray, anything else becomes BGR.
  DecodedImage image;
  image.width = ctx->cinfo.image_width;
  image.height = ctx->cinfo.image_height;
  image.channels = ctx->cinfo.num_components > 1 ? 3 : 1;
  image.bytes_per_sample = 1;
  const std::size_t row_bytes = std::size_t{image.width} * static_cast<std::size_t>(image.channels);
  EF_ASSIGN_OR_RETURN(image.pixels, AllocatePixels(row_bytes, image.height));

  switch (JpegReadPixelsStep(ctx, image.channels, image.pixels.data())) {
    case Step::kOk:
      return image;
    case Step::kFailed:
      return Corrupt("JPEG", ctx->message);
    case Step::kLayout:
      break;
  }
  return LayoutMismatch("JPEG");
}

}  // namespace

Result<DecodedImage> DecodeImage(std::string_view bytes, std::size_t max_pixels) {
  std::optional<Dims> header;
  const bool png = IsPng(bytes);
  if (png) {
    header = PngDims(bytes);
    if (!header) return Fail(ErrorCode::kInvalidArgument, "not a decodable image (bad PNG header)");
  } else if (IsJpeg(bytes)) {
    header = JpegDims(bytes);  // may stay empty for odd but valid files: libjpeg's view decides
  } else {
    return Fail(ErrorCode::kInvalidArgument, "not a decodable image (expected PNG or JPEG, " +
                                                 std::to_string(bytes.size()) + " bytes)");
  }
  if (header) EF_RETURN_IF_ERROR(CheckPixels(header->width, header->height, max_pixels, "header"));
  return png ? DecodePng(bytes, max_pixels) : DecodeJpeg(bytes, max_pixels);
}

}  // namespace edgefleet::runtime
