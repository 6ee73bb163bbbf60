// Structured concurrency inside one actor: task groups (trio's nurseries and cancel scopes),
// deadlines and shielded cleanup, built on KJ promises and `tractor::Task` coroutines.
//
// Cancellation is KJ's: dropping a promise destroys the work behind it (a coroutine's frame, with
// its locals and whatever it is awaiting). A task group never destroys a task from inside that
// task's own frame or from inside its own TaskSet's callbacks: cancellation is delivered in an
// event-loop turn of its own, so a task may safely cancel the group it belongs to.
//
// A `CancelScope` is trio's cancel scope for one task, and what the actor runtime runs every task
// of a peer in (a function call, a context's two sides, a nursery's block). Cancelling it keeps
// trio's promises where plain dropping cannot:
// - A shielded section (`shield()`) holds back the cancellation of every scope it runs in: the
//   task is destroyed only once no shield is held, at its next suspension, so the code after a
//   shielded cleanup still runs (and may raise the real error it was cleaning up after).
// - Dropping the task sets cleanup off (destructors of the scopes it held hand their teardown to
//   the shield keeper): the scope waits for that cleanup before it reports the cancellation, and
//   a real error the cleanup raises is reported instead. So nothing a cancelled task started
//   outlives the scope's end, and no real error is lost because its task was cancelled.

#pragma once

#include "tractor/kj-runtime/async/coro.h"

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/function.h>
#include <kj/list.h>
#include <kj/time.h>
#include <kj/timer.h>
#include <kj/vector.h>
#include <stddef.h>
#include <type_traits>

namespace tractor {

namespace _ {  // private
template <typename Func>
class TaskGroupHolder;
template <typename T, typename Func>
class StartedTask;
class ShieldHold;
class CleanupCollector;
class CleanupWatch;
class ScopeResultBase;
struct IdleQueue;

template <typename T>
using PromisedType = typename Unpromised_<std::decay_t<T>>::Type;
// T, for a function returning kj::Promise<T> or Task<T>.

void fulfillAll(kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>& waiters);
// Wakes every waiter, in the order they came, and leaves `waiters` empty (a waiter woken may
// add itself again: it joins the next round).
}  // namespace _

class ShieldKeeper;
class CancelScope;

template <typename T>
class TaskStatus {
  // Handed to a task started with `TaskGroup::startAndWait()`: the task calls `started(value)`
  // once it is ready (trio's `task_status.started()`), which hands `value` to the starter while
  // the task goes on running in the group.
public:
  template <typename... V>
  void started(V&&... value) {
    // Once. `T` void: no argument.
    KJ_REQUIRE(!called, "TaskStatus::started() was already called");
    called = true;
    if (fulfiller->isWaiting()) fulfiller->fulfill(kj::fwd<V>(value)...);
  }
  bool startedCalled() const { return called; }

private:
  kj::Own<kj::PromiseFulfiller<T>> fulfiller;
  bool called = false;
  explicit TaskStatus(kj::Own<kj::PromiseFulfiller<T>> fulfiller)
      : fulfiller(kj::mv(fulfiller)) {}
  void failed(kj::Exception&& error) {
    if (!called && fulfiller->isWaiting()) fulfiller->reject(kj::mv(error));
  }
  template <typename, typename>
  friend class _::StartedTask;
};

class TaskGroup final: private kj::TaskSet::ErrorHandler {
  // tractor's in-actor nursery: a scope owning child tasks. Obtained only through
  // `openTaskGroup(block)`, which runs `block(group)` and completes once the block and every child
  // task have finished.
  //
  // Ownership: the group lives in heap state owned by the promise `openTaskGroup` returns; the
  // reference handed to the block is valid until that promise resolves or is dropped, which
  // outlasts the block and every child. Child tasks are owned by the group.
  //
  // Cancellation: the block and each child run in a CancelScope nested in the group's, so a
  // cancelled group (by `cancel()`, a failure, or the cancellation of the scope the group runs
  // in) treats them as trio does: each is destroyed in a later turn, once no shield is held in
  // it, and the group completes once every one has ended, with the cleanup their ends set off.
  // Dropping the group's promise destroys the block and every child at once.
  //
  // Failure: the first error (from the block, a child, or the cleanup of a cancelled one) is
  // recorded, every other task is cancelled, and the group's promise is rejected with that error
  // once everything has stopped. Errors arriving after the first one are logged and dropped.
  //
  // Not thread-safe: use a group only on the thread of the event loop that runs it.

public:
  ~TaskGroup() noexcept(false);
  KJ_DISALLOW_COPY(TaskGroup);

