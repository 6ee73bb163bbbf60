// Contexts: a task in one actor and a task in another, started together, their cancellation
// linked across the process boundary, optionally streaming in both directions, ending with one
// result or one error (tractor's `Context` and `MsgStream`).
//
// The callee is a function registered with TRACTOR_CONTEXT (module.h) taking a `Context&`:
//
//     Task<int64_t> counter(tractor::Context& ctx, int64_t start) {
//       co_await ctx.started(start);
//       co_await ctx.openStream([&](tractor::MsgStream& stream) -> Task<void> {
//         for (;;) {
//           kj::Maybe<int64_t> item = co_await stream.receive<int64_t>();
//           KJ_IF_MAYBE(i, item) {
//             co_await stream.send(*i + 1);
//           } else {
//             break;  // the caller closed its side
//           }
//         }
//       });
//       co_return 42;
//     }
//     TRACTOR_CONTEXT(demo, counter);
//
// The caller opens it through a Portal; its block runs once the callee called `started()`, and
// the scope waits for the callee's outcome when the block is done:
//
//     co_await portal.openContext(counter, 1, [&](Context& ctx, Value first) -> Task<void> {
//       co_await ctx.openStream([&](MsgStream& stream) -> Task<void> { ... });
//       auto result = co_await ctx.waitForResult<int64_t>();
//     });
//
// Outcome rules (tractor's, made exact; the tests in tests/context-test.cpp and
// tests/scenarios-test.cpp are named after them):
// - The dialogue ends with the callee's result or error. An error ends it for both sides: the
//   caller's block is interrupted wherever it awaits (a `receive()` or `waitForResult()` in
//   progress raises the error itself first), whoever asked for the end.
// - A `ContextCancelled` this side asked for with `cancel()` (from any of its tasks) is absorbed
//   when the caller's scope exits; one asked for by anyone else (the callee itself, this or
//   another actor through `Portal::cancelActor()`, a third actor) is raised, and
//   `RemoteActorError::canceller` names who asked.
// - A real error from the callee is never masked by a cancellation that follows it: a callee
//   whose cancellation arrives during a shielded cleanup finishes the cleanup and ends with the
//   error it then raises.
// - When the caller's block fails on its own (also while it handles a ContextCancelled), the
//   callee is cancelled and the block's error raised: a real error of the caller's code wins
//   over every cancellation, and the context keeps the callee's own outcome.
// - A scope ends only once its callee's task has ended: after the block, the scope waits for the
//   outcome while the callee's actor answers liveness probes (a long computation is fine, a hung
//   actor is not); after a cancellation, at most CANCEL_HARD_TIMEOUT. Past either bound the
//   dialogue ends with `tractor::ActorTooSlowError` and the callee's actor is asked to cancel
//   (unless it is this actor's parent). A scope dropped from outside (its enclosing scope was
//   cancelled) ends its callee the same way, under the shield keeper, and whoever dropped it
//   waits for that: an error surfaces only after the remote tasks started under its scope ended.
// - `openStream()` after this side's `cancel()` raises a ContextCancelled naming this actor
//   (absorbed at the scope's exit); after the dialogue ended it raises the error that ended it.
// - A lost connection ends the dialogue with `tractor::TransportClosed` on the side that
//   notices, and cancels the callee's task.
//
// Deliberate differences from tractor: a context with the actor itself (`Actor::selfPortal()`,
// `findActor()` of one's own name) works like any other, where tractor refuses it ("Invalid
// Operation"); a cancellation is delivered at the task's next suspension point (every
// `co_await` is one), so a callee that ends by itself before a cancellation arrives keeps its
// own outcome.
//
// Streams have flow control: a sender keeps at most two batches of items in flight and
// coalesces what it queues meanwhile into the next batch (a lone item goes out at once); a batch
// holds at most half the receiver's buffer, so that a receiver that keeps up is never overrun,
// or, when the receiver allows overruns, up to 128 KiB. A receiver queues up to its buffer size.
// Without overruns allowed, the items of a batch that do not fit are refused with
// `tractor::StreamOverrun` naming the sender (and every later batch, so that no gap is seen):
// the refusal ends the dialogue, and the sender raises it wherever it awaits (its block or task
// is interrupted). The receiver ends the dialogue itself if the sender did not within
// REFUSAL_TIMEOUT. With overruns allowed, a full receiver holds back its acknowledgement, which
// stalls the sender. Items that arrive before the receiver opened its stream wait in the
// context's buffer under the same rule. Nothing is dropped silently. Closing a stream ends this
// side's receiving too: a task of this actor waiting in `receive()` meets the end.
//
// Payload specs (typed.h, typed-context.h): a context may declare the struct type of its
// started value, of the items in each direction and of its result. Each side checks what it
// sends (a mismatch raises MsgTypeError there and nothing is sent) and what arrives (a mismatch
// raises MsgTypeError at the receiver, is relayed to the sender, and ends the dialogue: the
// callee's task fails with it, the caller's scope raises it). `limitItems()` narrows the items
// a side accepts for a scope. Runtime messages (stop, finish errors, cancel, acknowledgements)
// are never subject to a spec.
//
// Capabilities in payloads: every capability a side sends in its started value or stream items
// is wrapped in that side's context membrane, revoked when its scope ends (callee: its task
// returned; caller: its block's scope exited); capabilities in a result are behind the callee
// actor's membrane (revoked when that actor is cancelled) and the caller's context membrane
// (revoked when the caller's scope exits). Revoked capabilities fail every call with
// `tractor::CapabilityRevoked` (or the actor's cancellation).

