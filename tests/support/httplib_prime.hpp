// cpp-httplib's client parses each response's status line with a function-local static
// std::regex. Debian's libcpp-httplib is not built with ThreadSanitizer, so the guard that orders
// the regex's construction before its uses is invisible to it: when the first requests of two
// threads race, TSan reports the regex's first use as a data race (there is none; the guard
// orders them). PrimeHttplibClient() makes one request in the calling thread, once per process,
// so clients on threads started after it find the regex built and ordered by their creation.
// Tests that start httplib clients on several threads call it first.
#pragma once

namespace edgefleet::testing {

void PrimeHttplibClient();

}  // namespace edgefleet::testing