  void start(Task<void> task);
  void start(kj::Promise<void> task);
  // Makes `task` a child of the group; the group then owns it until it finishes. A `Task` starts
  // here, in the child's own scope (so a shield in it holds that child's cancellation back); a
  // promise started elsewhere runs in the scope it was started in. A task started after
  // `cancel()` (or after a failure) is dropped at once: a coroutine's body runs up to its first
  // suspension and no further. Starting a task in a group whose block and children have all
  // finished is a bug in the caller (KJ_REQUIRE).

  template <typename T = void, typename Func>
  kj::Promise<T> startAndWait(Func&& fn);
  // trio's `nursery.start()`: starts `fn(status)` (a callable taking `TaskStatus<T>&` and
  // returning `kj::Promise<void>` or `Task<void>`, kept alive until the task ends) as a child
  // task, and resolves with the value the task passes to `status.started()`; the task then goes
  // on in the group. If the task fails before calling `started()`, its error is raised here and
  // not by the group; if it returns without calling it, or is cancelled first, this raises
  // `tractor::TaskNotStarted`.

  void cancel();
  // Cancels the block and every child task; the group then completes normally (unless a task had
  // already failed). Like trio's `nursery.cancel_scope.cancel()`. Safe to call from the block or
  // from a child: the tasks are destroyed in a later event-loop turn, never inside the caller.
  // Calling it again does nothing.

  bool cancelCalled() const { return cancelRequested; }
  // True once `cancel()` was called or a task failed (a failure cancels the group).

  size_t size() const { return running; }
  // The number of child tasks that have not finished yet (the block is not counted).

private:
  kj::Own<CancelScope> scope;
  // The group's: the block's and every child's scope nest in it; `cancel()` cancels it.
  kj::Own<kj::PromiseFulfiller<void>> doneFulfiller;
  kj::Maybe<kj::Promise<void>> done;
  // Fulfilled when the last task finishes; `join` consumes `done`.
  kj::Maybe<kj::Exception> firstError;
  bool raised = false;
  // The group's promise delivered `firstError`; until then a group dropped with it reports it
  // (ShieldKeeper::orphaned()).
  size_t running = 0;
  size_t outstanding = 0;
  // `running` counts child tasks, `outstanding` also the block.
  bool cancelRequested = false;
  bool closed = false;
  // Set once `outstanding` dropped to zero: everything has finished and no task may start.
  kj::TaskSet tasks;
  // Last, so that it is destroyed first while the rest of the group is still intact.

  TaskGroup();

  void openBlock();
  // Counts the block as outstanding before it is called, so that children it starts
  // synchronously cannot close the group.
  kj::Promise<void> join(kj::FunctionParam<kj::Promise<void>()> block);
  // Runs the block in its scope and returns the promise for the whole group.
  void startTask(kj::FunctionParam<kj::Promise<void>()> start);
  kj::Promise<void> runInScope(kj::FunctionParam<kj::Promise<void>()> start);
  void add(kj::Promise<void> task, bool isBlock);
  void finished(bool isBlock);
  void fail(kj::Exception&& exception);
  void taskFailed(kj::Exception&& exception) override;

