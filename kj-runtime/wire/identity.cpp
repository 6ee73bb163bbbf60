// Actor identity. See identity.h.

#include "tractor/kj-runtime/wire/identity.h"

#include <kj/debug.h>
#include <sys/random.h>

namespace tractor {

ActorId ActorId::fromReader(schema::ActorId::Reader reader) {
  return {kj::str(reader.getName()), kj::str(reader.getUuid()), reader.getPid()};
}

void ActorId::copyTo(schema::ActorId::Builder builder) const {
  builder.setName(name);
  builder.setUuid(uuid);
  builder.setPid(pid);
}

kj::String newUuid() {
  kj::byte bytes[16];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    ssize_t n;
    KJ_SYSCALL(n = getrandom(bytes + filled, sizeof(bytes) - filled, 0));
    filled += n;
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x40;  // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80;  // RFC 4122 variant
  static const char HEX[] = "0123456789abcdef";
  auto text = kj::heapString(36);
  size_t out = 0;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text[out++] = '-';
    text[out++] = HEX[bytes[i] >> 4];
    text[out++] = HEX[bytes[i] & 0x0f];
  }
  return text;
}

void validateActorName(kj::StringPtr name) {
  // Checked with KJ_FAIL_REQUIRE, so that the message a user reads is not led by the condition.
  if (name.size() == 0 || name.size() > 64) {
    KJ_FAIL_REQUIRE("an actor name must have 1 to 64 characters", name.size());
  }
  for (char c: name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) {
      KJ_FAIL_REQUIRE("an actor name may only contain letters, digits, '_', '.' and '-'", name);
    }
  }
}

}  // namespace tractor
