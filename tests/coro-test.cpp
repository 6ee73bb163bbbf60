// Tests of the coroutine adapter (kj-runtime/async/coro.h): the properties the rest of the runtime
// relies upon: cancellation by dropping, exception conversion, flat stacks, TaskSet use,
// forwarding with `co_return`, move-only results and lazy start.

#include "tractor/kj-runtime/async/coro.h"

#include <doctest/doctest.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <kj/vector.h>
#include <stdint.h>
#include <exception>
#include <stdexcept>
#include "tests/support/manual-time.h"

namespace tractor {
namespace {

using test::ManualTime;

class Counted {
  // Adds one to a counter when destroyed, unless it was moved from: counts how many times an
  // object (and not its moved-from shells) was destroyed.
public:
  explicit Counted(int& counter): counter(&counter) {}
  Counted(Counted&& other) noexcept: counter(other.counter) { other.counter = nullptr; }
  ~Counted() noexcept {
    if (counter != nullptr) ++*counter;
  }
  KJ_DISALLOW_COPY(Counted);

private:
  int* counter;
};

class ParseError: public std::exception {
  // A C++ exception type of the caller's own.
public:
  const char* what() const noexcept override { return "bad token"; }
};

kj::Promise<void> nextTurn() { return kj::evalLater([]() {}); }
// A promise resolving in a later event-loop turn: awaiting it suspends a coroutine once.

// ---------------------------------------------------------------------------------------------
// Coroutines under test. Reference parameters refer to test locals, which outlive every frame.

Task<void> sleepThenSet(kj::Timer& timer, bool& fired, int& destroyed) {
  Counted local(destroyed);
  co_await timer.afterDelay(10 * kj::MILLISECONDS);
  fired = true;
}

Task<void> failWithKj(bool suspendFirst) {
  if (suspendFirst) co_await nextTurn();
  KJ_FAIL_REQUIRE("kj failure");
}

Task<void> failWithRuntimeError(bool suspendFirst) {
  if (suspendFirst) co_await nextTurn();
  throw std::runtime_error("disk on fire");
}

Task<void> failWithParseError(bool suspendFirst) {
  if (suspendFirst) co_await nextTurn();
  throw ParseError();
}

Task<void> failWithInt(bool suspendFirst) {
  if (suspendFirst) co_await nextTurn();
  throw 42;
}

Task<kj::Exception> catchFailure(kj::Promise<void> work) {
  try {
    co_await kj::mv(work);
  } catch (kj::Exception& exception) {
    co_return kj::mv(exception);
  }
  co_return KJ_EXCEPTION(FAILED, "the awaited work did not fail");
}

Task<uint64_t> sumOfReadyAwaits(int count) {
  uint64_t sum = 0;
  for (int i = 0; i < count; ++i) {
    sum += co_await kj::Promise<int>(i);
    co_await kj::Promise<void>(kj::READY_NOW);
  }
  co_return sum;
}

Task<int> nestedDepth(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nestedDepth(depth - 1);
}

Task<int> nestedDepthAfterYield(int depth) {
  co_await nextTurn();
  if (depth == 0) co_return 0;
  co_return 1 + co_await nestedDepthAfterYield(depth - 1);
}

Task<void> failAfterYield(kj::String message) {
  co_await nextTurn();
  KJ_FAIL_REQUIRE("task failed", message);
}

Task<void> setAfterYield(bool& flag) {
  co_await nextTurn();
  flag = true;
}

Task<int> forwardAfterYield(kj::Promise<int> promise) {
  co_await nextTurn();
  co_return kj::mv(promise);
}

Task<int> addOneLater(int value) {
  co_await nextTurn();
  co_return value + 1;
}

Task<int> addTwoByAwaitingTasks(int value) {
  int once = co_await addOneLater(value);
  co_return co_await addOneLater(once);
}

Task<void> appendInTurns(kj::Vector<int>& log, int first) {
  log.add(first);
  co_await nextTurn();
  log.add(first + 1);
}

Task<void> appendTwice(kj::Vector<int>& log) {
  co_await appendInTurns(log, 1);
  co_await appendInTurns(log, 3);
  co_return;
}

Task<kj::Own<int>> makeOwn(int value) {
  co_await nextTurn();
  co_return kj::heap<int>(value);
}

Task<kj::String> describeOwn(kj::String prefix) {
  kj::Own<int> made = co_await makeOwn(5);
  kj::Own<int> passed = co_await kj::Promise<kj::Own<int>>(kj::heap<int>(6));
  co_return kj::str(prefix, *made, *passed);
}

Task<void> neverStarted([[maybe_unused]] Counted parameter, bool& ran) {
  ran = true;
  co_return;
}

Task<kj::String> awaitOutcome(kj::Promise<int> promise) {
  try {
    int value = co_await kj::mv(promise);
    co_return kj::str("value ", value);
  } catch (kj::Exception& exception) {
    co_return kj::str("error ", exception.getDescription());
  }
}

Task<void> innerAwait(kj::Promise<void> promise, kj::Vector<kj::StringPtr>& log) {
  auto onExit = kj::defer([&log]() { log.add("inner local"); });
  co_await kj::mv(promise);
  log.add("inner resumed");
}

Task<void> outerAwait(kj::Promise<void> promise, kj::Vector<kj::StringPtr>& log) {
  auto onExit = kj::defer([&log]() { log.add("outer local"); });
  co_await innerAwait(kj::mv(promise), log);
  log.add("outer resumed");
}

Task<void> markAroundReadyAwait(bool& before, bool& after) {
  before = true;
  co_await kj::Promise<void>(kj::READY_NOW);
  after = true;
}

Task<kj::String> recoverAndContinue(kj::Promise<void> failing) {
  kj::String caught;
  try {
    co_await kj::mv(failing);
  } catch (kj::Exception& exception) {
    caught = kj::str(exception.getDescription());
  }
  // `co_await` is not allowed inside the handler, but it is after it.
  int next = co_await addOneLater(1);
  co_return kj::str(caught, " then ", next);
}

struct RecordingErrorHandler final: public kj::TaskSet::ErrorHandler {
  kj::Vector<kj::String> errors;
  void taskFailed(kj::Exception&& exception) override {
    errors.add(kj::str(exception.getDescription()));
  }
};

template <typename MakeFailing>
void expectFailureEverywhere(MakeFailing makeFailing, kj::StringPtr descriptionStart,
                             bool foreign) {
  // Checks that the failure `makeFailing(suspendFirst)` raises reaches an awaiting coroutine and
  // `.wait()`, whether it is thrown before or after the coroutine's first suspension.
  for (bool suspendFirst: {false, true}) {
    CAPTURE(suspendFirst);
    auto io = kj::setupAsyncIo();

    kj::Promise<kj::Exception> awaited = catchFailure(makeFailing(suspendFirst));
    kj::Exception caught = awaited.wait(io.waitScope);
    INFO("description: ", caught.getDescription().cStr());
    CHECK(caught.getDescription().startsWith(descriptionStart));
    CHECK((caught.getType() == kj::Exception::Type::FAILED));
    CHECK((kj::StringPtr(caught.getFile()) == CXX_EXCEPTION_FILE) == foreign);

    kj::Promise<void> waited = makeFailing(suspendFirst);
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { waited.wait(io.waitScope); })) {
      INFO("description: ", exception->getDescription().cStr());
      CHECK(exception->getDescription().startsWith(descriptionStart));
      CHECK((kj::StringPtr(exception->getFile()) == CXX_EXCEPTION_FILE) == foreign);
    } else {
      FAIL("wait() did not throw");
    }
  }
}

}  // namespace