  template <typename Func>
  friend class _::TaskGroupHolder;
};

template <typename Func>
kj::Promise<void> openTaskGroup(Func&& block);
// Opens a task group, calls `block(group)` (a callable taking `TaskGroup&` and returning
// `kj::Promise<void>` or `Task<void>`), and returns a promise that resolves when the block and
// all child tasks have finished. The callable is moved into heap state owned by the returned
// promise and kept alive until the group is destroyed, so a capturing lambda coroutine is a safe
// block: its captures stay valid (what they refer to must outlive the group, as usual). Child
// coroutines started with `TaskGroup::start` get no such guarantee: take their parameters by
// value.
//
// The first failure (of the block or a child) cancels every other task and is raised; dropping
// the returned promise cancels everything at once (destroys the block and every child).

template <typename T>
  requires (!std::is_void_v<T>)
kj::Promise<kj::Maybe<T>> moveOnAfter(kj::Timer& timer, kj::Duration timeout,
                                      kj::Promise<T> promise);
kj::Promise<bool> moveOnAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<void> promise);
// Like trio's `move_on_after`: runs `promise` with a deadline `timeout` from now on `timer`.
// Resolves to the value (or `true` for void) if the work completes in time, or to null (`false`)
// once the deadline passes, in which case the work has been cancelled (destroyed). Errors from
// the work propagate. `timer` must outlive the returned promise. A `Task<T>` is passed as
// `toPromise(task)`; a `Task<void>` converts implicitly.

template <typename T>
kj::Promise<T> failAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<T> promise);
kj::Promise<void> failAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<void> promise);
// Like trio's `fail_after`: as `moveOnAfter`, but a missed deadline cancels the work and rejects
// the promise with an OVERLOADED kj::Exception whose description is
// "tractor::TooSlowError: deadline of <timeout> exceeded": a typed error of type
// "tractor::TooSlowError" (file `CXX_EXCEPTION_FILE`, see errors.h). See `isTooSlowError`. The
// void overload takes a `Task<void>` directly.

bool isTooSlowError(const kj::Exception& exception);
// True if `exception` is the deadline error raised by `failAfter`.

kj::Promise<void> whenIdle();
// Resolves once the event queue is otherwise empty and the thread is about to wait for I/O, as
// `kj::evalLast()` runs its function, but in the order of the calls (evalLast runs the latest
// first). What the runtime defers to that point keeps its order: writes leave in the order they
// were made, across connections, and cancellations land in the order they were asked for.

class IdleHook {
  // `whenIdle()` without a promise, for code on every message's path (a connection's write
  // buffer): `arm()` queues the hook, and `idle()` is called once the event queue is otherwise
  // empty, in the order hooks were armed. The `whenIdle()` promises armed meanwhile belong to the
  // same round and are fulfilled in their place in that order, so their continuations run right
  // after the round's hooks. Arming costs no allocation. A hook armed while a round runs waits
  // for the next idle point. Destroying a hook disarms it. A hook still armed when its event loop
  // is destroyed runs at the first idle point of the thread's next loop. Single-threaded, like the
  // event loop it runs on.
public:
  IdleHook() = default;
  ~IdleHook() noexcept(false);
  KJ_DISALLOW_COPY(IdleHook);

  void arm();
  // Queues the hook; does nothing if it is already queued. Requires an event loop on this thread.
  bool armed() const { return queue != nullptr; }

protected:
  virtual void idle() = 0;
  // Called once per `arm()`, from the event loop, never inside `arm()`. An exception thrown here
  // is logged and does not keep the hooks after it from running.

private:
  kj::ListLink<IdleHook> link;
  kj::List<IdleHook, &IdleHook::link>* queue = nullptr;
  uint64_t round = 0;
  friend struct _::IdleQueue;
};

class ShieldKeeper final: private kj::TaskSet::ErrorHandler {
  // Owns shielded work (see `shield()`) on one thread, so that it runs to completion even when
  // whoever awaited it was cancelled. Exactly one keeper may be installed per thread: the
  // constructor installs it and the destructor uninstalls it. The actor runtime creates one next
  // to its event loop and awaits `drain()` before exiting.
  //
  // Destroying a keeper cancels whatever shielded work is still pending (logged as an error),
  // and rejects pending `drain()` promises. Destroy it on the thread that created it, before the
  // event loop.

public:
  ShieldKeeper();
  ~ShieldKeeper() noexcept(false);
  KJ_DISALLOW_COPY(ShieldKeeper);

