// Revocable capabilities: the membrane the runtime puts around every capability an actor hands
// out, so that its lifetime is bounded by the structured scope that handed it out.
//
// An actor's services (TRACTOR_SERVICE) and the capabilities its function results carry are
// behind the actor's Revoker, revoked when the actor is cancelled; capabilities sent within a
// context (in its started value, stream items or result) are behind the context's, revoked when
// the context ends on the sending side. Once revoked, calls in flight and new calls through the
// membrane fail with the revocation's error, and the membrane drops its reference to the object
// behind it, so the holder can no longer reach the actor through it.

#pragma once

#include <capnp/membrane.h>
#include <kj/refcount.h>
#include "tractor/kj-runtime/wire/payload.h"

namespace tractor {

class Revoker final: public capnp::MembranePolicy, public kj::Refcounted {
  // A membrane policy that passes every call through unchanged until `revoke()`. Refcounted:
  // each membrane-wrapped capability holds a reference.
public:
  Revoker();

  void revoke(const kj::Exception& why);
  // Revokes every capability wrapped by this policy; later calls fail with `why`. Idempotent:
  // the first reason stands.
  bool isRevoked() const { return revoked_; }

  capnp::Capability::Client wrap(capnp::Capability::Client inner);
  // `inner` behind this membrane (inner is inside; the result is for the outside).
  Value guard(Value payload);
  // `payload`, with every capability it holds behind this membrane (unchanged, without a copy,
  // when it holds none).

  kj::Maybe<capnp::Capability::Client> inboundCall(uint64_t, uint16_t,
                                                   capnp::Capability::Client) override {
    return nullptr;
  }
  kj::Maybe<capnp::Capability::Client> outboundCall(uint64_t, uint16_t,
                                                    capnp::Capability::Client) override {
    return nullptr;
  }
  kj::Own<capnp::MembranePolicy> addRef() override { return kj::addRef(*this); }
  kj::Maybe<kj::Promise<void>> onRevoked() override { return revocation.addBranch(); }

private:
  kj::ForkedPromise<void> revocation;
  kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  bool revoked_ = false;

  explicit Revoker(kj::PromiseFulfillerPair<void> paf);
};

}  // namespace tractor
