// Task groups, deadlines and shielded cleanup. See task-group.h.

#include "tractor/kj-runtime/async/task-group.h"

#include <kj/debug.h>

namespace tractor {

namespace {

constexpr char TOO_SLOW_PREFIX[] = "tractor::TooSlowError: ";
// How the description of the exception raised by `failAfter` starts: the type name `TOO_SLOW` of
// errors.h, then the separator of typed errors.

thread_local ShieldKeeper* threadKeeper = nullptr;
// The ShieldKeeper installed on this thread, if any.

}  // namespace

void _::fulfillAll(kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>& waiters) {
  auto waiting = kj::mv(waiters);
  for (auto& w: waiting) w->fulfill();
}

// =======================================================================================
// TaskGroup

namespace {

constexpr char GROUP_CANCELLED[] = "tractor::TaskGroupCancelled: the task group was cancelled";

kj::Exception groupCancelled() {
  return kj::Exception(kj::Exception::Type::FAILED, CXX_EXCEPTION_FILE, 0,
                       kj::str(GROUP_CANCELLED));
}

kj::Function<kj::Exception()> groupDropped() {
  return []() {
    return kj::Exception(kj::Exception::Type::FAILED, CXX_EXCEPTION_FILE, 0,
                         kj::str("tractor::TaskGroupCancelled: the task group was dropped"));
  };
}

}  // namespace

TaskGroup::TaskGroup(): scope(kj::refcounted<CancelScope>()), tasks(*this) {
  auto donePaf = kj::newPromiseAndFulfiller<void>();
  doneFulfiller = kj::mv(donePaf.fulfiller);
  done = kj::mv(donePaf.promise);
}

TaskGroup::~TaskGroup() noexcept(false) {
  // Dropped: the block and every child go now, before what their frames refer to (the block's
  // captures) does. A destructor running in one of them may still call `start()`; such a task
  // is dropped too.
  cancelRequested = true;
  scope->abortNested();
  // Dropped while it held a failure it was about to raise: no real error is lost.
  KJ_IF_MAYBE(e, firstError) {
    if (!raised) ShieldKeeper::orphaned(kj::mv(*e));
  }
}

void TaskGroup::start(Task<void> task) {
  startTask([&]() -> kj::Promise<void> { return kj::mv(task); });
}

void TaskGroup::start(kj::Promise<void> task) {
  startTask([&]() { return kj::mv(task); });
}

void TaskGroup::startTask(kj::FunctionParam<kj::Promise<void>()> start) {
  KJ_REQUIRE(!closed, "TaskGroup::start(): the group has finished; no task can be started in it");
  if (cancelRequested) {
    // Dropped on return: the group is cancelled, so the task would be cancelled anyway.
    kj::Promise<void> dropped = start();
    return;
  }
  ++running;
  ++outstanding;
  add(runInScope(start), false);
}

kj::Promise<void> TaskGroup::runInScope(kj::FunctionParam<kj::Promise<void>()> start) {
  auto task = kj::refcounted<CancelScope>(static_cast<TaskScope&>(*scope));
  return task->run([&]() { return start(); }, groupDropped());
}

void TaskGroup::cancel() {
  if (cancelRequested) return;
  cancelRequested = true;
  // Only schedules: the tasks are dropped in later turns, so that a task calling `cancel()` is
  // never destroyed while it runs.
  scope->cancel(groupCancelled());
}

void TaskGroup::openBlock() {
  ++outstanding;
}

kj::Promise<void> TaskGroup::join(kj::FunctionParam<kj::Promise<void>()> block) {
  add(runInScope(block), true);
  auto result = kj::mv(KJ_ASSERT_NONNULL(done, "TaskGroup::join() called twice"));
  done = nullptr;
  return result.then([this]() -> kj::Promise<void> {
    raised = true;
    KJ_IF_MAYBE(exception, firstError) {
      return kj::mv(*exception);
    }
    return kj::READY_NOW;
  });
}

void TaskGroup::add(kj::Promise<void> task, bool isBlock) {
  // A task cut off by the group's cancellation ends with its reason, which is no failure; a real
  // error of the cleanup its end set off is. The callbacks run inside the TaskSet's event: they
  // only record state and arm events, never destroy anything.
  tasks.add(task.then([this, isBlock]() { finished(isBlock); },
                      [this, isBlock](kj::Exception&& exception) {
                        if (exception.getDescription() != GROUP_CANCELLED) {
                          fail(kj::mv(exception));
                        }
                        finished(isBlock);
                      }));
}

void TaskGroup::finished(bool isBlock) {
  if (!isBlock) {
    KJ_ASSERT(running > 0);
    --running;
  }
  KJ_ASSERT(outstanding > 0);
  if (--outstanding == 0) {
    closed = true;
    doneFulfiller->fulfill();
  }
}

void TaskGroup::fail(kj::Exception&& exception) {
  if (firstError == nullptr) {
    firstError = kj::mv(exception);
    cancel();
  } else {
    KJ_LOG(ERROR, "task group: a task failed after the group had already failed; dropped",
           exception);
  }
}

void TaskGroup::taskFailed(kj::Exception&& exception) {
  // The callbacks in `add` catch every task's error, so this is an error raised while a finished
  // task was being destroyed (a throwing destructor).
  fail(kj::mv(exception));
}

// =======================================================================================
// Deadlines

kj::Promise<bool> moveOnAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<void> promise) {
  return promise.then([]() { return true; })
      .exclusiveJoin(timer.afterDelay(timeout).then([]() { return false; }));
}