TEST_SUITE("unit") {

TEST_CASE("coro dropping the promise destroys the frame and cancels the awaited timer") {
  ManualTime time;
  bool fired = false;
  int destroyed = 0;
  {
    kj::Promise<void> promise = sleepThenSet(time.timer, fired, destroyed);
    time.waitScope.poll();
    CHECK(!time.timerIdle());
    time.advance(5 * kj::MILLISECONDS);
    CHECK(destroyed == 0);
  }
  CHECK(destroyed == 1);
  CHECK(time.timerIdle());
  time.advance(1 * kj::SECONDS);
  CHECK(!fired);
}

TEST_CASE("coro a kj exception reaches the awaiter and wait") {
  expectFailureEverywhere([](bool suspendFirst) { return failWithKj(suspendFirst); },
                          "kj failure", false);
}

TEST_CASE("coro std runtime_error becomes a kj exception named after its type") {
  expectFailureEverywhere([](bool suspendFirst) { return failWithRuntimeError(suspendFirst); },
                          "std::runtime_error: disk on fire", true);
}

TEST_CASE("coro a custom std exception keeps its demangled type name") {
  expectFailureEverywhere([](bool suspendFirst) { return failWithParseError(suspendFirst); },
                          "tractor::(anonymous namespace)::ParseError: bad token", true);
}

TEST_CASE("coro a thrown int becomes a kj exception named int") {
  expectFailureEverywhere([](bool suspendFirst) { return failWithInt(suspendFirst); },
                          "int: ", true);
}

TEST_CASE("coro 100000 sequential awaits of ready promises complete") {
  auto io = kj::setupAsyncIo();
  constexpr int COUNT = 100000;
  kj::Promise<uint64_t> sum = sumOfReadyAwaits(COUNT);
  CHECK(sum.wait(io.waitScope) == uint64_t(COUNT) * (COUNT - 1) / 2);
}

TEST_CASE("coro 10000 nested coroutines each awaiting the next complete") {
  // Each level awaits the next one directly, so the levels start one inside the other.
  auto io = kj::setupAsyncIo();
  kj::Promise<int> depth = nestedDepth(10000);
  CHECK(depth.wait(io.waitScope) == 10000);
}

TEST_CASE("coro 100000 nested coroutines that suspend before nesting complete") {
  // Resumption and completion of a deep chain: each level resumes its parent in a turn of its
  // own, so unwinding never recurses.
  auto io = kj::setupAsyncIo();
  kj::Promise<int> depth = nestedDepthAfterYield(100000);
  CHECK(depth.wait(io.waitScope) == 100000);
}

TEST_CASE("coro a coroutine in a TaskSet reports its failure to the ErrorHandler") {
  auto io = kj::setupAsyncIo();
  RecordingErrorHandler handler;
  kj::TaskSet tasks(handler);
  bool finished = false;
  tasks.add(failAfterYield(kj::str("from the task set")));
  tasks.add(setAfterYield(finished));
  tasks.onEmpty().wait(io.waitScope);
  CHECK(finished);
  REQUIRE(handler.errors.size() == 1);
  INFO("error: ", handler.errors[0].cStr());
  CHECK(handler.errors[0].startsWith("task failed"));
  CHECK(handler.errors[0].endsWith("from the task set"));
}

TEST_CASE("coro co_return of a promise forwards its value") {
  auto io = kj::setupAsyncIo();
  auto paf = kj::newPromiseAndFulfiller<int>();
  kj::Promise<int> result = forwardAfterYield(kj::mv(paf.promise));
  io.waitScope.poll();
  CHECK(!result.poll(io.waitScope));
  paf.fulfiller->fulfill(17);
  CHECK(result.wait(io.waitScope) == 17);
}

TEST_CASE("coro co_return of a promise forwards its rejection") {
  auto io = kj::setupAsyncIo();
  auto paf = kj::newPromiseAndFulfiller<int>();
  kj::Promise<int> result = forwardAfterYield(kj::mv(paf.promise));
  io.waitScope.poll();
  paf.fulfiller->reject(KJ_EXCEPTION(DISCONNECTED, "peer went away"));
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result.wait(io.waitScope); })) {
    CHECK((exception->getType() == kj::Exception::Type::DISCONNECTED));
    CHECK(exception->getDescription() == "peer went away");
  } else {
    FAIL("the rejection was not forwarded");
  }
}