  kj::Promise<void> drain();
  // Resolves once no shielded work is pending (at once if none is). Work shielded while draining
  // is waited for too. Any number of `drain()` promises may be outstanding.

  size_t pending() const { return count; }
  // The number of shielded operations still running.

  kj::Promise<void> collect(kj::FunctionParam<void()> drop);
  // Runs `drop()` (which destroys promises: cancels work) outside any task scope, and returns a
  // promise for the cleanup that set off: it resolves once every piece of work shielded during
  // `drop()` has finished, and rejects with the first error of such work that nobody awaited any
  // more (an error of cleanup whose awaiter was among the dropped). `CancelScope` drops its task
  // this way.

  static kj::Maybe<ShieldKeeper&> tryCurrent();
  // The keeper installed on this thread, if any.

  static void orphaned(kj::Exception&& error);
  // A real error that its owner could not raise because the owner is being dropped (a task
  // group destroyed while it held a failure): goes to the cleanup collectors active now, as a
  // shielded work's error would, so that whoever dropped the owner raises it (or to the log).

private:
  size_t count = 0;
  bool destroying = false;
  kj::Vector<_::CleanupCollector*> collectors;
  // Active `collect()` calls, innermost last: work shielded now is reported to each.
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> drainers;
  kj::Own<kj::TaskSet> tasks;
  // Held by pointer so that the destructor can cancel the work while the keeper is still
  // installed and the rest of it intact.

  static ShieldKeeper& current();
  // The keeper installed on this thread; KJ_REQUIRE failure if there is none.
  void keep(kj::Promise<void> work);
  kj::Own<_::CleanupWatch> watch();
  // What a piece of shielded work reports its end and its orphaned error to: the collectors
  // active now.
  void keepAbandoned(kj::Own<CancelScope> scope);
  // Keeps an abandoned scope until its task ended (see CancelScope).
  void settle();
  void taskFailed(kj::Exception&& exception) override;

  friend kj::Promise<void> shield(kj::Promise<void> cleanup);
  template <typename T>
  friend kj::Promise<T> shield(kj::Promise<T> cleanup);
  friend class CancelScope;
};

kj::Promise<void> shield(kj::Promise<void> cleanup);
template <typename T>
kj::Promise<T> shield(kj::Promise<T> cleanup);
// Shields `cleanup` from cancellation (trio's `CancelScope(shield=True)` for cleanup code): the
// work is handed to this thread's ShieldKeeper, which runs it to completion whatever happens to
// the returned promise. Until it is done, every `CancelScope` the calling Task coroutine runs in
// holds its cancellation back (see CancelScope), so the awaiter normally gets the work's value
// or error. If the returned promise is dropped anyway (by anything but a CancelScope), the work
// continues on its own; an error from it then goes to the cleanup collector of whoever dropped
// it (`ShieldKeeper::collect()`), or is logged with KJ_LOG(ERROR) if there is none. Requires a
// ShieldKeeper on this thread (KJ_REQUIRE). A coroutine passed here must take its parameters by
// value: its caller's frame may be gone before it finishes.

class CancelScope final: public TaskScope {
  // One cancellable task: trio's cancel scope around a task, on KJ promises (see the file
  // comment). `run(start)` starts the task inside the scope, so that every Task coroutine it
  // starts runs in it; `cancel(reason)` ends it:
  //
  //     auto scope = kj::refcounted<CancelScope>();
  //     kj::Promise<Value> result = scope->run([&]() { return work(); }, abandoned);
  //     scope->cancel(contextCancelled(...));   // the result rejects with the reason
  //
  // - The task is destroyed in a later turn (never inside the code that cancels), and only once
  //   no shield is held in it or in any scope nested inside it; until then it runs on. If it ends
  //   by itself meanwhile, its own outcome is the result (the cancellation is not delivered, as
  //   in trio when no checkpoint follows).
  // - Destroying the task sets off cleanup (nested scopes' teardown under the shield keeper): the
  //   result is settled once that finished, with the first real error of the cleanup if there
  //   was one, else with the cancellation's reason.
  // - Scopes nest: a scope made while another is current is its child, and cancelling a scope
  //   cancels its children first. A scope with no task of its own (an actor's) only does that.
  // - Dropping the result promise while the task runs abandons it: the task is cancelled with
  //   the reason `abandoned()` gives, and the shield keeper keeps it until it ended; an error it
  //   then ends with goes to the cleanup collector of the drop (or the log).
  //
  // Refcounted: the owner, the result promise and the coroutine frames of the task (which inherit
  // it as their task scope) share it.
public:
  static const char KIND;
  CancelScope();
  // A child of the innermost CancelScope current now, if any.
  explicit CancelScope(TaskScope& parent);
  // Nested in `parent` (and a child of the innermost CancelScope around it).
  ~CancelScope() noexcept(false);