kj::Promise<void> failAfter(kj::Timer& timer, kj::Duration timeout, kj::Promise<void> promise) {
  return failAfter<void>(timer, timeout, kj::mv(promise));
}

struct _::IdleQueue {
  // This thread's armed hooks, in the order they were armed. Each idle point serves one round:
  // the hooks armed before it began (a hook armed meanwhile has the next round's number).
  kj::List<IdleHook, &IdleHook::link> hooks;
  uint64_t round = 1;
  bool scheduled = false;
  // An evalLast is queued to run the current round.

  static IdleQueue& current() {
    static thread_local IdleQueue queue;
    return queue;
  }

  void add(IdleHook& hook) {
    hook.round = round;
    hook.queue = &hooks;
    hooks.add(hook);
    if (scheduled) return;
    scheduled = true;
    // Detached: a loop destroyed before it runs only clears `scheduled` (the hooks stay queued
    // for the next loop of this thread).
    kj::evalLast([this, r = round]() { run(r); })
        .attach(kj::defer([this, r = round]() {
          if (round == r) scheduled = false;
        }))
        .detach([](kj::Exception&& e) { KJ_LOG(ERROR, "idle hooks failed", e); });
  }

  void run(uint64_t r) {
    scheduled = false;
    round = r + 1;
    while (!hooks.empty() && hooks.front().round <= r) {
      auto& hook = hooks.front();
      remove(hook);
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { hook.idle(); })) {
        KJ_LOG(ERROR, "an idle hook failed", *e);
      }
    }
  }

  void remove(IdleHook& hook) {
    hooks.remove(hook);
    hook.queue = nullptr;
  }
};

IdleHook::~IdleHook() noexcept(false) {
  if (queue != nullptr) _::IdleQueue::current().remove(*this);
}

void IdleHook::arm() {
  if (queue == nullptr) _::IdleQueue::current().add(*this);
}

namespace {

class IdleWaiter final: public IdleHook {
  // The adapter behind `whenIdle()`'s promise.
public:
  explicit IdleWaiter(kj::PromiseFulfiller<void>& fulfiller): fulfiller(fulfiller) { arm(); }

private:
  kj::PromiseFulfiller<void>& fulfiller;
  void idle() override { fulfiller.fulfill(); }
};

}  // namespace

kj::Promise<void> whenIdle() { return kj::newAdaptedPromise<void, IdleWaiter>(); }

bool isTooSlowError(const kj::Exception& exception) {
  return exception.getType() == kj::Exception::Type::OVERLOADED &&
         kj::StringPtr(exception.getFile()) == CXX_EXCEPTION_FILE &&
         exception.getDescription().startsWith(TOO_SLOW_PREFIX);
}

kj::Exception _::tooSlowError(kj::Duration timeout) {
  // A typed error (file CXX_EXCEPTION_FILE, "<type>: <message>"), as errors.h describes them, so
  // that its type name survives boxing.
  return kj::Exception(kj::Exception::Type::OVERLOADED, CXX_EXCEPTION_FILE, 0,
                       kj::str(TOO_SLOW_PREFIX, "deadline of ", timeout, " exceeded"));
}

kj::Exception _::notStartedError(kj::StringPtr why) {
  return kj::Exception(kj::Exception::Type::FAILED, CXX_EXCEPTION_FILE, 0,
                       kj::str("tractor::TaskNotStarted: ", why));
}

// =======================================================================================
// Cleanup collection and cancel scopes

