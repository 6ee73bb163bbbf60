// The actor nursery: a scope that owns child processes (tractor's `open_nursery()`).
//
//     co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
//       tractor::Portal worker = co_await n.startActor("worker", tractor::enable("math"));
//       int64_t sum = co_await worker.run(add, 1, 2);
//       tractor::Portal job = co_await n.runInActor(crunch, 1000);
//     });   // waits for `job`'s result, then cancels `worker`; every child is reaped
//
// Supervision is one-cancels-all. A failure is a `runInActor` child's main task failing, a child
// exiting without being asked to, or the block failing. Outcome rules (tests/nursery-test.cpp and
// tests/scenarios-test.cpp check each):
// - One failure raises that error; several raise one `tractor::ErrorGroup` holding each
//   (`ErrorGroup::from()` gives its members), the block's own error first. The block raising a
//   child's error again (from `waitForResult()`) is that one failure, not two.
// - The first failure cancels the block at once (a shielded section in it first finishes) and no
//   further child can be spawned: one-cancels-all is eager, as in trio.
// - No real error is lost: after a child's failure, every `runInActor` child still running has
//   FAILURE_GRACE to end on its own, and each failure among them joins the group; then every
//   child is cancelled. A child's failure counts whether it came before that teardown or during
//   it (its answer to the cancel request is its error). The block's own error, or `cancel()`,
//   tears the children down at once. Cancellation-caused errors (a child's ContextCancelled
//   from the teardown, its connection closing) stay out of the group.
// - Nested trees box groups: a child whose nursery raised a group fails with a RemoteActorError
//   whose source type is ErrorGroup, and `ErrorGroup::from()` of it gives the subtree's members.
// - The nursery's state stays readable after the block through `addRef()`: `cancelCalled()`,
//   `cancelledCaught()`.
//
// Deliberate difference from tractor: tractor collects `run_in_actor` results only when its block
// ends, so a child failing early does not stop the block from spawning more; here the first
// failure stops the block at once. The consequence: children the block had not spawned yet
// cannot fail, so a block spawning children one after another that fail immediately raises the
// errors of those spawned before the first failure arrived (tractor would raise all of them).
//
// Teardown of each child climbs a ladder: a graceful cancel request (`Portal::cancelActor`), then
// closing the connection (the child exits on EOF), then SIGTERM, then SIGKILL, each step bounded
// and logged; a child that does not acknowledge the request (its loop is blocked) gets SIGTERM at
// once. The teardown is shielded: if the nursery's promise is dropped (the enclosing scope was
// cancelled), the children are still torn down and reaped by the actor's shield keeper, and the
// errors the nursery recorded are raised to whoever cancelled the enclosing scope.

#pragma once

#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/refcount.h>
#include <kj/vector.h>
#include "tractor/kj-runtime/actor/actor.h"
#include "tractor/kj-runtime/actor/portal.h"

namespace tractor {

constexpr kj::Duration EXIT_TIMEOUT = 1 * kj::SECONDS;
// How long a child has to exit after its connection was closed, before SIGTERM.
constexpr kj::Duration TERM_TIMEOUT = 1600 * kj::MILLISECONDS;
// How long a child has to exit after SIGTERM, before SIGKILL.

constexpr kj::Duration FAILURE_GRACE = 1 * kj::SECONDS;
// After a child's failure, how long the `runInActor` children still running have to end on
// their own (their failures join the group) before they are cancelled.

class ActorNursery final: public kj::Refcounted {
  // Owns the child actors spawned in one `openNursery()` block. Obtained only through
  // `openNursery()`; valid until the block's promise completes, or longer through `addRef()`.
public:
  kj::Promise<Portal> startActor(kj::StringPtr name, ActorOptions options = {});
  // Spawns a daemon actor: it serves its enabled modules until cancelled (by the nursery's end,
  // `cancel()` or `Portal::cancelActor()`). Resolves once the child runs and is configured.

  template <typename R, typename... Params, typename... Args>
  kj::Promise<Portal> runInActor(R (*fn)(Params...), Args&&... args);
  // Spawns an actor (named after the function) whose main task is `fn(args...)`; the nursery
  // waits for its result at the end of the block and then cancels it. The function's module is
  // enabled in the child. `Portal::waitForResult<T>()` gives the result.
  template <typename R, typename... Params, typename... Args>
  kj::Promise<Portal> runInActor(kj::StringPtr name, ActorOptions options, R (*fn)(Params...),
                                 Args&&... args);

  kj::Promise<void> cancel(bool hardKill = false);
  // Tears down every child now, in parallel. `hardKill` skips the graceful request and kills.
  bool cancelCalled() const { return cancelCalled_; }
  // True once the nursery was cancelled: by `cancel()`, or by a failure (one-cancels-all), as
  // tractor's `cancel_called`.
  bool cancelledCaught() const { return cancelledCaught_; }
  // True once children were cancelled because of `cancel()` or a failure (rather than torn
  // down at the normal end of the scope).

