// Portal. See portal.h.

#include "tractor/kj-runtime/actor/portal.h"

#include "tractor/kj-runtime/net/limits.h"
#include "tractor/kj-runtime/async/log.h"

namespace tractor {

Portal::Portal(ActorEnv& env, schema::Actor::Client capability, ActorId id)
    : state(kj::refcounted<State>(env, kj::mv(capability), kj::mv(id), kj::Own<kj::Refcounted>())) {}

Portal::Portal(ActorEnv& env, schema::Actor::Client capability, ActorId id,
               kj::Own<kj::Refcounted> connection)
    : state(kj::refcounted<State>(env, kj::mv(capability), kj::mv(id), kj::mv(connection))) {}

Portal::State::State(ActorEnv& env, schema::Actor::Client capability, ActorId id,
                     kj::Own<kj::Refcounted> connection)
    : capability(kj::mv(capability)), id(kj::mv(id)), env(env), connection(kj::mv(connection)) {}

Portal::State::~State() noexcept(false) {}


namespace {

kj::Promise<Value> outcomeValue(schema::Outcome::Reader outcome, const ActorId& peer) {
  // A value nested beyond the limits fails here, where it is read.
  return kj::evalNow([&]() -> kj::Promise<Value> {
           if (outcome.isError()) return unboxError(outcome.getError());
           return Value(outcome.getValue());
         })
      .catch_([peer = peer.toString()](kj::Exception&& e) -> kj::Promise<Value> {
        KJ_IF_MAYBE(limit, explainLimitError(e, peer)) {
          return kj::mv(*limit);
        }
        return kj::mv(e);
      });
}

}  // namespace

kj::Promise<Value> Portal::send(
    capnp::Request<schema::Actor::RunParams, schema::Actor::RunResults>&& request) {
  return request.send().then(
      [peer = state->id.clone()](capnp::Response<schema::Actor::RunResults>&& response) {
        return outcomeValue(response.getOutcome(), peer).attach(kj::mv(response));
      },
      [peer = state->id.clone()](kj::Exception&& e) -> kj::Promise<Value> {
        return transportError(e, peer);
      });
}

kj::Promise<Value> Portal::resultValue() {
  KJ_IF_MAYBE(fork, state->result) {
    return fork->addBranch().then([self = kj::addRef(*state)]() -> kj::Promise<Value> {
      KJ_IF_MAYBE(e, self->resultError) {
        return kj::cp(*e);
      }
      KJ_IF_MAYBE(v, self->resultValue) {
        return v->clone();
      }
      KJ_UNREACHABLE;
    });
  }
  auto& self = *state;
  auto done = self.capability.waitForResultRequest().send().then(
      [&self](capnp::Response<schema::Actor::WaitForResultResults>&& response) {
        auto outcome = response.getOutcome();
        if (outcome.isError()) {
          self.resultError = unboxError(outcome.getError());
        } else {
          KJ_IF_MAYBE(e, kj::runCatchingExceptions(
                             [&]() { self.resultValue = Value(outcome.getValue()); })) {
            KJ_IF_MAYBE(limit, explainLimitError(*e, self.id.toString())) {
              self.resultError = kj::mv(*limit);
            } else {
              self.resultError = kj::mv(*e);
            }
          }
        }
      },
      [&self](kj::Exception&& e) { self.resultError = transportError(e, self.id); });
  // The fork is owned by the state, so `&self` outlives it.
  state->result = done.fork();
  return resultValue();
}

kj::Promise<void> Portal::openContextWith(
    OpenContextRequest&& request, StreamOptions receiving,
    kj::Function<kj::Promise<void>(Context&, Value)> block, PayloadSpec spec) {
  auto& actor = state->env;
  setWindow(request.getOptions().initWindow(), receiving);
  auto ctx = kj::refcounted<Context>(Context::Side::CALLER, actor, state->id.clone(),
                                     kj::mv(receiving));
  ctx->setSpec(kj::mv(spec));
  ctx->calleeActor = state->capability;
  request.setCaller(serveContext(*ctx));
  return runCallerContext(kj::mv(ctx), request.send().ignoreResult(), kj::mv(block));
}

kj::Promise<void> Portal::openStreamWith(OpenContextRequest&& request,
                                         kj::Function<kj::Promise<void>(MsgStream&)> block) {
  auto consume = [block = kj::mv(block)](Context& ctx, Value) mutable {
    // Leaving the block (or `close()`) before the stream ended cancels the remote function.
    ctx.oneWayConsumer = true;
    return ctx.openStream([&block](MsgStream& stream) { return block(stream); });
  };
  return openContextWith(kj::mv(request), StreamOptions(), kj::mv(consume));
}

kj::Promise<bool> Portal::cancelActor(kj::Duration timeout, bool raiseOnTimeout) {
  auto& actor = state->env;
  auto peer = state->id.clone();
  TRACTOR_LOG(RUNTIME, "requesting cancel of actor ", peer.toString());
  auto acked = state->capability.cancelRequest().send().then(
      [](capnp::Response<schema::Actor::CancelResults>&& response) {
        return response.getAcknowledged();
      },
      [peer = peer.clone()](kj::Exception&& e) {
        // Already gone: nothing left to cancel.
        TRACTOR_LOG(RUNTIME, "cancel of ", peer.toString(), " found it gone: ",
                    e.getDescription());
        return false;
      });
  auto tooSlow = actor.timer().afterDelay(timeout).then(
      [peer = kj::mv(peer), timeout, raiseOnTimeout]() -> kj::Promise<bool> {
        auto message = kj::str("actor ", peer.toString(), " did not acknowledge a cancel within ",
                               timeout);
        if (raiseOnTimeout) return typedError(ACTOR_TOO_SLOW, message);
        TRACTOR_LOG(WARNING, message);
        return false;
      });
  // Shielded (as tractor's): a scope interrupted meanwhile (the cancellation ends a context this
  // scope has with that actor) still learns whether the actor acknowledged.
  return shield(acked.exclusiveJoin(kj::mv(tooSlow)));
}

}  // namespace tractor
