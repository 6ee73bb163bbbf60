// Contexts and message streams. See context.h.

#include "tractor/kj-runtime/actor/context.h"

#include <kj/debug.h>
#include "tractor/kj-runtime/actor/context-internal.h"
#include "tractor/kj-runtime/async/log.h"

namespace tractor {

namespace {

constexpr uint MAX_BATCHES_IN_FLIGHT = 2;
constexpr uint64_t MAX_BATCH_WORDS = 16 * 1024;
constexpr size_t MAX_BATCH_ITEMS = 4096;
// A batch stops growing past 128 KiB or 4096 items (and at half the receiver's buffer, unless it
// allows overruns).
constexpr size_t SEND_QUEUE_LIMIT = 1024;
// Items `send()` queues locally (behind the batch in flight) before it waits.
constexpr kj::Duration FINISH_TIMEOUT = 1 * kj::SECONDS;
// How long the callee's runtime waits for the caller to take its outcome.

kj::Exception contextError(kj::StringPtr message) { return typedError(CONTEXT_ERROR, message); }

using _::fulfillAll;

kj::Maybe<const PayloadType&> slot(const kj::Maybe<PayloadType>& type) {
  KJ_IF_MAYBE(t, type) {
    return *t;
  }
  return nullptr;
}

}  // namespace

// =======================================================================================
// The capability a peer talks to

class Context::PeerServer final: public schema::ContextPeer::Server {
  // One side's end of the dialogue as the other side sees it. Holds its context alive for as
  // long as the peer holds the capability; messages arriving after the side's scope ended are
  // ignored.
public:
  explicit PeerServer(kj::Own<Context> ctx): ctx(kj::mv(ctx)) {}