#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/one-of.h>
#include <kj/refcount.h>
#include <kj/time.h>
#include <deque>
#include "tractor/kj-runtime/actor/env.h"
#include "tractor/kj-runtime/actor/peer.h"
#include "tractor/kj-runtime/wire/errors.h"
#include "tractor/kj-runtime/async/log.h"
#include "tractor/kj-runtime/wire/payload.h"
#include "tractor/kj-runtime/wire/revoker.h"
#include "tractor/kj-runtime/async/task-group.h"
#include "tractor/kj-runtime/wire/typed.h"
#include "tractor/schema/actor.capnp.h"

namespace tractor {

constexpr uint DEFAULT_MSG_BUFFER_SIZE = 64;
// Items a context or stream receiver queues before a further batch overruns it (tractor's
// `Actor.msg_buffer_size`).
constexpr kj::Duration CONTEXT_CANCEL_TIMEOUT = 616 * kj::MILLISECONDS;
// How long the caller's `Context::cancel()` waits for the callee to acknowledge (its task has
// ended by then).
constexpr kj::Duration CANCEL_HARD_TIMEOUT = 5 * kj::SECONDS;
// How long a caller that asked for a cancellation waits for the callee's task to end, at most:
// a shielded cleanup may take its time (tearing down a nursery of stuck children takes up to
// 2.1 s), a task that ignores its cancellation longer is escalated.
constexpr kj::Duration REFUSAL_TIMEOUT = 616 * kj::MILLISECONDS;
// How long a receiver that refused items waits for the sender to end the dialogue before it
// ends the dialogue itself.

struct StreamOptions {
  // How the receiving side of a context or stream treats items that arrive faster than they are
  // read. Chain the setters (also inside coroutines):
  //
  //     ctx.openStream(StreamOptions().withOverruns().withBufferSize(256), block)

  bool allowOverruns = false;
  // False: a batch arriving at a full buffer is refused and the sender gets StreamOverrun.
  // True: it is queued and the sender is stalled until there is room.
  uint bufferSize = DEFAULT_MSG_BUFFER_SIZE;

  StreamOptions withOverruns(bool allow = true) && {
    allowOverruns = allow;
    return kj::mv(*this);
  }
  StreamOptions withBufferSize(uint size) && {
    bufferSize = size;
    return kj::mv(*this);
  }
};

class Context;
class MsgStream;

class PayloadLimit {
  // Narrows the stream items a context accepts to one struct type until it is destroyed
  // (tractor's `limit_plds`): an item of another type arriving meanwhile is a MsgTypeError.
  // Obtain one from `Context::limitItems()`; keep it for the scope to narrow.
public:
  PayloadLimit(PayloadLimit&& other) = default;
  ~PayloadLimit() noexcept(false);
  KJ_DISALLOW_COPY(PayloadLimit);

private:
  kj::Own<Context> ctx;
  PayloadLimit(kj::Own<Context> ctx): ctx(kj::mv(ctx)) {}
  friend class Context;
};

class Subscription {
  // One reader of a broadcast stream (tractor's `MsgStream.subscribe()`, trio's
  // `BroadcastReceiver`), created by `MsgStream::subscribe()`; keeps its context alive:
  //
  //     auto a = stream.subscribe();
  //     auto b = stream.subscribe();
  //     // two tasks: each `co_await a->receive()` / `co_await b->receive()` sees every item
  //
  // The stream's items go into a ring of the stream's buffer size shared by all subscriptions;
  // a subscription reads at its own position. Whichever subscription needs an item the ring does
  // not hold yet pulls the next one from the stream, so the fastest reader sets the pace. A
  // reader that falls more than the ring's size behind gets `tractor::Lagged` (naming how many
  // items it missed) and continues from the oldest item still held: it never misses items
  // silently. (The ring is in broadcast.cpp.)
public:
  ~Subscription() noexcept(false);
  KJ_DISALLOW_COPY(Subscription);

