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
//
// Memory is settled before either library allocates anything sized by the image: the PNG chunk
// layout and the JPEG frame header are read here first, and the decode's cost (pixels, plus
// libjpeg's coefficient buffer once libjpeg has read the header) is checked against the budget
// before a pixel buffer exists. libpng is told to skip the ancillary chunks it would otherwise
// buffer whole, and libjpeg gets the budget as its own memory cap.
#include "runtime/image_decode.hpp"

#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including their headers

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <bit>
#include <climits>
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

// ---- Header checks before any decoder runs (attacker-chosen dimensions and lengths) ----

std::uint32_t BigEndian32(const unsigned char* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
std::uint32_t BigEndian16(const unsigned char* p) { return std::uint32_t{p[0]} << 8 | p[1]; }

bool IsPng(std::string_view b) { return b.size() >= 8 && b.substr(0, 8) == "\x89PNG\r\n\x1a\n"; }
bool IsJpeg(std::string_view b) { return b.size() >= 3 && b.substr(0, 3) == "\xff\xd8\xff"; }

// a * b, or UINT64_MAX when that overflows: every factor below comes from a header.
std::uint64_t SaturatingMul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t product = 0;
  return __builtin_mul_overflow(a, b, &product) ? UINT64_MAX : product;
}
std::uint64_t SaturatingAdd(std::uint64_t a, std::uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

std::string DimsText(std::uint64_t width, std::uint64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

// What decoding an image costs: its output pixels and, for a multi-scan JPEG, libjpeg's
// whole-image coefficient buffer. Everything else the libraries allocate grows with the width
// at most (a few rows).
struct DecodeCost {
  std::uint64_t width = 0;
  std::uint64_t height = 0;
  int channels = 0;
  int bytes_per_sample = 0;
  std::uint64_t coefficient_bytes = 0;
};

std::uint64_t PixelBytes(const DecodeCost& cost) {
  return SaturatingMul(SaturatingMul(cost.width, cost.height),
                       static_cast<std::uint64_t>(cost.channels * cost.bytes_per_sample));
}

// Refuses an empty image, or one that costs more than `max_bytes` to decode. `when` says which
// view of the header decided ("header": this file's own parsing; "decoder": libpng's or
// libjpeg's), so a test can tell that nothing was allocated yet.
Status CheckBudget(const DecodeCost& cost, std::size_t max_bytes, std::string_view when) {
  if (cost.width == 0 || cost.height == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "image is " + DimsText(cost.width, cost.height) + " pixels");
  }
  const std::uint64_t pixels = PixelBytes(cost);
  const std::uint64_t total = SaturatingAdd(pixels, cost.coefficient_bytes);
  if (total <= max_bytes) return Ok();
  std::string message =
      "image is " + DimsText(cost.width, cost.height) + " pixels of " +
      std::to_string(cost.channels) + (cost.channels == 1 ? " channel x " : " channels x ") +
      std::to_string(cost.bytes_per_sample) + (cost.bytes_per_sample == 1 ? " byte" : " bytes") +
      ": decoding needs " + std::to_string(total) + " bytes";
  if (cost.coefficient_bytes > 0) {
    message += " (" + std::to_string(pixels) + " for the pixels, " +
               std::to_string(cost.coefficient_bytes) +
               " for libjpeg's coefficients of a progressive or multi-scan JPEG)";
  }
  message +=
      ", over the budget of " + std::to_string(max_bytes) + " bytes (" + std::string(when) + ")";
  return Fail(ErrorCode::kInvalidArgument, std::move(message));
}

Error Corrupt(std::string_view format, std::string_view reason) {
  return {ErrorCode::kInvalidArgument, "not a decodable image (" + std::string(format) +
                                           " data is corrupt or truncated: " + std::string(reason) +
                                           ")"};
}

// PNG: what the chunk layout says before libpng reads any of it.
struct PngFacts {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  int bit_depth = 0;
  int color_type = 0;
  bool interlaced = false;
  bool has_trns = false;
  std::uint64_t idat_bytes = 0;  // compressed image data, summed over the IDAT chunks
};

// A chunk type for a message: four ASCII letters as they are, anything else in hex (the bytes
// are the client's).
std::string ChunkName(const unsigned char* type) {
  bool letters = true;
  for (int k = 0; k < 4; ++k) {
    const unsigned char c = type[k];
    letters = letters && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
  }
  if (letters) return std::string(reinterpret_cast<const char*>(type), 4);
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(BigEndian32(type)));
  return hex;
}

