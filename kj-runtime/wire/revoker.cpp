// Revocable capabilities. See revoker.h.

#include "tractor/kj-runtime/wire/revoker.h"

namespace tractor {

Revoker::Revoker(): Revoker(kj::newPromiseAndFulfiller<void>()) {}

Revoker::Revoker(kj::PromiseFulfillerPair<void> paf)
    : revocation(paf.promise.fork()), fulfiller(kj::mv(paf.fulfiller)) {}

void Revoker::revoke(const kj::Exception& why) {
  if (revoked_) return;
  revoked_ = true;
  fulfiller->reject(kj::cp(why));
}

capnp::Capability::Client Revoker::wrap(capnp::Capability::Client inner) {
  return capnp::membrane(kj::mv(inner), addRef());
}

Value Revoker::guard(Value payload) {
  if (!payload.hasCapabilities()) return payload;
  return payload.withMembrane(addRef());
}

}  // namespace tractor