  size_t childCount() const { return spawned + children.size(); }
  // The children spawned in this nursery so far (still counted after they were reaped).

  kj::Own<ActorNursery> addRef() { return kj::addRef(*this); }
  // A handle that outlives the block, to read `cancelCalled()`, `cancelledCaught()` and
  // `childCount()` once the scope has ended (tractor's tests read them after `async with`).
  // Spawning through it after the scope ended raises. Like every runtime object it belongs to
  // the actor: drop it before the actor ends (before `tractor::main()` returns).

  // private, used by openNursery()
  ActorNursery();
  ~ActorNursery() noexcept(false);
  KJ_DISALLOW_COPY(ActorNursery);
  kj::Promise<void> supervise(kj::Function<kj::Promise<void>()> block);
  void endScope();
  // The scope's promise is gone (done, or dropped because the enclosing scope was cancelled):
  // any child still running is handed, with its teardown, to the actor's shield keeper.
  struct Child;
  // One child actor (defined in nursery.cpp).

private:
  kj::Vector<kj::Own<Child>> children;
  kj::Vector<kj::Exception> errors;
  // The block's own error first, then the children's, in the order they failed.
  kj::Own<kj::PromiseFulfiller<void>> failFulfiller;
  kj::ForkedPromise<void> failed;
  kj::Own<CancelScope> blockScope;
  // The block's task: cut off at the first failure.
  kj::TimePoint failedAt = kj::origin<kj::TimePoint>();
  bool failing = false;
  // A failure happened: no child is spawned any more, and the block is cut off.
  bool immediate = false;
  // The failure was the block's own (or `cancel()`): no grace for the children.
  bool closing = false;
  // The teardown began: an exit is expected from then on, cancellations are no failures.
  bool raised = false;
  size_t spawned = 0;
  // Children already reaped and forgotten.
  bool cancelCalled_ = false;
  bool cancelledCaught_ = false;

  kj::Promise<Portal> spawn(kj::StringPtr name, ActorOptions options,
                            kj::Maybe<schema::Call::Reader> mainTask);
  kj::Promise<Portal> spawnNow(kj::StringPtr name, ActorOptions options,
                               kj::Maybe<schema::Call::Reader> mainTask);
  void childFailed(kj::Exception&& error);
  void blockFailed(kj::Exception&& error);
  void fail();
  // The first failure: cuts the block off and ends the wait for results (see FAILURE_GRACE).
  kj::Maybe<kj::Exception> outcome();
  // What the scope raises: nothing, the one error, or an ErrorGroup of all of them.
  void reportExit(Child& child);
  void reportBrokenConnection(Child& child);
  // A child whose connection broke (a malformed or oversized frame either way, a protocol
  // violation) fails with TransportClosed naming the reason, whatever its exit status.
  kj::Promise<void> teardownAll(bool hardKill);
  kj::Promise<void> collectResults();
};

template <typename Func>
kj::Promise<void> openNursery(Func&& block) {
  // Runs `block(nursery)` (returning a kj::Promise<void> or a Task<void>) and supervises the
  // children it spawns; see the file comment. The callable is kept alive until the scope ends, so
  // a capturing lambda coroutine is safe.
  auto nursery = kj::refcounted<ActorNursery>();
  auto holder = kj::heap<std::decay_t<Func>>(kj::fwd<Func>(block));
  auto& n = *nursery;
  auto& fn = *holder;
  // Destroyed after the promise chain that uses them: the callable, then the scope's end.
  auto ended = kj::defer([nursery = kj::mv(nursery)]() mutable { nursery->endScope(); });
  return n.supervise([&fn, &n]() -> kj::Promise<void> { return fn(n); })
      .attach(kj::mv(ended), kj::mv(holder));
}

// =======================================================================================
// inline implementation

template <typename R, typename... Params, typename... Args>
kj::Promise<Portal> ActorNursery::runInActor(R (*fn)(Params...), Args&&... args) {
  const FunctionInfo& info = requireExposed(fn);
  return runInActor(info.name, {}, fn, kj::fwd<Args>(args)...);
}

template <typename R, typename... Params, typename... Args>
kj::Promise<Portal> ActorNursery::runInActor(kj::StringPtr name, ActorOptions options,
                                             R (*fn)(Params...), Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of arguments");
  static_assert((_::ARGUMENT_FITS<Params, Args> && ...),
                "an argument does not convert to the function's parameter type");
  const FunctionInfo& info = requireExposed(fn);
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<schema::Call>();
  _::encodeCall(call, info.module, info.name, kj::fwd<Args>(args)...);
  return spawn(name, kj::mv(options), call.asReader());
}

}  // namespace tractor