  kj::Promise<kj::Maybe<Value>> receive();
  template <typename T>
  kj::Promise<kj::Maybe<T>> receive();
  // The next item for this subscription; null at the end of the stream (as
  // `MsgStream::receive()`). Raises Lagged when it fell behind (see the file comment).

  kj::Promise<void> send(Value item);
  // Sends on the underlying stream.

  Subscription(kj::Badge<MsgStream>, kj::Own<Context> ctx, uint64_t position);
  // Made by `MsgStream::subscribe()`.

private:
  kj::Own<Context> ctx;
  uint64_t next;
  // The sequence number of the next item this subscription reads.
  bool endReported = false;
};

class MsgStream {
  // One side of a context's bidirectional stream; owned by its Context and valid inside the
  // `openStream()` block. Items are dynamic `Value`s; the templates convert with the payload
  // codecs.
public:
  ~MsgStream() noexcept(false);
  KJ_DISALLOW_COPY(MsgStream);

  kj::Promise<void> send(Value item);
  template <typename T>
  kj::Promise<void> send(const T& item) { return send(Value::of(item)); }
  // Queues `item` for the peer. Resolves at once unless the local send queue is full (then once
  // it drained). A refusal of an item by the peer (StreamOverrun, MsgTypeError) interrupts this
  // side wherever it is (see the file comment); a send after it raises it. Raises EndOfStream if
  // the peer ended its side (or its task), StreamClosed after `close()`, TransportClosed when
  // the connection is gone.

  kj::Promise<kj::Maybe<Value>> receive();
  template <typename T>
  kj::Promise<kj::Maybe<T>> receive();
  // The next item; null once the peer ended its side (closed its stream, or the callee's task
  // returned) or this side closed the stream (also while this receive waited); a further
  // `receive()` raises EndOfStream. Raises the callee's error (or the ContextCancelled) when its
  // task failed, after the items it sent before.

  bool ended() const;
  // True once the peer ended its side (its stream closed, or its task finished).

  kj::Promise<void> close();
  // Ends this side: a receive waiting in another task meets the end; waits until every queued
  // item was accepted by the peer (raising StreamOverrun if one was refused), then tells the
  // peer. On the consumer side of `Portal::openStreamFrom()` it ends the one-way stream early:
  // the producer is cancelled (and the cancellation absorbed). Idempotent; `openStream()` calls
  // it when its block returns.
  bool closed() const;

  kj::Own<Subscription> subscribe();
  // Broadcast: each subscription receives every item that arrives from now on, so several local
  // tasks can consume one stream. Irreversible: afterwards `receive()` also reads through a
  // subscription of its own. A subscription more than the stream's buffer size behind the
  // newest item gets Lagged (see Subscription).

  Context& context();

private:
  explicit MsgStream(Context& ctx);
  Context& ctx;
  kj::Own<Subscription> ownSubscription;
  // Null until `subscribe()` (a Maybe would need Subscription complete here).
  friend class Context;
};

class Context final: public kj::Refcounted {
  // One side of a context dialogue. The runtime owns it; user code gets a reference that is
  // valid inside the context function (callee) or the `openContext()` block (caller).
public:
  enum class Side: uint8_t { CALLER, CALLEE };

  Context(Side side, ActorEnv& env, ActorId peer, StreamOptions receiving,
          StreamOptions peerReceiving = StreamOptions(),
          kj::Maybe<TaskScope&> enclosing = nullptr);
  // Made by the runtime, for the actor `env` (whose timer bounds the dialogue's waits and whose
  // revoker guards the capabilities in its result). `receiving` applies to items from the peer; `peerReceiving` is how the
  // peer receives, as far as known. `enclosing`: the scope this side's user code runs in (the
  // callee's task), by default the one current now.
  ~Context() noexcept(false);
  KJ_DISALLOW_COPY(Context);

  Side side() const { return side_; }
  const ActorId& peer() const { return peerId; }
  // The actor on the other side.