// Walks the chunk headers (PNG spec 5.3: length, type, data, CRC), up to IEND or the end of the
// bytes. The first chunk must be IHDR (5.6). A chunk that declares more data than follows it is
// refused here, by name and length: libpng 1.6.39 would otherwise allocate (and zero) a buffer
// of the declared length for a text, EXIF or sPLT chunk before finding out that the data is not
// there, because its chunk size cap is a "benign error", a mere warning on a read struct.
Result<PngFacts> InspectPng(std::string_view b) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  if (b.size() < 29 || b.substr(12, 4) != "IHDR") {
    return Fail(ErrorCode::kInvalidArgument, "not a decodable image (bad PNG header)");
  }
  PngFacts facts;
  facts.width = BigEndian32(p + 16);
  facts.height = BigEndian32(p + 20);
  facts.bit_depth = p[24];
  facts.color_type = p[25];
  facts.interlaced = p[28] != 0;
  std::size_t at = 8;
  while (b.size() - at >= 8) {
    const std::uint32_t length = BigEndian32(p + at);
    const unsigned char* type = p + at + 4;
    const std::size_t follow = b.size() - at - 8;
    if (length > 0x7fffffffu || std::size_t{length} > follow) {
      return Corrupt("PNG", "chunk " + ChunkName(type) + " declares " + std::to_string(length) +
                                " bytes of data, only " + std::to_string(follow) + " bytes follow");
    }
    const std::string_view name(reinterpret_cast<const char*>(type), 4);
    if (name == "IDAT") facts.idat_bytes += length;
    if (name == "tRNS") facts.has_trns = true;
    if (name == "IEND") break;
    at += 8 + std::size_t{length} + std::min<std::size_t>(4, follow - length);  // CRC
  }
  return facts;
}

// Samples per pixel as stored (PNG spec 6.1); 0 for a colour type libpng will refuse.
int StoredSamples(int color_type) {
  switch (color_type) {
    case 0:
      return 1;  // gray
    case 2:
      return 3;  // RGB
    case 3:
      return 1;  // palette index
    case 4:
      return 2;  // gray + alpha
    case 6:
      return 4;  // RGBA
    default:
      return 0;
  }
}

// OpenCV 4.6 PngDecoder::readHeader's choice of channels for IMREAD_UNCHANGED.
int PngChannels(int color_type, bool has_trns) {
  switch (color_type) {
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_PALETTE:
      return has_trns ? 4 : 3;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
    case PNG_COLOR_TYPE_RGB_ALPHA:
      return 4;
    default:
      return 1;
  }
}

// Deflate expands at most 1032:1 (a length-258 match costs at least two bits; zlib's
// "Technical Details"), so IDAT chunks of n bytes inflate to at most 1032 n bytes. An image
// whose rows need more than that is a lie, refused before its pixel buffer exists: a 45-byte
// file cannot make the decoder allocate megabytes.
Status CheckPngData(const PngFacts& facts) {
  constexpr std::uint64_t kMaxDeflateRatio = 1032;
  const int samples = StoredSamples(facts.color_type);
  if (samples == 0 || facts.bit_depth == 0) return Ok();  // libpng names the problem
  const std::uint64_t bits = SaturatingMul(
      SaturatingMul(facts.width, static_cast<std::uint64_t>(samples * facts.bit_depth)),
      facts.height);
  // Each row also starts with a filter byte; interlaced passes pack rows of their own, which
  // only adds bytes, so bits / 8 is a lower bound either way.
  const std::uint64_t need = bits / 8 + (facts.interlaced ? 0 : facts.height);
  if (need <= SaturatingMul(facts.idat_bytes, kMaxDeflateRatio)) return Ok();
  return Corrupt("PNG", "image is " + DimsText(facts.width, facts.height) +
                            " pixels, whose rows need " + std::to_string(need) +
                            " bytes of image data, but its " + std::to_string(facts.idat_bytes) +
                            " bytes of compressed data (IDAT) inflate to at most " +
                            std::to_string(SaturatingMul(facts.idat_bytes, kMaxDeflateRatio)) +
                            " (deflate expands at most 1032:1)");
}

// JPEG: walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT 0xC4,
// JPG 0xC8 and DAC 0xCC), whose payload holds precision, height, width and component count.
struct JpegFrame {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  int components = 0;
};

std::optional<JpegFrame> InspectJpeg(std::string_view b) {
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
      if (length < 8 || i + 10 > b.size()) return std::nullopt;
      return JpegFrame{BigEndian16(p + i + 7), BigEndian16(p + i + 5), p[i + 9]};
    }
    if (length < 2) return std::nullopt;
    i += 2 + length;
  }
  return std::nullopt;
}

