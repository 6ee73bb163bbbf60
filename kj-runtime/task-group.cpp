// Task groups, deadlines and shielded cleanup. See task-group.h.

#include "kj-runtime/task-group.h"

namespace tractor {

namespace {

constexpr char TOO_SLOW_PREFIX[] = "TooSlowError: ";
// How the description of the exception raised by `failAfter` starts: the type name `TOO_SLOW` of
// errors.h, then the separator of typed errors.

thread_local ShieldKeeper* threadKeeper = nullptr;
// The ShieldKeeper installed on this thread, if any.

}  // namespace

// =======================================================================================
// TaskGroup

TaskGroup::TaskGroup(): cancelled(nullptr), tasks(*this) {
  auto cancelPaf = kj::newPromiseAndFulfiller<void>();
  cancelFulfiller = kj::mv(cancelPaf.fulfiller);
  cancelled = cancelPaf.promise.fork();
  auto donePaf = kj::newPromiseAndFulfiller<void>();
  doneFulfiller = kj::mv(donePaf.fulfiller);
  done = kj::mv(donePaf.promise);
}

TaskGroup::~TaskGroup() noexcept(false) {
  // The members are destroyed next, `tasks` first: the block and every child are dropped. A
  // destructor running in one of them may still call `start()`; such a task is dropped too.
  cancelRequested = true;
}

void TaskGroup::start(kj::Promise<void> task) {
  KJ_REQUIRE(!closed, "TaskGroup::start(): the group has finished; no task can be started in it");
  if (cancelRequested) {
    // Dropped on return: the group is cancelled, so the task would be cancelled anyway.
    return;
  }
  ++running;
  ++outstanding;
  add(kj::mv(task), false);
}

void TaskGroup::cancel() {
  if (cancelRequested) return;
  cancelRequested = true;
  // Only arms events: the tasks are dropped in later turns, when their branches of `cancelled`
  // fire, so that a task calling `cancel()` is never destroyed while it runs.
  cancelFulfiller->fulfill();
}

void TaskGroup::openBlock() {
  ++outstanding;
}

kj::Promise<void> TaskGroup::join(kj::Promise<void> block) {
  add(kj::mv(block), true);
  auto result = kj::mv(KJ_ASSERT_NONNULL(done, "TaskGroup::join() called twice"));
  done = nullptr;
  return result.then([this]() -> kj::Promise<void> {
    KJ_IF_MAYBE(exception, firstError) {
      return kj::mv(*exception);
    }
    return kj::READY_NOW;
  });
}

void TaskGroup::add(kj::Promise<void> task, bool isBlock) {
  // A task cancelled by the group resolves normally: exclusiveJoin drops it when the branch of
  // `cancelled` wins. The callbacks run inside the TaskSet's event: they only record state and
  // arm events, never destroy anything.
  tasks.add(task.exclusiveJoin(cancelled.addBranch())
                .then([this, isBlock]() { finished(isBlock); },
                      [this, isBlock](kj::Exception&& exception) {
                        fail(kj::mv(exception));
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

kj::Promise<void> shield(kj::Promise<void> cleanup) {
  auto& keeper = ShieldKeeper::current();
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto& fulfiller = *paf.fulfiller;
  // As in the template in the header: the fulfiller lives as long as the callbacks using it.
  keeper.keep(cleanup.then(
      [&fulfiller]() { fulfiller.fulfill(); },
      [&fulfiller](kj::Exception&& exception) {
        if (fulfiller.isWaiting()) {
          fulfiller.reject(kj::mv(exception));
        } else {
          _::orphanedShieldFailed(kj::mv(exception));
        }
      }).attach(kj::mv(paf.fulfiller)));
  return kj::mv(paf.promise);
}

}  // namespace tractor