  kj::Promise<void> started(Value value = Value());
  template <typename T>
  kj::Promise<void> started(const T& value) { return started(Value::of(value)); }
  // Callee only, exactly once: hands `value` to the caller, whose block then runs. Resolves once
  // the caller has it. A second call, or a call on the caller side, raises ContextError.

  kj::Promise<void> openStream(kj::Function<kj::Promise<void>(MsgStream&)> block);
  kj::Promise<void> openStream(StreamOptions options,
                               kj::Function<kj::Promise<void>(MsgStream&)> block);
  // Runs `block` with this side's stream, then closes it. Both sides open their stream to
  // exchange items. The callee must have called `started()` first; a stream is never reopened
  // (ContextError). After this side's `cancel()` it raises a ContextCancelled naming this
  // actor; after the dialogue ended, the error that ended it. `options` apply to items arriving
  // from the peer.

  kj::Promise<void> cancel(kj::Duration timeout = CONTEXT_CANCEL_TIMEOUT);
  // Caller side: asks the callee to cancel its task and waits (shielded, at most `timeout`) for
  // the acknowledgement, which comes once the task has ended (its shielded cleanup done) and
  // after its outcome; the dialogue then ends with a ContextCancelled that names this actor as
  // canceller, which interrupts the block wherever it awaits and which the caller's scope
  // absorbs. Callee side: cancels the callee's own task (at its next suspension point, once no
  // shield is held); the caller then raises the ContextCancelled.
  bool cancelCalled() const { return cancelCalled_; }
  // True once `cancel()` was called on this side.
  kj::Maybe<const ActorId&> canceller() const;
  // Who asked for the cancellation that ended this dialogue, if one did (known once the outcome
  // arrived).

  kj::Promise<Value> waitForResult();
  template <typename T>
  kj::Promise<T> waitForResult();
  // Caller side: the callee's result, once its task is done; stream items still arriving are
  // discarded. Raises its error, except a ContextCancelled this side asked for, which is
  // returned as a null Value (and only for `Value`).

  using Outcome = kj::OneOf<Value, kj::Exception>;
  kj::Maybe<const Outcome&> outcome() const;
  // How the dialogue ended: the callee's result or the error that ended it; null while open.

  kj::Own<Context> addRef() { return kj::addRef(*this); }
  // A handle that outlives the scope (the block's `Context&` does not), to inspect how the
  // dialogue ended: `outcome()`, `cancelCalled()`, `canceller()`, `peer()`. The scope's exit
  // always leaves an outcome. Once the scope is over, `openStream()` raises the error that
  // ended the dialogue (or ContextError if it ended with a result) and `waitForResult()`
  // returns or raises the outcome as before. Like every runtime object it belongs to the actor:
  // drop it before the actor ends.

  void setSpec(PayloadSpec spec) { spec_ = kj::mv(spec); }
  const PayloadSpec& spec() const { return spec_; }
  // The payload spec this side checks against (typed.h). Set by the runtime before the first
  // message (from the typed endpoint's declaration); the default accepts any Value.

  PayloadLimit limitItems(PayloadType type);
  template <typename T>
  PayloadLimit limitItems() { return limitItems(PayloadType::of<T>()); }
  // Narrows the items this side accepts to struct `T` while the returned guard lives, and
  // widens again when it is destroyed (on any scope exit). Only a narrowing is allowed: the
  // spec (or an enclosing limit) must accept any Value or name the same type already.

private:
  class PeerServer;
  class Broadcaster;
  // The ring a broadcast stream's subscriptions share (context-internal.h).
  friend class MsgStream;
  friend class Subscription;
  friend class PayloadLimit;
  friend Task<void> runCallerContext(kj::Own<Context> ctx, kj::Promise<void> call,
                                     kj::Function<kj::Promise<void>(Context&, Value)> block);
  friend Task<void> runCallerBody(Context& c,
                                  kj::Function<kj::Promise<void>(Context&, Value)>& block);
  friend kj::Promise<void> runCalleeContext(kj::Own<Context> ctx, kj::Own<CancelScope> task,
                                            schema::ContextPeer::Client caller,
                                            kj::Function<kj::Promise<Value>(Context&)> start);
  friend schema::ContextPeer::Client serveContext(Context& ctx);