class _::CleanupCollector final: public kj::Refcounted {
  // One `ShieldKeeper::collect()`: counts the shielded work that began during its drop.
public:
  size_t pending = 0;
  bool closed = false;
  // The drop is over: no more work joins.
  kj::Maybe<kj::Exception> firstError;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> fulfiller;

  void settleIfDone() {
    if (!closed || pending > 0) return;
    KJ_IF_MAYBE(f, fulfiller) {
      KJ_IF_MAYBE(e, firstError) {
        (*f)->reject(kj::cp(*e));
      } else {
        (*f)->fulfill();
      }
      fulfiller = nullptr;
    }
  }
};

_::CleanupWatch::CleanupWatch(kj::Vector<kj::Own<CleanupCollector>> collectors)
    : collectors(kj::mv(collectors)) {
  for (auto& c: this->collectors) ++c->pending;
}

_::CleanupWatch::~CleanupWatch() noexcept(false) {
  for (auto& c: collectors) {
    --c->pending;
    c->settleIfDone();
  }
}

void _::CleanupWatch::orphaned(kj::Exception&& error) {
  if (collectors.empty()) {
    orphanedShieldFailed(kj::mv(error));
    return;
  }
  for (auto& c: collectors) {
    if (c->firstError == nullptr) c->firstError = kj::cp(error);
  }
}

_::ShieldHold::ShieldHold() {
  kj::Maybe<TaskScope&> scope = TaskScope::current();
  while (scope != nullptr) {
    auto& s = KJ_ASSERT_NONNULL(scope);
    if (s.kind() == &CancelScope::KIND) {
      auto& cancelScope = static_cast<CancelScope&>(s);
      ++cancelScope.shields;
      held.add(kj::addRef(cancelScope));
    }
    scope = s.parent();
  }
}

_::ShieldHold::~ShieldHold() noexcept(false) {
  for (auto& scope: held) scope->release();
}

const char CancelScope::KIND = 0;

CancelScope::CancelScope(): TaskScope(&KIND) { adopt(); }

CancelScope::CancelScope(TaskScope& parent): TaskScope(&KIND, parent) { adopt(); }

CancelScope::~CancelScope() noexcept(false) {
  KJ_IF_MAYBE(e, enclosing_) {
    if (link.isLinked()) e->children.remove(*this);
  }
}

void CancelScope::adopt() {
  kj::Maybe<TaskScope&> scope = parent();
  while (scope != nullptr) {
    auto& s = KJ_ASSERT_NONNULL(scope);
    if (s.kind() == &KIND) {
      auto& e = static_cast<CancelScope&>(s);
      enclosing_ = e;
      e.children.add(*this);
      // Made inside a scope that is being cancelled: cancelled too.
      KJ_IF_MAYBE(r, e.reason) {
        reason = kj::cp(*r);
      }
      return;
    }
    scope = s.parent();
  }
}

kj::Maybe<CancelScope&> CancelScope::enclosing() const {
  KJ_IF_MAYBE(e, enclosing_) {
    return *e;
  }
  return nullptr;
}

kj::Maybe<const kj::Exception&> CancelScope::cancelReason() const {
  KJ_IF_MAYBE(r, reason) {
    return *r;
  }
  return nullptr;
}

void CancelScope::cancel(kj::Exception why) {
  if (reason == nullptr) reason = kj::mv(why);
  auto& r = KJ_ASSERT_NONNULL(reason);
  for (auto& child: children) child.cancel(kj::cp(r));
  if (state == State::RUNNING && shields == 0) scheduleDrop();
}

void CancelScope::scheduleDrop() {
  if (dropScheduled || state != State::RUNNING) return;
  dropScheduled = true;
  // Never inside the code that cancels. A task nobody awaits goes in the next turn (a dropped
  // call is cancelled before the next call on its connection is served). Otherwise once nothing
  // else is ready to run (whenIdle(), in the order cancellations were asked for): whatever the
  // task's code set off meanwhile (an error on its way out through several awaits and exits, a
  // sibling's result) gets there first, and the task is cut off only where it waits for
  // something from outside. Detached, holding the scope: the drop replaces `pending`, which must
  // not be the promise running it.
  auto turn = abandonedTask ? kj::evalLater([]() {}) : whenIdle();
  turn.then([self = kj::addRef(*this)]() mutable { self->drop(); })
      .detach([](kj::Exception&& e) { KJ_LOG(ERROR, "cancel scope: drop failed", e); });
}