  template <typename Func>
  auto run(Func&& start, kj::Function<kj::Exception()> abandoned)
      -> kj::Promise<_::PromisedType<std::invoke_result_t<Func&>>>;
  // Calls `start()` inside this scope (once per scope) and returns the task's outcome (see the
  // class comment). `start` returns a `kj::Promise<T>` or a `Task<T>`.

  void cancel(kj::Exception reason);
  // Cancels the task and every nested scope. The first reason stands; later calls only cancel
  // scopes nested since.
  bool cancelCalled() const { return reason != nullptr; }
  kj::Maybe<const kj::Exception&> cancelReason() const;
  bool cancelledCaught() const { return dropped; }
  // True once the task was cut off by a cancellation, rather than ending by itself.

  kj::Promise<void> whenDone();
  // Resolves once the task ended (by itself, or cancelled and its cleanup finished); at once if
  // the scope never ran one. Never rejects.
  kj::Promise<void> whenNestedDone();
  // Resolves once the task of every scope nested in this one now has ended.
  void abortNested();
  // Destroys the task of every scope nested in this one now, at once (shields or not): for an
  // owner that is going away itself.

  kj::Maybe<CancelScope&> enclosing() const;
  // The innermost CancelScope this one is nested in.

private:
  enum class State: uint8_t { IDLE, RUNNING, CLEANING, DONE };
  // CLEANING: the task was dropped and the cleanup that set off is still running.
  State state = State::IDLE;
  bool dropped = false;
  bool abandonedTask = false;
  bool dropScheduled = false;
  kj::uint shields = 0;
  // Shields held in this scope or any nested one.
  kj::Maybe<kj::Exception> reason;
  kj::Maybe<kj::Exception> abandonedError;
  kj::Function<kj::Exception()> abandoned;
  kj::PromiseRejector* result = nullptr;
  // The fulfiller of `run()`'s promise while that promise exists (see _::ScopeResult).
  kj::Maybe<kj::Promise<void>> task;
  kj::Maybe<kj::Promise<void>> pending;
  // The scheduled drop, or the release of a finished task.
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> doneWaiters;
  kj::Maybe<CancelScope&> enclosing_;
  kj::ListLink<CancelScope> link;
  kj::List<CancelScope, &CancelScope::link> children;

  void adopt();
  void ended(kj::Maybe<const kj::Exception&> error);
  void scheduleDrop();
  void drop();
  void settle(kj::Maybe<kj::Exception> error);
  void resultDropped();
  void release();
  // A shield nested in this scope ended.
  kj::Promise<void> whenSettled();

  void rejectResult(kj::Exception&& error);

  friend class _::ShieldHold;
  friend class _::ScopeResultBase;
  friend class ShieldKeeper;
};

// =======================================================================================
// Inline implementation details

namespace _ {  // private

template <typename Func>
class TaskGroupHolder {
  // The heap state behind `openTaskGroup`: the block's callable and the group, in that order so
  // that the callable outlives the group (the block's frame may refer to the callable's
  // captures).

public:
  explicit TaskGroupHolder(Func&& func): func(kj::fwd<Func>(func)) {}