Error LayoutMismatch(std::string_view format) {
  return {ErrorCode::kInternal,
          std::string(format) + " decoder produced rows of an unexpected size (bug)"};
}

// Pixel memory for row_bytes x height; CheckBudget has bounded the product by a size_t.
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

// libpng warns about ancillary chunks it skips (bad CRC) and benign oddities such as extra
// compressed data after the image; none of them changes the pixels, and imdecode accepts such
// files too. Silent, so a client cannot fill the agent's log. Except about memory: libpng
// reports a chunk over its size cap ("chunk data is too large") and a failed chunk allocation
// as benign errors, i.e. warnings on a read struct, and then goes on (1.6.39 allocates the
// declared length first). Those end the decode.
void PngWarning(png_structp png, png_const_charp message) {
  const std::string_view text(message);
  if (text.find("too large") != std::string_view::npos ||
      text.find("memory") != std::string_view::npos) {
    png_error(png, message);
  }
}

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

// Reads the chunks before the image data (IHDR validated by libpng, PLTE, tRNS). Every other
// ancillary chunk, known or not, is skipped without being buffered (PNG_HANDLE_CHUNK_NEVER with
// a negative count: all chunks except IHDR, PLTE, tRNS, IDAT, IEND), before and after the
// image: the pixels never depend on them, so text, EXIF, ICC profiles and suggested palettes
// cost no memory whatever length they declare. The caps below are the second line: no chunk
// buffer larger than the file, none cached.
bool PngReadHeaderStep(png_structp png, png_infop info, PngInput* input, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_set_chunk_malloc_max(png, input->size);
  png_set_chunk_cache_max(png, 1);  // 1 caches none; 0 would mean no limit
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

// Decodes every row into `pixels` with OpenCV's transforms for `channels`, then reads the
// chunks after the image up to IEND (so a file cut after its pixels is refused, as imdecode
// does). Rows are read one by one, each pass of an interlaced image over all of them, as
// png_read_image does, without its array of row pointers (8 bytes a row, more than the pixels
// of a narrow image).
Step PngReadPixelsStep(png_structp png, png_infop info, png_infop end_info, const PngHeader* header,
                       int channels, std::size_t row_bytes, unsigned char* pixels) {
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
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != row_bytes) return Step::kLayout;
  for (int pass = 0; pass < passes; ++pass) {
    for (png_uint_32 y = 0; y < header->height; ++y) {
      png_read_row(png, pixels + std::size_t{y} * row_bytes, nullptr);
    }
  }
  png_read_end(png, end_info);
  return Step::kOk;
}

