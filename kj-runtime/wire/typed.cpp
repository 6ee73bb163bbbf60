// Typed payloads: the non-template parts. See typed.h.

#include "tractor/kj-runtime/wire/typed.h"

namespace tractor {

kj::Maybe<kj::String> payloadMismatch(kj::Maybe<const PayloadType&> expected,
                                      ValueReader value) {
  KJ_IF_MAYBE(type, expected) {
    if (!value.isTyped()) {
      return kj::str("expected ", type->name, ", got ", kindName(value), ' ',
                     describeValue(value));
    }
    auto typed = value.getTyped();
    if (typed.getTypeId() != type->id) {
      return kj::str("expected ", type->name, ", got ", payloadTypeName(typed.getTypeId()));
    }
    auto content = typed.getContent();
    if (!content.isNull() && !content.isStruct()) {
      return kj::str("expected ", type->name, ", got a ", type->name, " whose content is not a "
                     "struct");
    }
  }
  return nullptr;
}

kj::StringPtr KJ_STRINGIFY(PayloadKind kind) {
  switch (kind) {
    case PayloadKind::STARTED: return "started value";
    case PayloadKind::ITEM: return "stream item";
    case PayloadKind::RESULT: return "result";
  }
  return "payload";
}

}  // namespace tractor