  kj::Promise<void> run() {
    group.openBlock();
    return group.join([this]() -> kj::Promise<void> { return func(group); });
  }

private:
  std::decay_t<Func> func;
  TaskGroup group;
};

kj::Exception tooSlowError(kj::Duration timeout);
// The exception `failAfter` raises.

class ShieldHold {
  // Holds back the cancellation of every CancelScope the current code runs in, while it lives.
public:
  ShieldHold();
  ~ShieldHold() noexcept(false);
  KJ_DISALLOW_COPY(ShieldHold);

private:
  kj::Vector<kj::Own<CancelScope>> held;
};

class CleanupWatch {
  // Attached to one piece of shielded work: reports its end (when destroyed) and an error nobody
  // awaited to the collectors that were active when it was shielded.
public:
  explicit CleanupWatch(kj::Vector<kj::Own<CleanupCollector>> collectors);
  ~CleanupWatch() noexcept(false);
  KJ_DISALLOW_COPY(CleanupWatch);

  void orphaned(kj::Exception&& error);
  // The work failed after its awaiter was gone.

private:
  kj::Vector<kj::Own<CleanupCollector>> collectors;
};


class ScopeResultBase {
  // The adapter behind the promise `CancelScope::run()` returns: it hands the scope its fulfiller
  // and tells it when the promise is dropped (which abandons a task still running).
public:
  ScopeResultBase(kj::PromiseRejector& fulfiller, kj::Own<CancelScope> scope);
  ~ScopeResultBase() noexcept(false);
  KJ_DISALLOW_COPY(ScopeResultBase);

private:
  kj::Own<CancelScope> scope;
};

template <typename T>
class ScopeResult final: public ScopeResultBase {
public:
  ScopeResult(kj::PromiseFulfiller<T>& fulfiller, kj::Own<CancelScope> scope)
      : ScopeResultBase(fulfiller, kj::mv(scope)) {}
};

kj::Exception notStartedError(kj::StringPtr why);
// The `tractor::TaskNotStarted` error of `startAndWait()`.

template <typename T, typename Func>
class StartedTask {
  // A task of `startAndWait()`: its callable and its status, alive until the task ends.
public:
  StartedTask(Func&& fn, kj::Own<kj::PromiseFulfiller<T>> fulfiller)
      : fn(kj::fwd<Func>(fn)), status(kj::mv(fulfiller)) {}
  ~StartedTask() noexcept(false) {
    status.failed(notStartedError("the task was cancelled before it called started()"));
  }

  kj::Promise<void> run() {
    return kj::evalNow([this]() -> kj::Promise<void> { return fn(status); })
        .then(
            [this]() -> kj::Promise<void> {
              status.failed(notStartedError("the task returned without calling started()"));
              return kj::READY_NOW;
            },
            [this](kj::Exception&& e) -> kj::Promise<void> {
              // Before `started()` the error is the starter's; after it, the group's.
              if (status.startedCalled()) return kj::mv(e);
              status.failed(kj::mv(e));
              return kj::READY_NOW;
            });
  }

private:
  std::decay_t<Func> fn;
  TaskStatus<T> status;
};

void orphanedShieldFailed(kj::Exception&& exception);
// Logs the error of shielded work whose awaiter is gone.

}  // namespace _

template <typename Func>
kj::Promise<void> openTaskGroup(Func&& block) {
  static_assert(std::is_invocable_v<std::decay_t<Func>&, TaskGroup&>,
                "openTaskGroup(block): block must be callable as block(TaskGroup&)");
  static_assert(
      std::is_convertible_v<std::invoke_result_t<std::decay_t<Func>&, TaskGroup&>,
                            kj::Promise<void>>,
      "openTaskGroup(block): block must return kj::Promise<void> or tractor::Task<void>");
  auto holder = kj::heap<_::TaskGroupHolder<Func>>(kj::fwd<Func>(block));
  auto promise = holder->run();
  return promise.attach(kj::mv(holder));
}

template <typename T, typename Func>
kj::Promise<T> TaskGroup::startAndWait(Func&& fn) {
  static_assert(std::is_convertible_v<
                    std::invoke_result_t<std::decay_t<Func>&, TaskStatus<T>&>, kj::Promise<void>>,
                "startAndWait<T>(fn): fn must be callable as fn(TaskStatus<T>&) and return "
                "kj::Promise<void> or tractor::Task<void>");
  auto paf = kj::newPromiseAndFulfiller<T>();
  auto task = kj::heap<_::StartedTask<T, Func>>(kj::fwd<Func>(fn), kj::mv(paf.fulfiller));
  auto& t = *task;
  start(t.run().attach(kj::mv(task)));
  return kj::mv(paf.promise);
}