Result<DecodedImage> DecodePng(std::string_view bytes, std::size_t max_bytes) {
  PngInput input{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0, {}};
  PngReader reader(&input);
  if (!reader.ok()) return Fail(ErrorCode::kLimit, "libpng could not allocate its state");
  PngHeader header{};
  if (!PngReadHeaderStep(reader.png(), reader.info(), &input, &header)) {
    return Corrupt("PNG", input.message);
  }
  DecodedImage image;
  image.width = header.width;
  image.height = header.height;
  image.channels = PngChannels(header.color_type, header.num_trans > 0);
  image.bytes_per_sample = header.bit_depth == 16 ? 2 : 1;
  EF_RETURN_IF_ERROR(
      CheckBudget({image.width, image.height, image.channels, image.bytes_per_sample, 0}, max_bytes,
                  "decoder"));
  const std::size_t row_bytes = std::size_t{header.width} *
                                static_cast<std::size_t>(image.channels) *
                                static_cast<std::size_t>(image.bytes_per_sample);
  EF_ASSIGN_OR_RETURN(image.pixels, AllocatePixels(row_bytes, header.height));

  switch (PngReadPixelsStep(reader.png(), reader.info(), reader.end_info(), &header, image.channels,
                            row_bytes, image.pixels.data())) {
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
  std::size_t max_bytes;            // the decode budget, also libjpeg's own memory cap
  std::uint64_t coefficient_bytes;  // libjpeg's whole-image buffer; 0 for a single scan
};

JpegContext* ContextOf(j_common_ptr cinfo) { return static_cast<JpegContext*>(cinfo->client_data); }

[[noreturn]] void JpegFail(j_common_ptr cinfo, const char* message) {
  JpegContext* ctx = ContextOf(cinfo);
  std::snprintf(ctx->message, sizeof ctx->message, "%s", message);
  std::longjmp(ctx->jump, 1);
}

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo) {
  char message[JMSG_LENGTH_MAX];
  if (cinfo->err->msg_code == JERR_NO_BACKING_STORE) {
    // What libjpeg says when its buffers would exceed max_memory_to_use.
    std::snprintf(message, sizeof message, "libjpeg needs more than the budget of %zu bytes",
                  ContextOf(cinfo)->max_bytes);
  } else {
    (*cinfo->err->format_message)(cinfo, message);
  }
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

// Creates the decompressor and reads the markers up to the first scan, which is where libjpeg
// knows whether the image comes in several scans (progressive, or components in separate
// scans). Then jpeg_start_decompress would allocate a coefficient buffer for the whole image,
// zeroed, one 64-coefficient block of 2-byte values per 8x8 block of each component
// (jdcoefct.c: each component's blocks rounded up to whole MCUs); its size is computed here so
// the budget can refuse it first. libjpeg's own cap, max_memory_to_use, is the second line: its
// memory manager refuses whole-image buffers beyond it (it has no backing store).
bool JpegReadHeaderStep(JpegContext* ctx) {
  if (setjmp(ctx->jump)) return false;
  jpeg_create_decompress(&ctx->cinfo);
  ctx->cinfo.mem->max_memory_to_use =
      static_cast<long>(std::min<std::size_t>(ctx->max_bytes, LONG_MAX));
  ctx->cinfo.src = &ctx->source;
  ctx->cinfo.progress = &ctx->progress;
  if (jpeg_read_header(&ctx->cinfo, TRUE) != JPEG_HEADER_OK) {
    JpegFail(reinterpret_cast<j_common_ptr>(&ctx->cinfo), "no image in the data");
  }
  ctx->coefficient_bytes = 0;
  if (jpeg_has_multiple_scans(&ctx->cinfo)) {
    for (int c = 0; c < ctx->cinfo.num_components; ++c) {
      const jpeg_component_info& comp = ctx->cinfo.comp_info[c];
      const auto RoundUp = [](std::uint64_t n, int m) {
        const auto step = static_cast<std::uint64_t>(m < 1 ? 1 : m);
        return (n + step - 1) / step * step;
      };
      const std::uint64_t blocks =
          SaturatingMul(RoundUp(comp.width_in_blocks, comp.h_samp_factor),
                        RoundUp(comp.height_in_blocks, comp.v_samp_factor));
      ctx->coefficient_bytes =
          SaturatingAdd(ctx->coefficient_bytes, SaturatingMul(blocks, sizeof(JBLOCK)));
    }
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

Result<DecodedImage> DecodeJpeg(std::string_view bytes, std::size_t max_bytes) {
  JpegDecompressor decompressor(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  JpegContext* ctx = decompressor.context();
  ctx->max_bytes = max_bytes;
  if (!JpegReadHeaderStep(ctx)) return Corrupt("JPEG", ctx->message);

  // OpenCV 4.6 JpegDecoder::readHeader: one component stays gray, anything else becomes BGR.
  DecodedImage image;
  image.width = ctx->cinfo.image_width;
  image.height = ctx->cinfo.image_height;
  image.channels = ctx->cinfo.num_components > 1 ? 3 : 1;
  image.bytes_per_sample = 1;
  EF_RETURN_IF_ERROR(
      CheckBudget({image.width, image.height, image.channels, 1, ctx->coefficient_bytes}, max_bytes,
                  "decoder"));
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

Result<DecodedImage> DecodeImage(std::string_view bytes, const ImageLimits& limits) {
  if (IsPng(bytes)) {
    EF_ASSIGN_OR_RETURN(const PngFacts facts, InspectPng(bytes));
    EF_RETURN_IF_ERROR(
        CheckBudget({facts.width, facts.height, PngChannels(facts.color_type, facts.has_trns),
                     facts.bit_depth == 16 ? 2 : 1, 0},
                    limits.max_bytes, "header"));
    EF_RETURN_IF_ERROR(CheckPngData(facts));
    return DecodePng(bytes, limits.max_bytes);
  }
  if (IsJpeg(bytes)) {
    // The frame may stay unknown for odd but valid files: libjpeg's view decides then. The
    // coefficient buffer of a multi-scan JPEG is added once libjpeg has read the header.
    if (const auto frame = InspectJpeg(bytes)) {
      EF_RETURN_IF_ERROR(
          CheckBudget({frame->width, frame->height, frame->components > 1 ? 3 : 1, 1, 0},
                      limits.max_bytes, "header"));
    }
    return DecodeJpeg(bytes, limits.max_bytes);
  }
  return Fail(ErrorCode::kInvalidArgument, "not a decodable image (expected PNG or JPEG, " +
                                               std::to_string(bytes.size()) + " bytes)");
}

}  // namespace edgefleet::runtime
