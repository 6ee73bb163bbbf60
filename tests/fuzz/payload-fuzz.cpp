// libFuzzer target: the payload decoder. Each input is one flat Cap'n Proto message (segment
// table and segments) read with the runtime's message limits as a `schema::Value`, then rendered
// (`describeValue`), copied (`Value`), compared and decoded into a few C++ types, as a receiver
// of arguments, results and stream items does. Refusals are exceptions; anything else (a crash,
// a sanitizer report, a hang) is a finding.
//
// Seeds (tests/fuzz/corpus/payload) are encoded values written by tests/fuzz/make-seeds.cpp.

#include <capnp/serialize.h>
#include <kj/debug.h>
#include <string.h>
#include "tractor/kj-runtime/net/limits.h"
#include "tractor/kj-runtime/wire/payload.h"

namespace {

template <typename T>
void tryDecode(tractor::ValueReader reader) {
  kj::runCatchingExceptions([&]() { (void)tractor::decodeValue<T>(reader); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The reader needs aligned words; a trailing partial word is dropped.
  auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  if (words.size() > 0) memcpy(words.begin(), data, words.size() * sizeof(capnp::word));
  kj::runCatchingExceptions([&]() {
    capnp::FlatArrayMessageReader message(words, tractor::messageLimits().readerOptions());
    auto root = message.getRoot<tractor::schema::Value>();
    (void)tractor::describeValue(root);
    tractor::Value copy(root);
    (void)copy.toString();
    (void)(copy == copy.clone());
    tryDecode<int64_t>(root);
    tryDecode<double>(root);
    tryDecode<kj::String>(root);
    tryDecode<kj::Array<kj::byte>>(root);
    tryDecode<std::vector<std::optional<int64_t>>>(root);
    tryDecode<std::map<std::string, std::vector<double>>>(root);
    tryDecode<std::tuple<int64_t, std::string, bool>>(root);
  });
  return 0;
}
