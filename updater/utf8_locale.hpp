// Runs libarchive under a UTF-8 LC_CTYPE on the calling thread only.
//
// libarchive converts pax's UTF-8 entry names through the thread's locale: reading only warns
// when a name does not convert (in the "C" locale an agent usually runs in, every non-ASCII
// name), and the 3.6 pax writer can crash on it. uselocale (not setlocale) keeps it to this
// thread, so names do not depend on how the process was started and other threads are untouched.
//
// Thread safety: affects only the thread that constructs it; destroy it on the same thread.
#pragma once

#include <locale.h>

namespace edgefleet::updater {

class ScopedUtf8Locale final {
 public:
  ScopedUtf8Locale() : locale_(newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr)) {
    if (locale_ != nullptr) previous_ = uselocale(locale_);
  }
  ~ScopedUtf8Locale() {
    if (locale_ != nullptr) {
      uselocale(previous_);
      freelocale(locale_);
    }
  }
  ScopedUtf8Locale(const ScopedUtf8Locale&) = delete;
  ScopedUtf8Locale& operator=(const ScopedUtf8Locale&) = delete;

 private:
  locale_t locale_;
  locale_t previous_ = nullptr;
};

}  // namespace edgefleet::updater