void CancelScope::drop() {
  dropScheduled = false;
  if (state != State::RUNNING || shields > 0) return;  // ended meanwhile, or shielded again
  // The task's frames hold this scope too: keep it alive while they are destroyed.
  auto self = kj::addRef(*this);
  dropped = true;
  state = State::CLEANING;
  kj::Promise<void> cleanup = nullptr;
  KJ_IF_MAYBE(keeper, ShieldKeeper::tryCurrent()) {
    cleanup = keeper->collect([this]() { task = nullptr; });
  } else {
    task = nullptr;
    cleanup = kj::READY_NOW;
  }
  pending = cleanup
                .then([this]() { settle(nullptr); },
                      [this](kj::Exception&& e) { settle(kj::mv(e)); })
                .eagerlyEvaluate(nullptr);
}

void CancelScope::settle(kj::Maybe<kj::Exception> cleanupError) {
  // The dropped task's cleanup is over: report the first real error it raised, else the reason.
  state = State::DONE;
  KJ_IF_MAYBE(e, cleanupError) {
    if (abandonedTask) abandonedError = kj::cp(*e);
    rejectResult(kj::mv(*e));
  } else {
    rejectResult(kj::cp(KJ_ASSERT_NONNULL(reason)));
  }
  _::fulfillAll(doneWaiters);
}

void CancelScope::ended(kj::Maybe<const kj::Exception&> error) {
  // The task ended by itself (called from its own continuation).
  state = State::DONE;
  KJ_IF_MAYBE(e, error) {
    bool isReason = false;
    KJ_IF_MAYBE(r, reason) {
      isReason = r->getDescription() == e->getDescription();
    }
    if (abandonedTask && !isReason) abandonedError = kj::cp(*e);
  }
  // The task's promise (and its frames, which hold this scope) is released when the result is
  // (resultDropped()), never from inside its own continuation.
  _::fulfillAll(doneWaiters);
}

void CancelScope::rejectResult(kj::Exception&& error) {
  if (result != nullptr && result->isWaiting()) result->reject(kj::mv(error));
}

void CancelScope::release() {
  KJ_ASSERT(shields > 0);
  if (--shields == 0 && reason != nullptr) scheduleDrop();
}

void CancelScope::resultDropped() {
  // Nobody awaits the task any more. If it ended, what is left of it goes (outside its own
  // callbacks: the result is dropped by its consumer). If it still runs it is abandoned:
  // cancelled, and kept by the shield keeper until it ended.
  if (state == State::DONE) {
    task = nullptr;
    return;
  }
  if ((state != State::RUNNING && state != State::CLEANING) || abandonedTask) return;
  abandonedTask = true;
  cancel(abandoned());
  KJ_IF_MAYBE(keeper, ShieldKeeper::tryCurrent()) {
    keeper->keepAbandoned(kj::addRef(*this));
  }
}