  Side side_;
  ActorEnv& env;
  const ActorId& self;
  // This actor (env's identity, which outlives the context).
  ActorId peerId;
  kj::Maybe<schema::ContextPeer::Client> peerCap;
  // Where this side's messages go: the caller's ContextPeer (callee side), or the callee's,
  // known once `started` arrived (caller side).
  MsgStream stream;
  bool startedCalled = false;
  bool streamOpened = false;
  bool streamOpen = false;
  bool localClosed = false;
  bool scopeDone = false;
  // Set when the side's scope (caller block, callee task) is over: late messages are ignored.
  bool draining = false;
  // Caller waiting for the result: stream items are discarded.
  bool cancelCalled_ = false;
  kj::Maybe<ActorId> canceller_;
  kj::Maybe<Outcome> outcome_;

  // ---- payload specs and capabilities ------------------------------------------------------
  PayloadSpec spec_;
  kj::Vector<PayloadType> itemLimits;
  // Active `limitItems()` narrowings, innermost last.
  kj::Maybe<kj::Own<Revoker>> membrane;
  // Made when this side first sends a capability; revoked when its scope ends.

  // ---- receiving ---------------------------------------------------------------------------
  StreamOptions receiving;
  std::deque<Value> inbox;
  bool peerEnded = false;
  // The peer sent `stop` (or, seen from the caller, its task finished).
  bool endReported = false;
  bool refusing = false;
  // An overrun was answered: every later batch is refused too.
  kj::Maybe<kj::Exception> typeRefusal;
  // A payload that arrived did not match the spec (or a batch broke the protocol): every later
  // message is refused with this.
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> inboxWaiter;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> stalledSenders;
  // Acknowledgements held back while the buffer is over its size (overruns allowed).
  kj::Maybe<kj::Own<Broadcaster>> broadcaster;

  // ---- sending -----------------------------------------------------------------------------
  std::deque<Value> outbox;
  uint batchesInFlight = 0;
  StreamOptions peerReceiving;
  // How the peer receives, as it last said.
  kj::Maybe<kj::Exception> sendError;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> outboxWaiters;

  // ---- the dialogue's end ------------------------------------------------------------------
  kj::Maybe<kj::Own<kj::PromiseFulfiller<Value>>> startedWaiter;
  kj::Maybe<Value> firstValue;
  // `started` arrived before anyone waited for it.
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> outcomeWaiters;
  kj::Maybe<CancelScope&> blockScope;
  // Caller side: the block's scope while it runs; the dialogue's end interrupts it.
  kj::Maybe<kj::Own<CancelScope>> task;
  // Callee side: the task's scope; `cancel()` (from either side) ends it.
  kj::Maybe<kj::Promise<void>> call;
  // Caller side: the `openContext` call; dropping it cancels the callee's task.
  kj::Maybe<schema::Actor::Client> calleeActor;
  // Caller side: the callee's actor, for liveness probes and escalation.
  bool calleeEnded = false;
  // Caller side: the callee's task is known to be over (its outcome arrived, or the call ended).
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> calleeEndWaiters;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> endWaiters;
  // Callee side: cancel requests, answered once the task ended and its outcome was sent.
  bool outcomeSent = false;
  kj::Maybe<kj::Promise<void>> refusalTimer;
  // After this side refused the peer's items: ends the dialogue if the peer does not.

  bool oneWayConsumer = false;
  // Caller side of `Portal::openStreamFrom()`: closing the stream cancels the producer.
  kj::Own<TaskScope> taskScope;
  // Current while this side's user code runs (`currentContext()`); forgets this context when it
  // is destroyed.

  TaskErrorLog logErrors{"context message failed"};
  kj::TaskSet tasks;

  friend class Portal;

  kj::Promise<void> sendItem(Value item);
  kj::Promise<kj::Maybe<Value>> receiveItem();
  Task<void> closeStream();
  void flush();
  void wakeReceiver();

  kj::Maybe<const PayloadType&> incomingItemType() const;
  kj::Maybe<const PayloadType&> outgoingItemType() const;
  kj::Maybe<kj::Exception> checkOutgoing(PayloadKind kind, kj::Maybe<const PayloadType&> type,
                                         const Value& value) const;
  kj::OneOf<Value, kj::Exception> acceptIncoming(PayloadKind kind,
                                                 kj::Maybe<const PayloadType&> type,
                                                 ValueReader value);
  void refuseIncoming(kj::Exception error);
  kj::Maybe<const kj::Exception&> typeError() const;
  // The MsgTypeError that ended the dialogue, refused here or by the peer.
  Value guard(Value value);
  void revokeCapabilities();