  kj::Promise<void> started(StartedContext call) override {
    auto params = call.getParams();
    if (ctx->side_ != Side::CALLER || ctx->scopeDone) return kj::READY_NOW;
    auto accepted = ctx->acceptIncoming(PayloadKind::STARTED, slot(ctx->spec_.started),
                                        params.getValue());
    KJ_SWITCH_ONEOF(accepted) {
      KJ_CASE_ONEOF(value, Value) {
        ctx->peerStarted(kj::mv(value), params.getCallee(), params.getWindow());
      }
      KJ_CASE_ONEOF(error, kj::Exception) {
        boxError(call.getResults().initRefused(), error, ctx->self);
        ctx->refuseIncoming(kj::mv(error));
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> send(SendContext call) override {
    kj::Promise<void> stall = kj::READY_NOW;
    ctx->deliver(call.getParams().getItems(), call.getResults(), stall);
    return stall;
  }

  kj::Promise<void> stop(StopContext) override {
    ctx->peerStopped();
    return kj::READY_NOW;
  }

  kj::Promise<void> finish(FinishContext call) override {
    auto outcome = call.getParams().getOutcome();
    if (ctx->side_ != Side::CALLER) return kj::READY_NOW;  // only a callee finishes
    // Its task is over, whatever this side makes of the outcome.
    KJ_DEFER(ctx->markCalleeEnded());
    if (outcome.isError()) {
      ctx->setOutcome(unboxError(outcome.getError()));
      return kj::READY_NOW;
    }
    if (ctx->scopeDone || ctx->outcome_ != nullptr) return kj::READY_NOW;
    auto accepted = ctx->acceptIncoming(PayloadKind::RESULT, slot(ctx->spec_.result),
                                        outcome.getValue());
    KJ_SWITCH_ONEOF(accepted) {
      KJ_CASE_ONEOF(value, Value) {
        ctx->setOutcome(kj::mv(value));
      }
      KJ_CASE_ONEOF(error, kj::Exception) {
        boxError(call.getResults().initRefused(), error, ctx->self);
        ctx->refuseIncoming(kj::mv(error));
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> cancel(CancelContext) override {
    if (ctx->side_ != Side::CALLEE) return kj::READY_NOW;
    ctx->cancelTask(ctx->peerId, "its caller");
    // Answered once the task has ended (a shielded section in it finished first) and its outcome
    // is on its way: the caller then has the outcome before the answer.
    return ctx->whenTaskEnded();
  }

private:
  kj::Own<Context> ctx;
};

schema::ContextPeer::Client Context::serve() { return kj::heap<PeerServer>(kj::addRef(*this)); }

schema::ContextPeer::Client serveContext(Context& ctx) { return ctx.serve(); }

void setWindow(schema::ReceiveWindow::Builder builder, const StreamOptions& receiving) {
  builder.setCapacity(receiving.bufferSize);
  builder.setAllowOverruns(receiving.allowOverruns);
}

StreamOptions windowOptions(schema::ReceiveWindow::Reader window) {
  StreamOptions options;
  if (window.getCapacity() > 0) options.bufferSize = window.getCapacity();
  options.allowOverruns = window.getAllowOverruns();
  return options;
}

// =======================================================================================
// Context

namespace {

class ContextScope final: public TaskScope {
  // The task-local scope of one side of a context (see `currentContext()`).
public:
  static const char KIND;
  explicit ContextScope(Context& ctx): TaskScope(&KIND), ctx(&ctx) {}
  ContextScope(Context& ctx, TaskScope& enclosing): TaskScope(&KIND, enclosing), ctx(&ctx) {}
  Context* ctx;
  // Null once the context is gone (a frame started inside it may outlive it).
};

const char ContextScope::KIND = 0;

kj::Own<TaskScope> contextScope(Context& ctx, kj::Maybe<TaskScope&> enclosing) {
  KJ_IF_MAYBE(e, enclosing) {
    return kj::refcounted<ContextScope>(ctx, *e);
  }
  return kj::refcounted<ContextScope>(ctx);
}

}  // namespace

kj::Maybe<Context&> currentContext() {
  KJ_IF_MAYBE(scope, TaskScope::find<ContextScope>()) {
    if (scope->ctx != nullptr) return *scope->ctx;
  }
  return nullptr;
}

Context::Context(Side side, ActorEnv& env, ActorId peer, StreamOptions receiving,
                 StreamOptions peerReceiving, kj::Maybe<TaskScope&> enclosing)
    : side_(side), env(env), self(env.id()), peerId(kj::mv(peer)), stream(*this),
      receiving(kj::mv(receiving)), peerReceiving(kj::mv(peerReceiving)),
      taskScope(contextScope(*this, enclosing)), tasks(logErrors) {}

Context::~Context() noexcept(false) { static_cast<ContextScope&>(*taskScope).ctx = nullptr; }

kj::Maybe<const ActorId&> Context::canceller() const {
  KJ_IF_MAYBE(c, canceller_) {
    return *c;
  }
  return nullptr;
}

kj::Maybe<const Context::Outcome&> Context::outcome() const {
  KJ_IF_MAYBE(o, outcome_) {
    return *o;
  }
  return nullptr;
}

bool Context::isOwnCancel(const kj::Exception& e) const {
  if (!cancelCalled_) return false;
  KJ_IF_MAYBE(c, cancellerOf(e)) {
    return *c == self;
  }
  return false;
}

bool Context::isOutcome(const kj::Exception& e) const {
  KJ_IF_MAYBE(o, outcome_) {
    return o->is<kj::Exception>() &&
           o->get<kj::Exception>().getDescription() == e.getDescription();
  }
  return false;
}

kj::Exception Context::notOpen(kj::StringPtr what) const {
  return contextError(kj::str(what, " a stream that is not open: use it inside the block of "
                                    "Context::openStream()"));
}

kj::Promise<void> Context::started(Value value) {
  if (side_ != Side::CALLEE) {
    return contextError("started() is for the callee; the caller gets the first value as the "
                        "second argument of its block");
  }
  if (startedCalled) return contextError("started() was already called in this context");
  KJ_IF_MAYBE(e, checkOutgoing(PayloadKind::STARTED, slot(spec_.started), value)) {
    return kj::mv(*e);
  }
  startedCalled = true;
  TRACTOR_LOG(TRACE, "started value to ", peerId);
  auto request = KJ_ASSERT_NONNULL(peerCap).startedRequest();
  request.setValue(guard(kj::mv(value)).reader());
  request.setCallee(serve());
  setWindow(request.initWindow(), receiving);
  return request.send().then(
      [](capnp::Response<schema::ContextPeer::StartedResults>&& response) -> kj::Promise<void> {
        // The caller refused the value (MsgTypeError): the dialogue is over.
        if (response.hasRefused()) return unboxError(response.getRefused());
        return kj::READY_NOW;
      },
      [peer = peerId.clone()](kj::Exception&& e) -> kj::Promise<void> {
        return transportError(e, peer);
      });
}

kj::Promise<void> Context::openStream(kj::Function<kj::Promise<void>(MsgStream&)> block) {
  return openStream(kj::cp(receiving), kj::mv(block));
}

kj::Promise<void> Context::openStream(StreamOptions options,
                                      kj::Function<kj::Promise<void>(MsgStream&)> block) {
  KJ_IF_MAYBE(o, outcome_) {
    // The dialogue is over: opening the stream raises what ended it.
    if (o->is<kj::Exception>()) return kj::cp(o->get<kj::Exception>());
  }
  if (cancelCalled_) {
    // Absorbed at the scope's exit, like the cancellation it reports.
    return contextCancelled(side_ == Side::CALLER ? peerId : self, self,
                            kj::str("the stream of the context with ", peerId, " was opened "
                                    "after ", self, " cancelled the context"));
  }
  if (side_ == Side::CALLEE && !startedCalled) {
    return contextError("openStream() before started(): the callee must call started() first");
  }
  if (scopeDone) return contextError(kj::str("the context with ", peerId, " has ended"));
  if (streamOpened) return contextError("a context's stream cannot be reopened");
  KJ_REQUIRE(options.bufferSize > 0, "a stream's buffer size must be at least 1");
  streamOpened = true;
  streamOpen = true;
  receiving = kj::mv(options);
  if (inbox.size() < receiving.bufferSize) fulfillAll(stalledSenders);
  auto body = kj::evalNow([&]() { return block(stream); });
  // The block (a coroutine lambda's captures, say) lives until its promise is done.
  return body
      .then([this, block = kj::mv(block)]() -> kj::Promise<void> { return closeStream(); },
            [this](kj::Exception&& e) -> kj::Promise<void> {
              // The dialogue ends with this error; the queued items go nowhere.
              localClosed = true;
              outbox.clear();
              return kj::mv(e);
            })
      .then([this]() { streamOpen = false; },
            [this](kj::Exception&& e) {
              streamOpen = false;
              kj::throwFatalException(kj::mv(e));
            });
}

kj::Promise<void> Context::cancel(kj::Duration timeout) {
  cancelCalled_ = true;
  if (side_ == Side::CALLEE) {
    // Usually called from the task itself: its scope drops it in a later turn, at its next
    // suspension point (once no shield is held).
    if (outcome_ == nullptr) cancelTask(self, "itself");
    return kj::READY_NOW;
  }
  if (calleeEnded) return kj::READY_NOW;  // the task is over: nothing to cancel
  KJ_IF_MAYBE(peer, peerCap) {
    TRACTOR_LOG(RUNTIME, "cancelling the context task in ", peerId.toString());
    auto acked = peer->cancelRequest().send().then(
        [](auto&&) {},
        [](kj::Exception&& e) {
          TRACTOR_LOG(DEBUG, "context cancel not delivered: ", e.getDescription());
        });
    auto tooSlow = env.timer().afterDelay(timeout).then(
        [peer = peerId.clone(), timeout]() {
          TRACTOR_LOG(WARNING, "the context task in ", peer.toString(), " may have failed to "
                      "cancel: no acknowledgement within ", timeout);
        });
    return shield(acked.exclusiveJoin(kj::mv(tooSlow)));
  }
  // Not started yet: dropping the call cancels the task.
  call = nullptr;
  setOutcome(contextCancelled(peerId, self, "cancelled by its caller before it started"));
  markCalleeEnded();
  return kj::READY_NOW;
}

void Context::cancelTask(const ActorId& requester, kj::StringPtr who) {
  if (outcome_ != nullptr) return;  // already over: a real outcome is never replaced
  if (canceller_ == nullptr) canceller_ = requester.clone();
  TRACTOR_LOG(RUNTIME, "context task cancelled by ", who, " (", requester.toString(), ')');
  interrupt(contextCancelled(self, requester,
                             kj::str("the context task in ", self.toString(), " was cancelled by ",
                                     who, ' ', requester.toString())));
}

void Context::interrupt(kj::Exception reason) {
  if (side_ == Side::CALLER) {
    KJ_IF_MAYBE(b, blockScope) {
      b->cancel(kj::mv(reason));
    }
  } else {
    KJ_IF_MAYBE(t, task) {
      (*t)->cancel(kj::mv(reason));
    }
  }
}

void Context::peerRefused(kj::Exception error) {
  // The peer refused items this side sent (an overrun, a payload off the spec): the dialogue is
  // over, and this side's code learns it wherever it is.
  if (sendError == nullptr) sendError = kj::cp(error);
  if (outcome_ != nullptr) return;
  if (typeError() != nullptr) wakeReceiver();
  interrupt(kj::mv(error));
}

void Context::refusedPeer(kj::Exception error) {
  // This side refused the peer's items: the peer, told so, ends the dialogue (the sender raises
  // the refusal). Should it not, this side ends it.
  if (refusalTimer != nullptr || outcome_ != nullptr) return;
  refusalTimer = env.timer().afterDelay(REFUSAL_TIMEOUT).then(
      [this, error = kj::mv(error)]() mutable {
        if (outcome_ != nullptr || scopeDone) return;
        TRACTOR_LOG(WARNING, peerId, " did not end the dialogue within ", REFUSAL_TIMEOUT,
                    " after its items were refused: ", self, " ends it");
        if (side_ == Side::CALLER) {
          setOutcome(kj::mv(error));
        } else {
          interrupt(kj::mv(error));
        }
      }).eagerlyEvaluate(nullptr);
}

void Context::markCalleeEnded() {
  if (calleeEnded) return;
  calleeEnded = true;
  fulfillAll(calleeEndWaiters);
}

kj::Promise<void> Context::whenCalleeEnded() {
  if (calleeEnded) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  calleeEndWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<void> Context::whenTaskEnded() {
  if (outcomeSent) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  endWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<Value> Context::waitForResult() {
  if (side_ != Side::CALLER) return contextError("waitForResult() is for the caller");
  return whenFinished().then([this]() -> kj::Promise<Value> {
    auto& o = KJ_ASSERT_NONNULL(outcome_);
    if (o.is<Value>()) return o.get<Value>().clone();
    auto& e = o.get<kj::Exception>();
    if (isOwnCancel(e)) return Value();
    return kj::cp(e);
  });
}

// ---- payload specs and capabilities ------------------------------------------------------

kj::Maybe<const PayloadType&> Context::incomingItemType() const {
  if (!itemLimits.empty()) return itemLimits.back();
  return slot(side_ == Side::CALLER ? spec_.calleeItems : spec_.callerItems);
}

kj::Maybe<const PayloadType&> Context::outgoingItemType() const {
  return slot(side_ == Side::CALLER ? spec_.callerItems : spec_.calleeItems);
}

kj::Maybe<kj::Exception> Context::checkOutgoing(PayloadKind kind,
                                                kj::Maybe<const PayloadType&> type,
                                                const Value& value) const {
  KJ_IF_MAYBE(why, payloadMismatch(type, value.reader())) {
    return msgTypeError(self, kj::str("the ", kind, " for ", peerId.toString(), " does not match "
                                      "the dialogue's spec: ", *why, "; it was not sent"));
  }
  return nullptr;
}

kj::OneOf<Value, kj::Exception> Context::acceptIncoming(PayloadKind kind,
                                                        kj::Maybe<const PayloadType&> type,
                                                        ValueReader value) {
  KJ_IF_MAYBE(e, typeRefusal) {
    return kj::cp(*e);
  }
  // A hostile or broken peer may send anything: reading it may throw too.
  // (A plain try: kj::runCatchingExceptions() costs more, and this runs for every item.)
  kj::Maybe<kj::String> mismatch;
  Value copy;
  try {
    mismatch = payloadMismatch(type, value);
    if (mismatch == nullptr) copy = Value(value);
  } catch (...) {
    mismatch = kj::str("the payload is malformed (", currentExceptionAsKj().getDescription(),
                       ')');
  }
  KJ_IF_MAYBE(why, mismatch) {
    return msgTypeError(self, kj::str("the ", kind, " from ", peerId.toString(), " does not "
                                      "match the dialogue's spec: ", *why));
  }
  // The caller's scope bounds the capabilities in the result it received.
  if (kind == PayloadKind::RESULT) return guard(kj::mv(copy));
  return kj::mv(copy);
}

void Context::refuseIncoming(kj::Exception error) {
  TRACTOR_LOG(WARNING, "context with ", peerId.toString(), ": ", error.getDescription());
  if (typeRefusal == nullptr) typeRefusal = kj::cp(error);
  if (side_ == Side::CALLER) {
    setOutcome(kj::mv(error));
  } else {
    // The callee's task ends with it, wherever it is (a receive waiting raises it itself).
    wakeReceiver();
    interrupt(kj::mv(error));
  }
}

kj::Maybe<const kj::Exception&> Context::typeError() const {
  KJ_IF_MAYBE(e, typeRefusal) {
    return *e;
  }
  KJ_IF_MAYBE(e, sendError) {
    if (isRemoteError(*e, MSG_TYPE_ERROR)) return *e;
  }
  return nullptr;
}

Value Context::guard(Value value) {
  if (!value.hasCapabilities()) return value;
  if (membrane == nullptr) membrane = kj::refcounted<Revoker>();
  return KJ_ASSERT_NONNULL(membrane)->guard(kj::mv(value));
}

void Context::revokeCapabilities() {
  KJ_IF_MAYBE(m, membrane) {
    (*m)->revoke(typedError(CAPABILITY_REVOKED, kj::str(
        "the capability was handed out in the context between ", self.toString(), " and ",
        peerId.toString(), ", which has ended")));
  }
}

PayloadLimit Context::limitItems(PayloadType type) {
  KJ_IF_MAYBE(current, incomingItemType()) {
    KJ_REQUIRE(*current == type, "limitItems() can only narrow: the items of this context are "
               "already limited to another type", current->name, type.name);
  }
  itemLimits.add(type);
  return PayloadLimit(kj::addRef(*this));
}

PayloadLimit::~PayloadLimit() noexcept(false) {
  if (ctx.get() != nullptr) ctx->itemLimits.removeLast();
}

// ---- the dialogue's start and end -------------------------------------------------------

void Context::peerStarted(Value value, schema::ContextPeer::Client callee,
                          schema::ReceiveWindow::Reader window) {
  if (side_ != Side::CALLER || scopeDone || peerCap != nullptr) return;
  TRACTOR_LOG(TRACE, "started value from ", peerId);
  peerCap = kj::mv(callee);
  peerReceiving = windowOptions(window);
  KJ_IF_MAYBE(w, startedWaiter) {
    (*w)->fulfill(kj::mv(value));
    startedWaiter = nullptr;
  } else {
    firstValue = kj::mv(value);
  }
}

kj::Promise<Value> Context::whenStarted() {
  KJ_IF_MAYBE(v, firstValue) {
    auto value = kj::mv(*v);
    firstValue = nullptr;
    return kj::mv(value);
  }
  KJ_IF_MAYBE(o, outcome_) {
    if (o->is<kj::Exception>()) return kj::cp(o->get<kj::Exception>());
    return contextError(kj::str("the context function in ", peerId.toString(),
                                " returned without calling started()"));
  }
  auto paf = kj::newPromiseAndFulfiller<Value>();
  startedWaiter = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void Context::setOutcome(Outcome outcome) {
  if (outcome_ != nullptr || scopeDone) return;  // the first outcome stands
  if (outcome.is<kj::Exception>()) canceller_ = cancellerOf(outcome.get<kj::Exception>());
  auto& o = outcome_.emplace(kj::mv(outcome));
  peerEnded = true;
  KJ_IF_MAYBE(w, startedWaiter) {
    if (o.is<kj::Exception>()) {
      (*w)->reject(kj::cp(o.get<kj::Exception>()));
    } else {
      (*w)->reject(contextError(kj::str("the context function in ", peerId.toString(),
                                        " returned without calling started()")));
    }
    startedWaiter = nullptr;
  }
  wakeReceiver();
  fulfillAll(outcomeWaiters);
  fulfillAll(outboxWaiters);
  if (o.is<kj::Exception>()) {
    // The dialogue ended with an error (whoever asked for it): the block is interrupted wherever
    // it awaits, after everything else this set off, so that a block waiting in `receive()` or
    // `waitForResult()` sees the error there itself.
    tasks.add(whenIdle().then([this]() {
      interrupt(kj::cp(KJ_ASSERT_NONNULL(outcome_).get<kj::Exception>()));
    }));
  }
}

kj::Promise<void> Context::whenFinished() {
  // Whatever still arrives on the stream is of no interest now.
  draining = true;
  inbox.clear();
  fulfillAll(stalledSenders);
  if (outcome_ != nullptr) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  outcomeWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void Context::endScope() {
  scopeDone = true;
  revokeCapabilities();
  inbox.clear();
  outbox.clear();
  fulfillAll(stalledSenders);
  refusalTimer = nullptr;
  // Caller: the callee's task is over (or given up on): the call goes, and with the
  // capabilities, whatever ties this context to the connection (a handle may outlive it).
  call = nullptr;
  peerCap = nullptr;
  calleeActor = nullptr;
}

Task<void> Context::exitScope(kj::Maybe<kj::Exception> blockError) {
  // The block is over: the outcome rules (see context.h). The scope ends only once the callee's
  // task has ended too. Ending it after an error is shielded (and bounded): an enclosing scope
  // cancelled meanwhile waits, so the error this scope raises is not lost to that cancellation.
  KJ_IF_MAYBE(e, blockError) {
    if (isOutcome(*e)) {
      // The dialogue's own end: the block was interrupted by it, or raised it again. An outcome
      // made here (a refusal, a lost connection) may have left the callee running.
      if (!calleeEnded) co_await shieldedEndCallee();
      if (isOwnCancel(*e)) co_return;
      kj::throwFatalException(kj::mv(*e));
    }
    if (isOwnCancel(*e)) {
      // The cancellation this side asked for, raised inside the block (`openStream()` after
      // `cancel()`, a `receive()`): absorbed once the callee ended.
      if (!calleeEnded) co_await shieldedEndCallee();
      co_return;
    }
    // The block failed on its own (or a refusal of its items interrupted it): the callee's task
    // must not outlive it. The context keeps the callee's own outcome; the block's error wins.
    cancelCalled_ = true;
    // (Not awaited when there is nothing to wait for: an await of a ready promise yields a turn,
    // in which an enclosing scope's pending cancellation could cut the error off.)
    if (!calleeEnded) co_await shieldedEndCallee();
    kj::throwFatalException(kj::mv(*e));
  }
  co_await awaitOutcome(cancelCalled_);
  auto& o = KJ_ASSERT_NONNULL(outcome_);
  if (o.is<kj::Exception>() && !isOwnCancel(o.get<kj::Exception>())) {
    kj::throwFatalException(kj::cp(o.get<kj::Exception>()));
  }
}

kj::Promise<void> Context::shieldedEndCallee() {
  return shield(kj::Promise<void>(endCallee()).attach(kj::addRef(*this)));
}

Task<void> Context::endCallee() {
  if (calleeEnded) co_return;
  if (typeRefusal != nullptr) {
    // This side refused a payload: the callee learns it from its next message's answer and
    // ends with the relayed MsgTypeError. Give it that chance before cancelling its task.
    co_await moveOnAfter(env.timer(), CONTEXT_CANCEL_TIMEOUT, whenCalleeEnded());
  }
  if (!calleeEnded) co_await cancel();
  co_await awaitOutcome(true);
}

kj::Promise<void> Context::awaitOutcome(bool bounded) {
  if (calleeEnded && outcome_ != nullptr) return kj::READY_NOW;
  auto& timer = env.timer();
  kj::Promise<kj::String> giveUp = kj::NEVER_DONE;
  KJ_IF_MAYBE(actor, calleeActor) {
    giveUp = whenUnresponsive(*actor, timer).then([]() {
      return kj::str("stopped answering (no reply to a liveness probe within ", LIVENESS_TIMEOUT,
                     ")");
    });
  }
  if (bounded) {
    giveUp = giveUp.exclusiveJoin(timer.afterDelay(CANCEL_HARD_TIMEOUT).then([]() {
      return kj::str("did not end within ", CANCEL_HARD_TIMEOUT, " of its cancellation");
    }));
  }
  auto ended = whenCalleeEnded().then([this]() { return whenFinished(); });
  return ended.exclusiveJoin(giveUp.then([this](kj::String why) {
    // Escalated: the actor is asked to cancel (unless it is this actor's parent or itself), and
    // the dialogue ends here.
    auto error = typedError(ACTOR_TOO_SLOW, kj::str("the context task in ", peerId, ' ', why));
    TRACTOR_LOG(WARNING, error.getDescription());
    KJ_IF_MAYBE(actor, calleeActor) {
      bool isParent = false;
      KJ_IF_MAYBE(p, env.parentId()) {
        isParent = *p == peerId;
      }
      if (!isParent && !(peerId == self)) {
        env.runInBackground(actor->cancelRequest().send().ignoreResult().exclusiveJoin(
            env.timer().afterDelay(CANCEL_TIMEOUT)));
      }
    }
    setOutcome(kj::mv(error));
    markCalleeEnded();
  }));
}

Task<void> Context::abandonedExitTask() {
  // The caller's scope was dropped from outside (its enclosing scope was cancelled): under the
  // shield keeper, the callee's task is ended as at a normal exit, so that whoever dropped the
  // scope waits for it (ShieldKeeper::collect()).
  co_await endCallee();
  endScope();
}

// ---- receiving -------------------------------------------------------------------------

void Context::deliver(capnp::List<schema::Value>::Reader items,
                      schema::ContextPeer::SendResults::Builder results,
                      kj::Promise<void>& stall) {
  // Ignored: after this side's scope, after its stream closed, while draining for the result.
  if (scopeDone || draining || localClosed || (streamOpened && !streamOpen)) return;
  TRACTOR_LOG(TRACE, "stream batch of ", items.size(), " items from ", peerId);
  setWindow(results.initWindow(), receiving);
  KJ_IF_MAYBE(e, typeRefusal) {
    boxError(results.initRefused(), *e, self);
    return;
  }
  if (items.size() > kj::max(receiving.bufferSize, MAX_BATCH_ITEMS)) {
    // No sender of this runtime makes such a batch: a hostile or broken peer, whose batch (of
    // empty items, nearly free on the wire) would cost this actor a Value per item.
    auto error = contextError(kj::str(
        "a batch of ", items.size(), " stream items from ", peerId.toString(), " is larger than "
        "any sender may make (", kj::max(receiving.bufferSize, MAX_BATCH_ITEMS), "); refused"));
    boxError(results.initRefused(), error, self);
    refuseIncoming(kj::mv(error));
    return;
  }
  // Without overruns allowed, the items that fit in the buffer are taken and the rest refused
  // (and every later batch, so that the receiver never sees a gap); with them, a full buffer
  // holds the acknowledgement back, which stalls the sender.
  size_t taken = items.size();
  if (refusing || !receiving.allowOverruns) {
    size_t room = refusing || inbox.size() >= receiving.bufferSize
                      ? 0 : receiving.bufferSize - inbox.size();
    taken = kj::min(room, items.size());
  } else if (inbox.size() >= receiving.bufferSize) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    stalledSenders.add(kj::mv(paf.fulfiller));
    stall = kj::mv(paf.promise);
  }
  auto type = incomingItemType();
  for (uint i = 0; i < taken; ++i) {
    auto accepted = acceptIncoming(PayloadKind::ITEM, type, items[i]);
    KJ_SWITCH_ONEOF(accepted) {
      KJ_CASE_ONEOF(value, Value) {
        inbox.push_back(kj::mv(value));
      }
      KJ_CASE_ONEOF(error, kj::Exception) {
        // The items before it are delivered; this one and every later one are refused.
        boxError(results.initRefused(), error, self);
        wakeReceiver();
        refuseIncoming(kj::mv(error));
        return;
      }
    }
  }
  wakeReceiver();
  if (taken < items.size()) {
    refusing = true;
    auto why = streamOpened
        ? kj::str("the receiver ", self.toString(), " does not keep up: its stream buffer of ",
                  receiving.bufferSize, " items is full")
        : kj::str("the receiver ", self.toString(), " never opened its stream and its "
                  "context buffer of ", receiving.bufferSize, " items is full");
    TRACTOR_LOG(WARNING, "stream overrun by ", peerId.toString(), ": ", why);
    auto overrun = streamOverrun(self, peerId, kj::str(why, "; ", items.size() - taken,
                                                       " items from ", peerId.toString(),
                                                       " were refused"));
    boxError(results.initRefused(), overrun, self);
    refusedPeer(kj::mv(overrun));
  }
}

void Context::peerStopped() {
  if (scopeDone) return;
  peerEnded = true;
  wakeReceiver();
}

void Context::wakeReceiver() {
  KJ_IF_MAYBE(w, inboxWaiter) {
    auto waiter = kj::mv(*w);
    inboxWaiter = nullptr;
    waiter->fulfill();
  }
}

kj::Promise<kj::Maybe<Value>> Context::receiveItem() {
  if (!streamOpen) return notOpen("receive from");
  if (localClosed) {
    // Closed by this side (maybe by another task while this one waited): the end, as when the
    // peer closed.
    if (!endReported) {
      endReported = true;
      return kj::Maybe<Value>(nullptr);
    }
    return typedError(END_OF_STREAM, "receive from a stream this side closed");
  }
  KJ_IF_MAYBE(e, typeError()) {
    return kj::cp(*e);
  }
  if (!inbox.empty()) {
    kj::Maybe<Value> item = kj::mv(inbox.front());
    inbox.pop_front();
    if (inbox.size() < receiving.bufferSize) fulfillAll(stalledSenders);
    return kj::mv(item);
  }
  KJ_IF_MAYBE(o, outcome_) {
    if (o->is<kj::Exception>()) return kj::cp(o->get<kj::Exception>());
  }
  if (peerEnded) {
    if (!endReported) {
      endReported = true;
      return kj::Maybe<Value>(nullptr);
    }
    return typedError(END_OF_STREAM, kj::str("the stream from ", peerId.toString(),
                                             " has ended"));
  }
  if (inboxWaiter != nullptr) {
    return contextError("two tasks receive from one stream at once: give each a "
                        "MsgStream::subscribe()");
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  inboxWaiter = kj::mv(paf.fulfiller);
  return paf.promise.then([this]() { return receiveItem(); });
}

// ---- sending ---------------------------------------------------------------------------

kj::Promise<void> Context::sendItem(Value item) {
  if (!streamOpen) return notOpen("send on");
  if (localClosed) return typedError(STREAM_CLOSED, "send on a stream this side closed");
  KJ_IF_MAYBE(e, sendError) {
    return kj::cp(*e);
  }
  KJ_IF_MAYBE(o, outcome_) {
    if (o->is<kj::Exception>()) return kj::cp(o->get<kj::Exception>());
  }
  if (peerEnded) {
    return typedError(END_OF_STREAM, kj::str("send after ", peerId.toString(),
                                             " ended its side of the stream"));
  }
  KJ_IF_MAYBE(e, checkOutgoing(PayloadKind::ITEM, outgoingItemType(), item)) {
    return kj::mv(*e);
  }
  outbox.push_back(guard(kj::mv(item)));
  flush();
  if (outbox.size() < SEND_QUEUE_LIMIT) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  outboxWaiters.add(kj::mv(paf.fulfiller));
  return paf.promise.then([this]() -> kj::Promise<void> {
    KJ_IF_MAYBE(e, sendError) {
      return kj::cp(*e);
    }
    return kj::READY_NOW;
  });
}

void Context::flush() {
  while (batchesInFlight < MAX_BATCHES_IN_FLIGHT && !outbox.empty() && sendError == nullptr) {
    if (peerCap == nullptr) break;
    auto& peer = KJ_ASSERT_NONNULL(peerCap);
    size_t limit = peerReceiving.allowOverruns ? MAX_BATCH_ITEMS
                                               : kj::max(1u, peerReceiving.bufferSize / 2);
    size_t count = 0;
    uint64_t words = 0;
    while (count < outbox.size() && count < limit && words < MAX_BATCH_WORDS) {
      words += outbox[count++].reader().totalSize().wordCount;
    }
    TRACTOR_LOG(TRACE, "stream batch of ", count, " items to ", peerId);
    auto request = peer.sendRequest(capnp::MessageSize{words + count * 4 + 16, 0});
    auto items = request.initItems(count);
    for (uint i = 0; i < count; i++) items.setWithCaveats(i, outbox[i].reader());
    outbox.erase(outbox.begin(), outbox.begin() + count);
    ++batchesInFlight;
    tasks.add(request.send().then(
        [this](capnp::Response<schema::ContextPeer::SendResults>&& response) {
          --batchesInFlight;
          if (response.hasRefused()) {
            // An overrun or a MsgTypeError: this side learns it wherever it waits.
            peerRefused(unboxError(response.getRefused()));
          } else if (response.hasWindow()) {
            peerReceiving = windowOptions(response.getWindow());
          }
          flush();
          fulfillAll(outboxWaiters);
        },
        [this](kj::Exception&& e) {
          --batchesInFlight;
          if (sendError == nullptr) sendError = transportError(e, peerId);
          fulfillAll(outboxWaiters);
        }));
  }
  fulfillAll(outboxWaiters);
}

Task<void> Context::closeStream() {
  if (localClosed) co_return;
  localClosed = true;
  // A task of this actor waiting in `receive()` meets the end.
  wakeReceiver();
  if (oneWayConsumer) {
    // A one-way stream's consumer leaving early: the producer is cancelled (and the
    // cancellation, asked for here, absorbed at the scope's exit).
    if (!peerEnded) co_await cancel();
    co_return;
  }
  while ((!outbox.empty() || batchesInFlight > 0) && sendError == nullptr && peerCap != nullptr) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    outboxWaiters.add(kj::mv(paf.fulfiller));
    co_await kj::mv(paf.promise);
  }
  KJ_IF_MAYBE(e, sendError) {
    kj::throwFatalException(kj::cp(*e));
  }
  if (outcome_ == nullptr) {
    KJ_IF_MAYBE(peer, peerCap) {
      tasks.add(peer->stopRequest().send().ignoreResult());
    }
  }
}

// =======================================================================================
// MsgStream

kj::Promise<void> MsgStream::send(Value item) { return ctx.sendItem(kj::mv(item)); }

kj::Promise<kj::Maybe<Value>> MsgStream::receive() {
  if (ownSubscription.get() != nullptr) return ownSubscription->receive();
  return ctx.receiveItem();
}

kj::Promise<void> MsgStream::close() { return ctx.closeStream(); }

bool MsgStream::closed() const { return ctx.localClosed; }

bool MsgStream::ended() const { return ctx.peerEnded; }

Context& MsgStream::context() { return ctx; }

// =======================================================================================
// The two sides' runners

namespace {

kj::Promise<kj::Maybe<kj::Exception>> errorOf(kj::Promise<void> promise) {
  return promise.then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                      [](kj::Exception&& e) -> kj::Maybe<kj::Exception> { return kj::mv(e); });
}

}  // namespace

Task<void> runCallerBody(Context& c, kj::Function<kj::Promise<void>(Context&, Value)>& block) {
  kj::Maybe<Value> started;
  auto startError = co_await errorOf(
      c.whenStarted().then([&started](Value&& value) { started = kj::mv(value); }));
  KJ_IF_MAYBE(e, startError) {
    // The dialogue ended before the block could run (the callee failed first, this side refused
    // its first value): the same exit, with nothing to interrupt.
    co_await c.exitScope(kj::mv(*e));
    co_return;
  }
  Value first = kj::mv(KJ_ASSERT_NONNULL(started));
  // The block runs in a cancel scope of its own, inside the context's: the dialogue's end (and a
  // refusal of its items) interrupts it wherever it awaits, a shielded section first finishing.
  auto scope = kj::refcounted<CancelScope>(*c.taskScope);
  c.blockScope = *scope;
  KJ_DEFER(c.blockScope = nullptr);
  auto abandoned = [self = c.self.clone(), peer = c.peerId.clone()]() {
    return contextCancelled(self, self, kj::str("the scope of the context with ", peer, " in ",
                                                self, " was cancelled"));
  };
  auto body = scope->run(
      [&]() {
        // The block refers to its context: an abandoned block keeps it.
        return block(c, kj::mv(first)).attach(kj::addRef(c));
      },
      kj::mv(abandoned));
  auto blockError = co_await errorOf(kj::mv(body));
  c.blockScope = nullptr;
  co_await c.exitScope(kj::mv(blockError));
}

Task<void> runCallerContext(kj::Own<Context> ctx, kj::Promise<void> call,
                            kj::Function<kj::Promise<void>(Context&, Value)> block) {
  struct Exit {
    // If the runner is destroyed before the scope's exit ran (the enclosing scope was
    // cancelled), the exit happens under the shield keeper instead: whoever dropped the scope
    // waits for it (ShieldKeeper::collect()).
    kj::Own<Context> ctx;
    ~Exit() noexcept(false) {
      if (ctx.get() == nullptr) return;
      auto& c = *ctx;
      (void)shield(kj::Promise<void>(c.abandonedExitTask()).attach(kj::mv(ctx)));
    }
  };
  auto& c = *ctx;
  TRACTOR_LOG(DEBUG, "context with ", c.peerId, " opened");
  Exit exit{kj::addRef(c)};
  // Owned by the context, so `c` outlives it. The call returns once the callee's outcome was
  // delivered; it fails when the connection is lost.
  c.call = call.then([&c]() { c.markCalleeEnded(); },
                     [&c](kj::Exception&& e) {
                       c.setOutcome(transportError(e, c.peerId));
                       c.markCalleeEnded();
                     })
               .eagerlyEvaluate(nullptr);
  auto error = co_await errorOf(runCallerBody(c, block));
  exit.ctx = nullptr;
  c.endScope();
  KJ_IF_MAYBE(e, error) {
    TRACTOR_LOG(DEBUG, "context with ", c.peerId, " closed: ", e->getDescription());
    kj::throwFatalException(kj::mv(*e));
  }
  TRACTOR_LOG(DEBUG, "context with ", c.peerId, " closed");
}

kj::Promise<void> runCalleeContext(kj::Own<Context> ctx, kj::Own<CancelScope> task,
                                   schema::ContextPeer::Client caller,
                                   kj::Function<kj::Promise<Value>(Context&)> start) {
  auto& c = *ctx;
  TRACTOR_LOG(DEBUG, "context task for ", c.peerId, " started");
  c.peerCap = caller;
  auto& scope = *task;
  c.task = kj::mv(task);
  auto abandoned = [self = c.self.clone(), peer = c.peerId.clone()]() {
    return contextCancelled(self, peer, kj::str("the context task in ", self, " was cancelled: ",
                                                "its caller ", peer, " went away"));
  };
  auto result = scope.run(
      [&]() {
        TaskScope::Enter inContext(*c.taskScope);
        // The task refers to its context: an abandoned task keeps it.
        return start(c).attach(kj::addRef(c));
      },
      kj::mv(abandoned));
  return result
      .then([start = kj::mv(start)](Value&& v) -> Context::Outcome { return kj::mv(v); },
            [](kj::Exception&& e) -> Context::Outcome { return kj::mv(e); })
      .then([ctx = kj::mv(ctx), caller = kj::mv(caller)](Context::Outcome&& outcome) mutable {
        auto request = caller.finishRequest();
        if (outcome.is<Value>()) {
          KJ_IF_MAYBE(e, ctx->checkOutgoing(PayloadKind::RESULT, slot(ctx->spec_.result),
                                            outcome.get<Value>())) {
            outcome = kj::mv(*e);
          } else {
            // Capabilities in a result outlive this scope: the actor's cancellation revokes
            // them here, the caller's scope exit at the caller.
            outcome = ctx->env.revoker().guard(kj::mv(outcome.get<Value>()));
          }
        }
        if (outcome.is<Value>()) {
          request.initOutcome().setValue(outcome.get<Value>().reader());
        } else {
          auto& e = outcome.get<kj::Exception>();
          TRACTOR_LOG(DEBUG, "context task for ", ctx->peerId.toString(), " failed: ",
                      e.getDescription());
          boxError(request.initOutcome().initError(), e, ctx->self);
        }
        TRACTOR_LOG(DEBUG, "context task for ", ctx->peerId, " ended");
        ctx->outcome_ = kj::mv(outcome);
        ctx->endScope();
        // Delivered even when the actor is being cancelled: its cancel waits for this.
        auto tooSlow = ctx->env.timer().afterDelay(FINISH_TIMEOUT).then(
            [peer = ctx->peerId.clone()]() {
              TRACTOR_LOG(WARNING, "the outcome of a context was not taken by ",
                          peer.toString(), " within ", FINISH_TIMEOUT);
            });
        auto delivered = request.send().then(
            [](capnp::Response<schema::ContextPeer::FinishResults>&& response) {
              if (response.hasRefused()) {
                TRACTOR_LOG(WARNING, "the caller refused the context's result: ",
                            unboxError(response.getRefused()).getDescription());
              }
            },
            [](kj::Exception&& e) {
              TRACTOR_LOG(DEBUG, "the outcome of a context was not delivered: ",
                          e.getDescription());
            });
        // A cancel request waiting for the task's end is answered after the outcome, on the same
        // connection: the caller has the outcome first.
        ctx->outcomeSent = true;
        fulfillAll(ctx->endWaiters);
        return shield(delivered.exclusiveJoin(kj::mv(tooSlow)));
      });
}

}  // namespace tractor