template <typename T>
  requires (!std::is_void_v<T>)
kj::Promise<kj::Maybe<T>> moveOnAfter(kj::Timer& timer, kj::Duration timeout,
                                      kj::Promise<T> promise) {
  return promise.then([](T&& value) -> kj::Maybe<T> { return kj::mv(value); })
      .exclusiveJoin(timer.afterDelay(timeout).then([]() -> kj::Maybe<T> { return nullptr; }));
}

template <typename T>
kj::Promise<T> failAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<T> promise) {
  return promise.exclusiveJoin(timer.afterDelay(timeout).then([timeout]() -> kj::Promise<T> {
    return _::tooSlowError(timeout);
  }));
}

template <typename T>
kj::Promise<T> shield(kj::Promise<T> cleanup) {
  auto& keeper = ShieldKeeper::current();
  auto paf = kj::newPromiseAndFulfiller<T>();
  auto& fulfiller = *paf.fulfiller;
  auto watch = keeper.watch();
  auto& w = *watch;
  // The fulfiller is attached to the work, so it lives as long as the callbacks that use it. Once
  // the returned promise is dropped, fulfilling it does nothing and `isWaiting()` is false. The
  // hold is released when the work is done (the watch, which says so, after it). The value
  // callback takes nothing for T = void, the value otherwise.
  keeper.keep(cleanup.then(
      [&fulfiller](auto&&... value) { fulfiller.fulfill(kj::fwd<decltype(value)>(value)...); },
      [&fulfiller, &w](kj::Exception&& exception) {
        if (fulfiller.isWaiting()) {
          fulfiller.reject(kj::mv(exception));
        } else {
          w.orphaned(kj::mv(exception));
        }
      }).attach(kj::mv(paf.fulfiller), kj::heap<_::ShieldHold>(), kj::mv(watch)));
  return kj::mv(paf.promise);
}

template <typename Func>
auto CancelScope::run(Func&& start, kj::Function<kj::Exception()> abandonedReason)
    -> kj::Promise<_::PromisedType<std::invoke_result_t<Func&>>> {
  using T = _::PromisedType<std::invoke_result_t<Func&>>;
  KJ_REQUIRE(state == State::IDLE, "a CancelScope runs one task");
  abandoned = kj::mv(abandonedReason);
  // One node for the result and for noticing its drop (this is on every call's path).
  auto outcome = kj::newAdaptedPromise<T, _::ScopeResult<T>>(kj::addRef(*this));
  kj::Promise<T> work = nullptr;
  {
    TaskScope::Enter inScope(*this);
    work = kj::evalNow([&]() -> kj::Promise<T> { return start(); });
  }
  state = State::RUNNING;
  KJ_IF_MAYBE(r, reason) {
    // Cancelled before it began: it ends at its first suspension.
    (void)r;
    scheduleDrop();
  }
  // `result` is null once the outcome's promise is gone.
  if constexpr (std::is_void_v<T>) {
    task = work.then([this]() {
                  ended(nullptr);
                  if (result != nullptr) static_cast<kj::PromiseFulfiller<T>*>(result)->fulfill();
                },
                [this](kj::Exception&& e) {
                  ended(e);
                  rejectResult(kj::mv(e));
                })
               .eagerlyEvaluate(nullptr);
  } else {
    task = work.then([this](T&& value) {
                  ended(nullptr);
                  if (result != nullptr) {
                    static_cast<kj::PromiseFulfiller<T>*>(result)->fulfill(kj::mv(value));
                  }
                },
                [this](kj::Exception&& e) {
                  ended(e);
                  rejectResult(kj::mv(e));
                })
               .eagerlyEvaluate(nullptr);
  }
  return outcome;
}

}  // namespace tractor