TEST_CASE("coro dropping a coroutine that forwards a pending promise drops that promise") {
  auto io = kj::setupAsyncIo();
  bool forwardedDestroyed = false;
  {
    kj::Promise<int> forwarded = kj::Promise<int>(kj::NEVER_DONE).attach(
        kj::defer([&forwardedDestroyed]() { forwardedDestroyed = true; }));
    kj::Promise<int> result = forwardAfterYield(kj::mv(forwarded));
    io.waitScope.poll();
    CHECK(!forwardedDestroyed);
  }
  CHECK(forwardedDestroyed);
}

TEST_CASE("coro co_await of a Task directly") {
  auto io = kj::setupAsyncIo();
  kj::Promise<int> result = addTwoByAwaitingTasks(40);
  CHECK(result.wait(io.waitScope) == 42);
}

TEST_CASE("coro void coroutines run their steps in order") {
  auto io = kj::setupAsyncIo();
  kj::Vector<int> log;
  kj::Promise<void> done = appendTwice(log);
  // The body ran up to the first suspension of the first inner coroutine.
  REQUIRE(log.size() == 1);
  CHECK(log[0] == 1);
  done.wait(io.waitScope);
  REQUIRE(log.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(log[i] == i + 1);
  }
}

TEST_CASE("coro move-only results pass through co_return and co_await") {
  auto io = kj::setupAsyncIo();
  kj::Promise<kj::Own<int>> own = makeOwn(9);
  CHECK(*own.wait(io.waitScope) == 9);
  kj::Promise<kj::String> text = describeOwn(kj::str("got "));
  CHECK(text.wait(io.waitScope) == "got 56");
}