  kj::Promise<Value> whenStarted();
  kj::Promise<void> whenFinished();
  void setOutcome(Outcome outcome);
  void interrupt(kj::Exception reason);
  // Ends this side's user code with `reason` wherever it awaits: the caller's block, the
  // callee's task (a shielded section first finishes).
  void peerRefused(kj::Exception error);
  // The peer refused this side's items (StreamOverrun, MsgTypeError): the dialogue is over.
  void refusedPeer(kj::Exception error);
  void markCalleeEnded();
  kj::Promise<void> whenCalleeEnded();
  // This side refused the peer's items: the peer should end the dialogue; if it does not within
  // REFUSAL_TIMEOUT, this side does.
  void peerStarted(Value value, schema::ContextPeer::Client callee,
                   schema::ReceiveWindow::Reader window);
  void deliver(capnp::List<schema::Value>::Reader items,
               schema::ContextPeer::SendResults::Builder results, kj::Promise<void>& stall);
  void peerStopped();
  void cancelTask(const ActorId& requester, kj::StringPtr who);
  void endScope();
  kj::Promise<void> whenTaskEnded();
  // Callee side: resolves once the task ended and its outcome was sent.
  bool isOwnCancel(const kj::Exception& e) const;
  bool isOutcome(const kj::Exception& e) const;
  // True when `e` is the error the dialogue ended with (a copy of it).
  Task<void> exitScope(kj::Maybe<kj::Exception> blockError);
  Task<void> endCallee();
  kj::Promise<void> shieldedEndCallee();
  // Caller side: makes sure the callee's task is over before the scope ends: asks it to cancel
  // unless it ended, then waits for its outcome (bounded).
  kj::Promise<void> awaitOutcome(bool bounded);
  // Caller side: waits for the callee's outcome while its actor answers liveness probes, and if
  // `bounded` (a cancellation was asked for) at most CANCEL_HARD_TIMEOUT; past that the
  // dialogue ends with ActorTooSlowError and the callee's actor is asked to cancel.
  Task<void> abandonedExitTask();
  // The caller's scope was dropped from outside: the same end under the shield keeper.
  kj::Exception notOpen(kj::StringPtr what) const;
  schema::ContextPeer::Client serve();
};

kj::Maybe<Context&> currentContext();
// The context the calling code runs in: inside a context function (the callee's side), inside an
// `openContext()` block (the caller's), and in every Task coroutine started from there
// (tractor's `current_ipc_ctx()`); null elsewhere. Plain `.then()` callbacks are not tracked
// (see "Task-local scope" in coro.h).

Task<void> runCallerContext(kj::Own<Context> ctx, kj::Promise<void> call,
                            kj::Function<kj::Promise<void>(Context&, Value)> block);
// The caller's side of `Portal::openContext()`: waits for `started`, runs `block`, applies the
// outcome rules. `call` is the sent `openContext` request (its completion, or its failure when
// the connection is lost).

kj::Promise<void> runCalleeContext(kj::Own<Context> ctx, kj::Own<CancelScope> task,
                                   schema::ContextPeer::Client caller,
                                   kj::Function<kj::Promise<Value>(Context&)> start);
// The callee's side: runs the task `start` begins (the context function) in `task` and delivers
// its outcome to `caller`. Dropping the promise abandons the task (it is cancelled, and ends
// under the shield keeper).

schema::ContextPeer::Client serveContext(Context& ctx);
// The capability through which the peer talks to `ctx` (passed in `openContext` / `started`).

void setWindow(schema::ReceiveWindow::Builder builder, const StreamOptions& receiving);
StreamOptions windowOptions(schema::ReceiveWindow::Reader window);
// A side's receive options on the wire, and back (an unset window means the defaults).
// The capability through which the peer talks to `ctx` (passed in `openContext` / `started`).

// =======================================================================================
// inline implementation

template <typename T>
kj::Promise<kj::Maybe<T>> MsgStream::receive() {
  return receive().then([](kj::Maybe<Value>&& item) -> kj::Maybe<T> {
    KJ_IF_MAYBE(v, item) {
      return v->as<T>();
    }
    return nullptr;
  });
}

template <typename T>
kj::Promise<T> Context::waitForResult() {
  return waitForResult().then([](Value&& v) { return v.as<T>(); });
}

template <typename T>
kj::Promise<kj::Maybe<T>> Subscription::receive() {
  return receive().then([](kj::Maybe<Value>&& item) -> kj::Maybe<T> {
    KJ_IF_MAYBE(v, item) {
      return v->as<T>();
    }
    return nullptr;
  });
}

}  // namespace tractor
