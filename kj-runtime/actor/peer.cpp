// Peers: lost connections and liveness probes. See peer.h.

#include "tractor/kj-runtime/actor/peer.h"

#include "tractor/kj-runtime/async/task-group.h"
#include "tractor/kj-runtime/net/limits.h"
#include "tractor/kj-runtime/wire/errors.h"

namespace tractor {

kj::Exception transportError(const kj::Exception& e, const ActorId& peer) {
  KJ_IF_MAYBE(limit, explainLimitError(e, peer.toString())) {
    return kj::mv(*limit);
  }
  if (e.getType() != kj::Exception::Type::DISCONNECTED) return kj::cp(e);
  return typedError(TRANSPORT_CLOSED,
                    kj::str("connection to actor ", peer.toString(), " lost: ",
                            e.getDescription()),
                    kj::Exception::Type::DISCONNECTED);
}

namespace {

Task<void> probeUntilUnresponsive(schema::Actor::Client actor, kj::Timer& timer) {
  for (;;) {
    co_await timer.afterDelay(LIVENESS_INTERVAL);
    auto reply = actor.getIdRequest().send().then(
        [](capnp::Response<schema::Actor::GetIdResults>&&) { return true; },
        [](kj::Exception&&) { return false; });
    kj::Maybe<bool> answered = co_await moveOnAfter(timer, LIVENESS_TIMEOUT, kj::mv(reply));
    KJ_IF_MAYBE(a, answered) {
      if (!*a) co_await kj::Promise<void>(kj::NEVER_DONE);
    } else {
      co_return;
    }
  }
}

}  // namespace

kj::Promise<void> whenUnresponsive(schema::Actor::Client actor, kj::Timer& timer) {
  return probeUntilUnresponsive(kj::mv(actor), timer);
}

}  // namespace tractor