TEST_CASE("coro a Task never converted never runs and frees its frame") {
  auto io = kj::setupAsyncIo();
  bool ran = false;
  int destroyed = 0;
  {
    Task<void> task = neverStarted(Counted(destroyed), ran);
    CHECK(destroyed == 0);
    io.waitScope.poll();
  }
  CHECK(!ran);
  CHECK(destroyed == 1);
}

TEST_CASE("coro awaiting a promise that is rejected later") {
  auto io = kj::setupAsyncIo();
  auto paf = kj::newPromiseAndFulfiller<int>();
  kj::Promise<kj::String> outcome = awaitOutcome(kj::mv(paf.promise));
  io.waitScope.poll();
  CHECK(!outcome.poll(io.waitScope));
  paf.fulfiller->reject(KJ_EXCEPTION(FAILED, "late rejection"));
  CHECK(outcome.wait(io.waitScope) == "error late rejection");
}

TEST_CASE("coro cancelling a coroutine awaiting a Task destroys both frames and its promise") {
  ManualTime time;
  kj::Vector<kj::StringPtr> log;
  {
    kj::Promise<void> innermost = time.timer.afterDelay(1 * kj::SECONDS)
        .attach(kj::defer([&log]() { log.add("innermost promise"); }));
    kj::Promise<void> outer = outerAwait(kj::mv(innermost), log);
    time.advance(500 * kj::MILLISECONDS);
    CHECK(log.size() == 0);
  }
  // Torn down from the inside out: the awaited promise, then the inner frame, then the outer.
  REQUIRE(log.size() == 3);
  CHECK(log[0] == "innermost promise");
  CHECK(log[1] == "inner local");
  CHECK(log[2] == "outer local");
  CHECK(time.timerIdle());
  time.advance(2 * kj::SECONDS);
  CHECK(log.size() == 3);
}

TEST_CASE("coro awaiting a ready promise resumes in a later turn") {
  auto io = kj::setupAsyncIo();
  bool before = false;
  bool after = false;
  kj::Promise<void> promise = markAroundReadyAwait(before, after);
  CHECK(before);
  CHECK(!after);
  io.waitScope.poll();
  CHECK(after);
}

TEST_CASE("coro a caught failure lets the coroutine await again") {
  auto io = kj::setupAsyncIo();
  kj::Promise<kj::String> result = recoverAndContinue(failWithRuntimeError(true));
  CHECK(result.wait(io.waitScope) == "std::runtime_error: disk on fire then 2");
}

struct TestScope final: public TaskScope {
  static const char KIND;
  explicit TestScope(int tag): TaskScope(&KIND), tag(tag) {}
  int tag;
};
const char TestScope::KIND = 0;

int scopeTag() {
  KJ_IF_MAYBE(s, TaskScope::find<TestScope>()) {
    return s->tag;
  }
  return 0;
}

Task<int> tagAfterAwait(kj::Promise<void> wait) {
  co_await kj::mv(wait);
  co_return scopeTag();
}

TEST_CASE("coro a coroutine runs in the task scope it was created in") {
  auto io = kj::setupAsyncIo();
  auto outer = kj::refcounted<TestScope>(1);
  auto gate = kj::newPromiseAndFulfiller<void>();
  kj::Promise<int> inOuter = nullptr;
  kj::Promise<int> inInner = nullptr;
  {
    TaskScope::Enter entered(*outer);
    inOuter = tagAfterAwait(kj::mv(gate.promise));
    // Made inside `outer`: its parent.
    auto inner = kj::refcounted<TestScope>(2);
    {
      TaskScope::Enter nested(*inner);
      CHECK(KJ_ASSERT_NONNULL(inner->parent()).kind() == &TestScope::KIND);
      inInner = tagAfterAwait(nextTurn());
    }
    CHECK(scopeTag() == 1);
  }
  CHECK(scopeTag() == 0);
  gate.fulfiller->fulfill();
  // Each resumes in its own scope, whatever runs around it.
  CHECK(inInner.wait(io.waitScope) == 2);
  CHECK(inOuter.wait(io.waitScope) == 1);
  CHECK(scopeTag() == 0);
}

}  // TEST_SUITE("unit")

}  // namespace tractor