kj::Promise<void> CancelScope::whenDone() {
  if (state != State::RUNNING && state != State::CLEANING) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  doneWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<void> CancelScope::whenNestedDone() {
  kj::Vector<kj::Promise<void>> all;
  for (auto& child: children) all.add(child.whenDone().attach(kj::addRef(child)));
  return kj::joinPromises(all.releaseAsArray());
}

void CancelScope::abortNested() {
  for (auto& child: children) {
    child.abortNested();
    if (child.state == State::RUNNING) {
      auto self = kj::addRef(child);
      child.state = State::DONE;
      child.dropped = true;
      child.task = nullptr;
      if (child.result != nullptr) {
        child.rejectResult(child.reason == nullptr ? child.abandoned()
                                                   : kj::cp(KJ_ASSERT_NONNULL(child.reason)));
      }
      _::fulfillAll(child.doneWaiters);
    }
  }
}

_::ScopeResultBase::ScopeResultBase(kj::PromiseRejector& fulfiller, kj::Own<CancelScope> scope)
    : scope(kj::mv(scope)) {
  this->scope->result = &fulfiller;
}

_::ScopeResultBase::~ScopeResultBase() noexcept(false) {
  scope->result = nullptr;
  scope->resultDropped();
}

kj::Promise<void> CancelScope::whenSettled() {
  return whenDone().then([this]() -> kj::Promise<void> {
    KJ_IF_MAYBE(e, abandonedError) {
      return kj::cp(*e);
    }
    return kj::READY_NOW;
  });
}

// =======================================================================================
// Shielded cleanup

ShieldKeeper::ShieldKeeper()
    : tasks(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {
  KJ_REQUIRE(threadKeeper == nullptr, "a ShieldKeeper is already installed on this thread");
  threadKeeper = this;
}

ShieldKeeper::~ShieldKeeper() noexcept(false) {
  KJ_DEFER(threadKeeper = nullptr);
  destroying = true;
  if (count > 0) {
    KJ_LOG(ERROR, "ShieldKeeper destroyed while shielded work was still running; cancelling it",
           count);
  }
  auto waiting = kj::mv(drainers);
  for (auto& drainer: waiting) {
    drainer->reject(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                  kj::str("ShieldKeeper destroyed before its shielded work "
                                          "finished")));
  }
  // Still installed while the work is cancelled, so that a `shield()` from a destructor in it
  // finds this keeper (and is refused with a log) instead of failing a KJ_REQUIRE.
  tasks = nullptr;
}

kj::Promise<void> ShieldKeeper::drain() {
  if (count == 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  drainers.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Maybe<ShieldKeeper&> ShieldKeeper::tryCurrent() {
  if (threadKeeper == nullptr) return nullptr;
  return *threadKeeper;
}

void ShieldKeeper::orphaned(kj::Exception&& error) {
  KJ_IF_MAYBE(keeper, tryCurrent()) {
    keeper->watch()->orphaned(kj::mv(error));
  } else {
    _::orphanedShieldFailed(kj::mv(error));
  }
}

kj::Own<_::CleanupWatch> ShieldKeeper::watch() {
  kj::Vector<kj::Own<_::CleanupCollector>> active;
  for (auto c: collectors) active.add(kj::addRef(*c));
  return kj::heap<_::CleanupWatch>(kj::mv(active));
}

kj::Promise<void> ShieldKeeper::collect(kj::FunctionParam<void()> drop) {
  auto collector = kj::refcounted<_::CleanupCollector>();
  collectors.add(collector.get());
  {
    // Outside every task scope: cleanup set off here holds back no cancellation of its own.
    TaskScope* saved = _::currentTaskScope;
    _::currentTaskScope = nullptr;
    KJ_DEFER({
      _::currentTaskScope = saved;
      collectors.removeLast();
    });
    drop();
  }
  collector->closed = true;
  if (collector->pending == 0) {
    KJ_IF_MAYBE(e, collector->firstError) {
      return kj::mv(*e);
    }
    return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  collector->fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.attach(kj::mv(collector));
}

void ShieldKeeper::keepAbandoned(kj::Own<CancelScope> scope) {
  auto w = watch();
  auto& watcher = *w;
  auto& s = *scope;
  keep(s.whenSettled()
           .catch_([&watcher](kj::Exception&& e) { watcher.orphaned(kj::mv(e)); })
           .attach(kj::mv(w), kj::defer([scope = kj::mv(scope)]() mutable {
                     // What is left of the task goes (all of it, if the keeper goes away while
                     // it still runs).
                     scope->task = nullptr;
                   })));
}

ShieldKeeper& ShieldKeeper::current() {
  KJ_REQUIRE(threadKeeper != nullptr,
             "shield() needs a ShieldKeeper installed on this thread (the actor runtime creates "
             "one next to its event loop)");
  return *threadKeeper;
}

void ShieldKeeper::keep(kj::Promise<void> work) {
  if (destroying) {
    KJ_LOG(ERROR, "shield() called while the ShieldKeeper is being destroyed; work cancelled");
    return;
  }
  ++count;
  // `settle` runs when the work's promise is destroyed: when it finished, or when the keeper is
  // destroyed with it still pending.
  tasks->add(work.attach(kj::defer([this]() { settle(); })));
}

void ShieldKeeper::settle() {
  KJ_ASSERT(count > 0);
  if (--count == 0 && !destroying) {
    auto waiting = kj::mv(drainers);
    for (auto& drainer: waiting) {
      drainer->fulfill();
    }
  }
}

void ShieldKeeper::taskFailed(kj::Exception&& exception) {
  // `shield()` routes every error of the work to its awaiter or to `orphanedShieldFailed`, so
  // only an error raised while destroying finished work ends up here.
  KJ_LOG(ERROR, "shielded work failed while being destroyed", exception);
}

void _::orphanedShieldFailed(kj::Exception&& exception) {
  KJ_LOG(ERROR, "shielded work failed after its awaiter was cancelled", exception);
}

kj::Promise<void> shield(kj::Promise<void> cleanup) { return shield<void>(kj::mv(cleanup)); }

}  // namespace tractor
