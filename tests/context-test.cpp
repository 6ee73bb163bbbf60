// Contexts and streams (tractor's Context and MsgStream) across real processes: the started
// handshake, bidirectional streams, the cancellation and outcome rules, overruns, broken
// transports, broadcast subscriptions, legacy one-way streams and bad targets.
//
// Every test runs a real tree (runTree) under a generous deadline that only catches hangs, and
// ends with the leak audit. No test synchronises by waiting for time to pass: where it needs
// another actor to reach a point, it asks that actor with a call that waits for the condition
// (a Gauge). (The slow readers pause after each item, but only to be slow.)

#include <doctest/doctest.h>
#include <errno.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdexcept>
#include "tractor/supervise/main.h"
#include "tractor/spawn/exec-spawn.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::Context;
using tractor::MsgStream;
using tractor::Portal;
using tractor::StreamOptions;
using tractor::Task;
using tractor::Value;
using tractor::test::contains;
using namespace tractor::test;

constexpr kj::Duration HANG_DEADLINE = 30 * kj::SECONDS;
// Catches hangs only: each test takes well under a second when the runtime is right.
constexpr kj::Duration WAIT_DEADLINE = 10 * kj::SECONDS;
// For a handshake that waits for something the runtime must do on its own (a cancellation).

constexpr int64_t LONG_STREAM = 1000;
// The length of the streams that a test breaks in the middle.
constexpr int64_t BREAK_AT = 100;
// Where it breaks them.
constexpr int64_t OVERRUN_LIMIT = 100000;
// Items a sender tries before concluding that its receiver never refuses any.
constexpr uint SMALL_BUFFER = 4;
constexpr kj::Duration SLOW_READER_PAUSE = 1 * kj::MILLISECONDS;
// A reader that cannot keep up: a small buffer, and a pause after every item it reads.

// ---- helpers ---------------------------------------------------------------------------------

Gauge cutFrames;
// Probed task frames destroyed before their task finished: cancelled (or ended by an error).

struct FrameProbe {
  // Lives in a task's frame: counts in `cutFrames` unless the task marked itself done first.
  bool done = false;
  ~FrameProbe() {
    if (!done) cutFrames.add();
  }
};

Gauge peersStarted;
// In the actor P of the third-party cancel test: how many `peerSleeper` contexts have started.
Gauge released;
// A callee holding a stream open waits for the test to release it.
Gauge rootReceived;
// In the root: stream items its `rootSink` callee received.
kj::String rootSinkEnd;
// ... and how its stream ended, if it got to see that.

void resetRootState() {
  cutFrames.reset();
  peersStarted.reset();
  released.reset();
  rootReceived.reset();
  rootSinkEnd = kj::str();
}

Portal parentPortal() {
  KJ_IF_MAYBE(p, tractor::Actor::current().parent()) {
    return *p;
  }
  KJ_FAIL_REQUIRE("this actor has no parent");
}

kj::Promise<void> never() { return kj::NEVER_DONE; }

StreamOptions slowReaderOptions(bool overruns) {
  return StreamOptions().withBufferSize(SMALL_BUFFER).withOverruns(overruns);
}

Task<void> failWith(kj::String why) {
  // Fails (with std::logic_error) in a later turn.
  co_await kj::evalLater([]() {});
  throw std::logic_error(why.cStr());
}

Task<void> sendCount(MsgStream& stream, int64_t count) {
  // Sends 0, 1, ..., count - 1.
  for (int64_t i = 0; i < count; i++) co_await stream.send(i);
}

Task<void> sendUntilRefused(MsgStream& stream) {
  // Sends 0, 1, 2, ... until a send raises (StreamOverrun, when the receiver cannot keep up) and
  // raises that. If none does within OVERRUN_LIMIT items, closes the stream and returns.
  for (int64_t i = 0; i < OVERRUN_LIMIT; i++) co_await stream.send(i);
  co_await stream.close();
}

Task<int64_t> receiveInOrder(MsgStream& stream, kj::Maybe<kj::Duration> pause) {
  // Receives 0, 1, 2, ... until the stream ends (each item must be the next number), pausing
  // after each item if asked to (a reader that cannot keep up); returns how many arrived.
  int64_t next = 0;
  for (;;) {
    auto item = co_await stream.receive<int64_t>();
    KJ_IF_MAYBE(v, item) {
      KJ_REQUIRE(*v == next, "stream item out of order", *v, next);
      ++next;
      KJ_IF_MAYBE(p, pause) {
        co_await tractor::Actor::current().timer().afterDelay(*p);
      }
    } else {
      break;
    }
  }
  co_return next;
}

// ---- the root's module: "context_root" (its children call it through their parent portal) ----

Task<void> rootSleeper(Context& ctx) {
  // Starts, then waits to be cancelled.
  FrameProbe probe;
  co_await ctx.started();
  co_await never();
}
TRACTOR_CONTEXT(context_root, rootSleeper);

Task<int64_t> rootSink(Context& ctx) {
  // Counts the items a child streams to the root (in `rootReceived`). Records in `rootSinkEnd`
  // how its stream ended, unless it was cancelled first.
  FrameProbe probe;
  co_await ctx.started();
  int64_t count = 0;
  auto ended = co_await errorOf(
      ctx.openStream(StreamOptions().withOverruns(), [&](MsgStream& stream) -> Task<void> {
        for (;;) {
          auto item = co_await stream.receive();
          if (item == nullptr) break;
          ++count;
          rootReceived.add();
        }
      }));
  rootSinkEnd = ended == nullptr ? kj::str("the end of the stream") : describe(ended);
  KJ_IF_MAYBE(e, ended) {
    rethrow(*e);
  }
  probe.done = true;
  co_return count;
}
TRACTOR_CONTEXT(context_root, rootSink);

// ---- the children's module: "context_test" ---------------------------------------------------

int64_t pid() { return getpid(); }
TRACTOR_EXPOSE(context_test, pid);

int64_t cutFrameCount() { return cutFrames.value(); }
TRACTOR_EXPOSE(context_test, cutFrameCount);

Task<void> waitForCutFrames(int64_t count) { co_await cutFrames.atLeast(count); }
TRACTOR_EXPOSE(context_test, waitForCutFrames);

void release() { released.add(); }
TRACTOR_EXPOSE(context_test, release);


Task<int64_t> pingPong(Context& ctx, int64_t data) {
  // tractor's README example: starts with data + 1, answers each "ping" with a "pong", returns
  // how many it answered.
  co_await ctx.started(data + 1);
  int64_t count = 0;
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    for (;;) {
      auto msg = co_await stream.receive<kj::String>();
      KJ_IF_MAYBE(m, msg) {
        KJ_REQUIRE(*m == "ping", *m);
        co_await stream.send("pong");
        ++count;
      } else {
        break;
      }
    }
  });
  co_return count;
}
TRACTOR_CONTEXT(context_test, pingPong);

Task<int64_t> twice(Context& ctx, int64_t value) {
  co_await ctx.started(value);
  co_return value * 2;
}
TRACTOR_CONTEXT(context_test, twice);

Task<void> startedTwice(Context& ctx) {
  co_await ctx.started(1);
  co_await ctx.started(2);  // raises ContextError, which ends the task
}
TRACTOR_CONTEXT(context_test, startedTwice);

Task<void> streamBeforeStarted(Context& ctx) {
  co_await ctx.openStream([](MsgStream&) -> Task<void> { co_return; });  // raises ContextError
  co_await ctx.started();
}
TRACTOR_CONTEXT(context_test, streamBeforeStarted);

Task<kj::String> reopenStream(Context& ctx) {
  // Opens its stream twice; returns the type of what the second opening raised.
  co_await ctx.started();
  co_await ctx.openStream([](MsgStream&) -> Task<void> { co_return; });
  auto again = co_await errorOf(ctx.openStream([](MsgStream&) -> Task<void> { co_return; }));
  co_return typeOf(again);
}
TRACTOR_CONTEXT(context_test, reopenStream);

Task<int64_t> sink(Context& ctx) {
  // Receives 0, 1, 2, ... until the caller closes its side; returns the count. Never refuses
  // items (overruns allowed), so a fast sender is slowed down rather than failed.
  co_await ctx.started();
  int64_t count = 0;
  co_await ctx.openStream(StreamOptions().withOverruns(), [&](MsgStream& stream) -> Task<void> {
    count = co_await receiveInOrder(stream, nullptr);
  });
  co_return count;
}
TRACTOR_CONTEXT(context_test, sink);

Task<void> produce(Context& ctx, int64_t count) {
  // Streams 0, 1, ..., count - 1, then returns.
  co_await ctx.started();
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    co_await sendCount(stream, count);
  });
}
TRACTOR_CONTEXT(context_test, produce);

Task<void> sleeper(Context& ctx) {
  // Starts, never opens its stream, and waits to be cancelled.
  FrameProbe probe;
  co_await ctx.started();
  co_await never();
}
TRACTOR_CONTEXT(context_test, sleeper);

Task<void> cancelsItself(Context& ctx) {
  FrameProbe probe;
  co_await ctx.started();
  co_await ctx.cancel();
  co_await never();
}
TRACTOR_CONTEXT(context_test, cancelsItself);

Task<void> failAfterStarted(Context& ctx) {
  co_await ctx.started();
  throw std::runtime_error("callee gave up");
}
TRACTOR_CONTEXT(context_test, failAfterStarted);

Task<void> echoUntil(Context& ctx, int64_t bad) {
  // Echoes every item, and fails (std::runtime_error) on receiving `bad`.
  FrameProbe probe;
  co_await ctx.started();
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    for (;;) {
      auto item = co_await stream.receive<int64_t>();
      KJ_IF_MAYBE(i, item) {
        if (*i == bad) throw std::runtime_error(kj::str("bad item ", *i).cStr());
        co_await stream.send(*i);
      } else {
        break;
      }
    }
  });
  probe.done = true;
}
TRACTOR_CONTEXT(context_test, echoUntil);

Task<void> sleepProbed() {
  FrameProbe probe;
  co_await never();
}

Task<void> failWhileNested(Context& ctx, int64_t how) {
  // Fails with std::logic_error("original error") while something else is still running, which
  // the way out cancels: 0 a sibling task in a task group, 1 a context with a grandchild, 2 a
  // context with the parent (the root), 3 nothing (the caller cancels after the error).
  co_await ctx.started();
  if (how == 0) {
    co_await tractor::openTaskGroup([](tractor::TaskGroup& g) -> Task<void> {
      g.start(sleepProbed());
      co_await failWith(kj::str("original error"));
    });
  } else if (how == 1) {
    co_await tractor::openNursery([](ActorNursery& n) -> Task<void> {
      Portal b = co_await n.startActor("nested", tractor::enable("context_test"));
      co_await b.openContext(sleeper, [](Context&, Value) -> Task<void> {
        co_await failWith(kj::str("original error"));
      });
    });
  } else if (how == 2) {
    Portal parent = parentPortal();
    co_await parent.openContext(rootSleeper, [](Context&, Value) -> Task<void> {
      co_await failWith(kj::str("original error"));
    });
  } else {
    co_await failWith(kj::str("original error"));
  }
}
TRACTOR_CONTEXT(context_test, failWhileNested);

Task<int64_t> sendThreeAndReturn(Context& ctx) {
  // Once the caller streams, sends 0, 1, 2 and returns 42 without reading further.
  co_await ctx.started();
  co_await ctx.openStream([](MsgStream& stream) -> Task<void> {
    co_await stream.receive();
    co_await sendCount(stream, 3);
  });
  co_return 42;
}
TRACTOR_CONTEXT(context_test, sendThreeAndReturn);

Task<kj::String> closeThenWait(Context& ctx, int64_t count) {
  // Sends `count` items, closes its side and, with its stream still in scope, waits until the
  // test releases it; returns the type of what a send after the close raised.
  co_await ctx.started();
  kj::String afterClose;
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    co_await sendCount(stream, count);
    co_await stream.close();
    KJ_REQUIRE(stream.closed());
    auto error = co_await errorOf(stream.send(count));
    afterClose = typeOf(error);
    co_await released.atLeast(1);
  });
  co_return kj::mv(afterClose);
}
TRACTOR_CONTEXT(context_test, closeThenWait);

Task<void> overrunCaller(Context& ctx) {
  // Streams until its caller refuses an item (the caller never opens its stream): the refusal
  // interrupts it wherever it is, and its task ends with it.
  co_await ctx.started();
  co_await ctx.openStream([](MsgStream& stream) -> Task<void> {
    co_await sendUntilRefused(stream);
  });
}
TRACTOR_CONTEXT(context_test, overrunCaller);

Task<int64_t> slowReader(Context& ctx, bool overruns) {
  // Reads 0, 1, 2, ... slowly through a small buffer until the stream ends; returns the count.
  co_await ctx.started();
  int64_t count = 0;
  co_await ctx.openStream(slowReaderOptions(overruns), [&](MsgStream& stream) -> Task<void> {
    count = co_await receiveInOrder(stream, SLOW_READER_PAUSE);
  });
  co_return count;
}
TRACTOR_CONTEXT(context_test, slowReader);

Task<void> fastWriter(Context& ctx, int64_t count) {
  // Sends `count` items (or, if negative, until one is refused) as fast as it can.
  co_await ctx.started();
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    if (count < 0) {
      co_await sendUntilRefused(stream);
    } else {
      co_await sendCount(stream, count);
    }
  });
}
TRACTOR_CONTEXT(context_test, fastWriter);

constexpr int64_t BREAK_BOTH = 1;
// shutdown(SHUT_RDWR) of the parent connection: "connection closed".
constexpr int64_t BREAK_WRITE = 2;
// shutdown(SHUT_WR): "half-closed".

void breakParentConnection(int64_t how) {
  // The child's parent connection is at CHILD_SOCKET_FD under every spawn backend (the
  // forkserver moves it there too).
  KJ_SYSCALL(shutdown(tractor::CHILD_SOCKET_FD, how == BREAK_BOTH ? SHUT_RDWR : SHUT_WR));
}

Task<void> streamThenBreak(Context& ctx, bool childSends, int64_t how) {
  // Streams LONG_STREAM items to the caller (or receives them from it) and breaks its own
  // parent connection after BREAK_AT.
  co_await ctx.started();
  co_await ctx.openStream(StreamOptions().withOverruns(), [&](MsgStream& stream) -> Task<void> {
    if (childSends) {
      for (int64_t i = 0; i < LONG_STREAM; i++) {
        if (i == BREAK_AT) breakParentConnection(how);
        co_await stream.send(i);
      }
    } else {
      int64_t count = 0;
      while (co_await stream.receive() != nullptr) {
        if (++count == BREAK_AT) breakParentConnection(how);
      }
    }
  });
}
TRACTOR_CONTEXT(context_test, streamThenBreak);

Task<void> streamToParent(int64_t count) {
  // The child as the caller: streams `count` items into the root's `rootSink`.
  Portal parent = parentPortal();
  co_await parent.openContext(rootSink, [count](Context& ctx, Value) -> Task<void> {
    co_await ctx.openStream([count](MsgStream& stream) -> Task<void> {
      co_await sendCount(stream, count);
    });
  });
}
TRACTOR_EXPOSE(context_test, streamToParent);

Task<void> ticks(MsgStream& out, int64_t count) {
  // A legacy one-way stream of 0, 1, ..., count - 1.
  co_await sendCount(out, count);
}
TRACTOR_STREAM(context_test, ticks);

Task<void> ticksThenHang(MsgStream& out, int64_t count) {
  // Sends `count` items, then waits to be cancelled.
  FrameProbe probe;
  co_await sendCount(out, count);
  co_await never();
}
TRACTOR_STREAM(context_test, ticksThenHang);

// ---- the third-party cancel: the root, P, and P's children Q and Q2 -------------------------

Task<void> peerSleeper(Context& ctx) {
  // In P: a context that counts itself in `peersStarted` once started, then waits.
  co_await ctx.started();
  peersStarted.add();
  co_await never();
}
TRACTOR_CONTEXT(context_test, peerSleeper);

Task<void> waitForPeers(int64_t count) { co_await peersStarted.atLeast(count); }
TRACTOR_EXPOSE(context_test, waitForPeers);

Task<void> contextWithParent() {
  // In Q: opens a context with its parent P and stays in it.
  Portal parent = parentPortal();
  co_await parent.openContext(peerSleeper, [](Context&, Value) -> Task<void> {
    co_await never();
  });
}
TRACTOR_EXPOSE(context_test, contextWithParent);

Task<bool> cancelParentOnceBothStarted() {
  // In Q2: once P has two started contexts (the root's and Q's), cancels P.
  Portal parent = parentPortal();
  co_await parent.run(waitForPeers, 2);
  co_return co_await parent.cancelActor();
}
TRACTOR_EXPOSE(context_test, cancelParentOnceBothStarted);

kj::Maybe<kj::Promise<void>> peerTree;
// In P: the nursery of Q and Q2, a task of the actor (so P's cancellation ends it).

Task<kj::String> startPeers() {
  // In P: spawns Q (which opens a context with P) and Q2 (which cancels P once both contexts
  // are started); returns Q2's uuid.
  auto paf = kj::newPromiseAndFulfiller<kj::String>();
  peerTree = tractor::Actor::current()
                 .wrapTask(tractor::openNursery(
                     [fulfiller = kj::mv(paf.fulfiller)](ActorNursery& n) mutable -> Task<void> {
                       Portal q = co_await n.startActor("q", tractor::enable("context_test"));
                       Portal q2 = co_await n.startActor("q2", tractor::enable("context_test"));
                       fulfiller->fulfill(kj::str(q2.actorId().uuid));
                       auto inContext = q.run(contextWithParent);
                       co_await q2.run(cancelParentOnceBothStarted);
                       co_await kj::mv(inContext);
                     }))
                 .eagerlyEvaluate(nullptr);
  co_return co_await kj::mv(paf.promise);
}
TRACTOR_EXPOSE(context_test, startPeers);

Task<void> ignoresCancellation(Context& ctx) {
  // A callee that never lets its cancellation through (a bug, or a hostile peer's task); says
  // "shielded" once it holds it back.
  co_await ctx.started();
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    co_await tractor::shield(stream.send("shielded").then([]() { return never(); }));
  });
}
TRACTOR_CONTEXT(context_test, ignoresCancellation);

int64_t failAtOnce() { throw std::logic_error("the child failed"); }
TRACTOR_EXPOSE(context_test, failAtOnce);

Task<int64_t> sleepForever() {
  co_await never();
  co_return 0;
}
TRACTOR_EXPOSE(context_test, sleepForever);

Task<void> nurseryWithFailedChild(Context& ctx) {
  // Its nursery records a child's failure and, while it gives the other child its grace, tells
  // the caller (a stream item) so that the caller cancels this task right then.
  co_await ctx.started();
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
      Portal failing = co_await n.runInActor(failAtOnce);
      co_await n.runInActor(sleepForever);
      auto failed = co_await errorOf(failing.waitForResult<int64_t>().ignoreResult());
      KJ_REQUIRE(failed != nullptr, "the child did not fail");
      co_await stream.send("failed");
      co_await never();
    });
  });
}
TRACTOR_CONTEXT(context_test, nurseryWithFailedChild);

// ---- running a tree --------------------------------------------------------------------------

template <typename Func>
kj::Maybe<kj::Exception> runTree(Func&& block) {
  // Runs `block(nursery)` in a root actor that serves "context_root", under HANG_DEADLINE, and
  // returns what it raised; the leak audit runs once the root has reaped everything.
  resetRootState();
  auto error = tractor::test::runAuditedRoot(
      [&]() -> kj::Promise<void> {
        return tractor::failAfter(tractor::Actor::current().timer(), HANG_DEADLINE,
                                  tractor::openNursery(kj::fwd<Func>(block)));
      },
      tractor::RootOptions().enable("context_root"));
  resetRootState();
  return error;
}

kj::Promise<void> deadline(kj::Promise<void> promise) {
  return tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE, kj::mv(promise));
}

Task<void> processExit(pid_t pid) {
  // Resolves once process `pid` (a child the runtime reaps) has exited, watched through a pidfd
  // of our own.
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0 && errno == ESRCH) co_return;  // already exited and reaped
  KJ_REQUIRE(fd >= 0, "pidfd_open", pid, strerror(errno));
  kj::AutoCloseFd owned(fd);
  kj::UnixEventPort::FdObserver observer(tractor::Actor::current().io().unixEventPort, fd,
                                         kj::UnixEventPort::FdObserver::OBSERVE_READ);
  co_await observer.whenBecomesReadable();
}

}  // namespace

TEST_SUITE("multiproc") {
  // ---- 1. the README example ----------------------------------------------------------------

  TEST_CASE("context ping pong from the README") {
    int64_t first = 0;
    int64_t pongs = 0;
    int64_t result = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("ponger", tractor::enable("context_test"));
      co_await p.openContext(pingPong, 10, [&](Context& ctx, Value sent) -> Task<void> {
        first = sent.as<int64_t>();
        CHECK(ctx.side() == Context::Side::CALLER);
        CHECK(ctx.peer().uuid == p.actorId().uuid);
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          for (int i = 0; i < 10; i++) {
            co_await stream.send("ping");
            auto msg = co_await stream.receive<kj::String>();
            KJ_IF_MAYBE(m, msg) {
              if (*m == "pong") ++pongs;
            }
          }
        });
        result = co_await ctx.waitForResult<int64_t>();
        CHECK(ctx.outcome() != nullptr);
      });
    });
    CHECK_CLEAN(error);
    CHECK(first == 11);
    CHECK(pongs == 10);
    CHECK(result == 10);
  }

  // ---- 2. the started handshake and one stream per side --------------------------------------

  TEST_CASE("context a second started raises ContextError in the callee and at the caller") {
    bool blockRan = false;
    kj::String callee;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("twice", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(startedTwice, [&](Context&, Value) -> Task<void> {
        blockRan = true;
        co_return;
      }));
    });
    CHECK_CLEAN(error);
    CHECK(blockRan);
    CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_ERROR);
    CHECK(sourceUuid(scope) == callee);
  }

  TEST_CASE("context started on the caller side raises ContextError") {
    kj::Maybe<kj::Exception> callerStarted;
    int64_t result = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("twice", tractor::enable("context_test"));
      co_await p.openContext(twice, 21, [&](Context& ctx, Value) -> Task<void> {
        callerStarted = co_await errorOf(ctx.started(5));
        result = co_await ctx.waitForResult<int64_t>();
      });
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(callerStarted, tractor::CONTEXT_ERROR);
    CHECK(sourceUuid(callerStarted) == "");
    CHECK(result == 42);
  }

  TEST_CASE("context a callee opening its stream before started raises ContextError") {
    bool blockRan = false;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("eager", tractor::enable("context_test"));
      scope = co_await errorOf(p.openContext(streamBeforeStarted,
                                             [&](Context&, Value) -> Task<void> {
                                               blockRan = true;
                                               co_return;
                                             }));
      // The actor is unharmed.
      CHECK(co_await p.run(pid) > 0);
    });
    CHECK_CLEAN(error);
    CHECK(!blockRan);
    CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_ERROR);
  }

  TEST_CASE("context a stream is never reopened") {
    kj::String calleeReopen;
    kj::Maybe<kj::Exception> callerReopen;
    int64_t sunk = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("reopener", tractor::enable("context_test"));
      // In the callee.
      co_await p.openContext(reopenStream, [&](Context& ctx, Value) -> Task<void> {
        calleeReopen = co_await ctx.waitForResult<kj::String>();
      });
      // In the caller: the first stream closes at once, which ends the sink's loop.
      co_await p.openContext(sink, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([](MsgStream&) -> Task<void> { co_return; });
        callerReopen = co_await errorOf(
            ctx.openStream([](MsgStream&) -> Task<void> { co_return; }));
        sunk = co_await ctx.waitForResult<int64_t>();
      });
    });
    CHECK_CLEAN(error);
    CHECK(calleeReopen == tractor::CONTEXT_ERROR);
    CHECK_RAISED(callerReopen, tractor::CONTEXT_ERROR);
    CHECK(sunk == 0);
  }

  // ---- 3.-6. cancellation ---------------------------------------------------------------------

  TEST_CASE("context cancelled by the caller is absorbed at the scope") {
    bool waitForResult = false;
    SUBCASE("the block waits for the result") { waitForResult = true; }
    SUBCASE("the block ends right after cancel") { waitForResult = false; }
    bool calledBefore = true;
    bool calledAfter = false;
    bool resultIsNull = false;
    kj::String canceller;
    kj::String root;
    kj::Maybe<kj::Exception> outcome;
    int64_t cut = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      root = kj::str(tractor::Actor::current().id().uuid);
      Portal p = co_await n.startActor("cancelled", tractor::enable("context_test"));
      co_await p.openContext(sleeper, [&](Context& ctx, Value) -> Task<void> {
        calledBefore = ctx.cancelCalled();
        co_await ctx.cancel();
        calledAfter = ctx.cancelCalled();
        if (waitForResult) {
          Value v = co_await ctx.waitForResult();
          resultIsNull = v.isNull();
          KJ_IF_MAYBE(c, ctx.canceller()) {
            canceller = kj::str(c->uuid);
          }
          KJ_IF_MAYBE(o, ctx.outcome()) {
            if (o->is<kj::Exception>()) outcome = kj::cp(o->get<kj::Exception>());
          }
        }
      });
      // The callee's task was cancelled: its frame is gone.
      cut = co_await p.run(cutFrameCount);
    });
    CHECK_CLEAN(error);
    CHECK(!calledBefore);
    CHECK(calledAfter);
    CHECK(cut == 1);
    if (waitForResult) {
      CHECK(resultIsNull);
      CHECK(canceller == root);
      CHECK_RAISED(outcome, tractor::CONTEXT_CANCELLED);
      CHECK(cancellerUuid(outcome) == root);
    }
  }

  TEST_CASE("context cancelled by the caller's cancelActor is raised at the caller") {
    bool waitInBlock = false;
    SUBCASE("the block waits for the result") { waitInBlock = true; }
    SUBCASE("the block ends after the request") { waitInBlock = false; }
    bool acknowledged = false;
    kj::String root;
    kj::String victim;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      root = kj::str(tractor::Actor::current().id().uuid);
      Portal p = co_await n.startActor("victim", tractor::enable("context_test"));
      victim = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(sleeper, [&](Context& ctx, Value) -> Task<void> {
        acknowledged = co_await p.cancelActor();
        if (waitInBlock) co_await ctx.waitForResult();
      }));
    });
    CHECK_CLEAN(error);
    CHECK(acknowledged);
    CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_CANCELLED);
    CHECK(cancellerUuid(scope) == root);
    CHECK(sourceUuid(scope) == victim);
  }

  TEST_CASE("context cancelled by the callee itself is raised at the caller") {
    kj::String callee;
    kj::Maybe<kj::Exception> scope;
    int64_t cut = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("quitter", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(cancelsItself, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.waitForResult();
      }));
      cut = co_await p.run(cutFrameCount);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_CANCELLED);
    CHECK(cancellerUuid(scope) == callee);
    CHECK(cut == 1);
  }

  TEST_CASE("context a callee failure interrupts a caller block busy with something else") {
    // As tractor's open_context: the block does not outlive its callee's failure, even when it
    // never touches the context again (here it waits forever).
    bool selfCancel = false;
    SUBCASE("the callee raises") { selfCancel = false; }
    SUBCASE("the callee cancels itself") { selfCancel = true; }
    bool blockCut = false;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("giver-up", tractor::enable("context_test"));
      auto block = [&](Context&, Value) -> Task<void> {
        struct Cut {
          bool& flag;
          ~Cut() { flag = true; }
        } cut{blockCut};
        co_await never();
      };
      if (selfCancel) {
        scope = co_await errorOf(p.openContext(cancelsItself, block));
      } else {
        scope = co_await errorOf(p.openContext(failAfterStarted, block));
      }
    });
    CHECK_CLEAN(error);
    CHECK(blockCut);
    if (selfCancel) {
      CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_CANCELLED);
    } else {
      CHECK_RAISED_REMOTELY(scope, "std::runtime_error");
      CHECK(contains(describe(scope), "callee gave up"));
    }
  }

  TEST_CASE("context cancelled by a third actor names it as the canceller") {
    // The root spawns P; P spawns Q and Q2. The root and Q each have a context open with P;
    // once both started, Q2 cancels its parent P.
    kj::String q2;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("p", tractor::enable("context_test"));
      q2 = co_await p.run(startPeers);
      scope = co_await errorOf(p.openContext(peerSleeper, [](Context& ctx, Value) -> Task<void> {
        co_await ctx.waitForResult();
      }));
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, tractor::CONTEXT_CANCELLED);
    CHECK(q2.size() == 36);
    CHECK(cancellerUuid(scope) == q2);
    CHECK(cancellerName(scope) == "q2");
  }

  // ---- 7.-8. errors ---------------------------------------------------------------------------

  TEST_CASE("context a callee error inside its stream loop reaches the caller's receive") {
    kj::String callee;
    int64_t echoed = 0;
    kj::Maybe<kj::Exception> received;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("fails", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(echoUntil, 3, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          for (int64_t i = 0; i < 10; i++) {
            co_await stream.send(i);
            kj::Maybe<int64_t> item;
            received = co_await errorOf(stream.receive<int64_t>().then(
                [&](kj::Maybe<int64_t>&& v) { item = kj::mv(v); }));
            KJ_IF_MAYBE(e, received) {
              rethrow(*e);
            }
            KJ_IF_MAYBE(v, item) {
              if (*v == i) ++echoed;
            }
          }
        });
      }));
    });
    CHECK_CLEAN(error);
    CHECK(echoed == 3);
    for (auto e: {&received, &scope}) {
      KJ_IF_MAYBE(exception, *e) {
        KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*exception)) {
          CHECK(r->boxedType == "std::runtime_error");
          CHECK(r->srcType == "std::runtime_error");
          CHECK(r->message == "bad item 3");
          CHECK(r->src.uuid == callee);
        } else {
          FAIL_CHECK("not a remote error: ", doctest::String(exception->getDescription().cStr()));
        }
      } else {
        FAIL_CHECK("no error was raised");
      }
    }
  }

  TEST_CASE("context a caller error inside its stream loop cancels the callee") {
    kj::Maybe<kj::Exception> scope;
    bool cancelled = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("echo", tractor::enable("context_test"));
      scope = co_await errorOf(p.openContext(echoUntil, -1, [](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([](MsgStream& stream) -> Task<void> {
          for (int64_t i = 0; i < 3; i++) {
            co_await stream.send(i);
            co_await stream.receive();
          }
          throw std::runtime_error("caller gave up");
        });
      }));
      cancelled = co_await errorOf(deadline(p.run(waitForCutFrames, 1))) == nullptr;
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, "std::runtime_error");
    CHECK(sourceUuid(scope) == "");
    CHECK(contains(describe(scope), "caller gave up"));
    CHECK(cancelled);
  }

  TEST_CASE("context a callee error is not masked by the cancellations of its cleanup") {
    int64_t how = 0;
    SUBCASE("a sibling task in a task group") { how = 0; }
    SUBCASE("a nested context with a grandchild") { how = 1; }
    SUBCASE("a nested context with the parent") { how = 2; }
    SUBCASE("a cancel requested after the error") { how = 3; }
    kj::String callee;
    kj::Maybe<kj::Exception> seenInBlock;
    kj::Maybe<kj::Exception> scope;
    int64_t childCut = -1;
    bool rootCalleeCancelled = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("failing", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(failWhileNested, how,
                                             [&](Context& ctx, Value) -> Task<void> {
        if (how == 3) {
          seenInBlock = co_await errorOf(ctx.waitForResult().ignoreResult());
          co_await ctx.cancel();
        }
      }));
      if (how == 0) childCut = co_await p.run(cutFrameCount);
      if (how == 2) {
        rootCalleeCancelled = co_await errorOf(deadline(cutFrames.atLeast(1))) == nullptr;
      }
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, "std::logic_error");
    CHECK(!raised(scope, tractor::CONTEXT_CANCELLED));
    CHECK(contains(describe(scope), "original error"));
    CHECK(sourceUuid(scope) == callee);
    if (how == 0) CHECK(childCut == 1);
    if (how == 2) CHECK(rootCalleeCancelled);
    if (how == 3) CHECK_RAISED_REMOTELY(seenInBlock, "std::logic_error");
  }

  // ---- 9.-10. the end of a stream ------------------------------------------------------------

  TEST_CASE("stream a callee that returns while the caller streams ends the caller's loop") {
    kj::Vector<int64_t> received;
    kj::Maybe<kj::Exception> receiveAfterEnd;
    kj::Maybe<kj::Exception> sendAfterEnd;
    int64_t result = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("early", tractor::enable("context_test"));
      co_await p.openContext(sendThreeAndReturn, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          // All five are queued before the callee's end can be seen here; the callee reads the
          // first only, so the others arrive late.
          for (int64_t i = 0; i < 5; i++) co_await stream.send(i * 100);
          for (;;) {
            auto item = co_await stream.receive<int64_t>();
            KJ_IF_MAYBE(v, item) {
              received.add(*v);
            } else {
              break;
            }
          }
          receiveAfterEnd = co_await errorOf(stream.receive().ignoreResult());
          sendAfterEnd = co_await errorOf(stream.send(7));
        });
        result = co_await ctx.waitForResult<int64_t>();
      });
      // The late items did not harm the callee's actor.
      CHECK(co_await p.run(pid) > 0);
    });
    CHECK_CLEAN(error);
    REQUIRE(received.size() == 3);
    for (auto i: kj::indices(received)) CHECK(received[i] == int64_t(i));
    CHECK_RAISED(receiveAfterEnd, tractor::END_OF_STREAM);
    CHECK_RAISED(sendAfterEnd, tractor::END_OF_STREAM);
    CHECK(result == 42);
  }

  TEST_CASE("stream closed by the caller ends the callee's receive loop") {
    bool closed = false;
    kj::Maybe<kj::Exception> sendAfterClose;
    int64_t count = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("sink", tractor::enable("context_test"));
      co_await p.openContext(sink, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          co_await sendCount(stream, 5);
          co_await stream.close();
          closed = stream.closed();
          sendAfterClose = co_await errorOf(stream.send(5));
          // Still inside the stream's block: the callee's loop ended because of the close.
          count = co_await ctx.waitForResult<int64_t>();
        });
      });
    });
    CHECK_CLEAN(error);
    CHECK(closed);
    CHECK_RAISED(sendAfterClose, tractor::STREAM_CLOSED);
    CHECK(count == 5);
  }

  TEST_CASE("stream closed by the callee ends the caller's receive loop") {
    int64_t count = -1;
    kj::String calleeSendAfterClose;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("closer", tractor::enable("context_test"));
      co_await p.openContext(closeThenWait, 5, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          count = co_await receiveInOrder(stream, nullptr);
          // The callee still holds its stream (and its task) open until this call.
          co_await p.run(release);
        });
        calleeSendAfterClose = co_await ctx.waitForResult<kj::String>();
      });
    });
    CHECK_CLEAN(error);
    CHECK(count == 5);
    CHECK(calleeSendAfterClose == tractor::STREAM_CLOSED);
  }

  // ---- 11. overruns ---------------------------------------------------------------------------

  TEST_CASE("stream overrun of a caller that never opened its stream is raised at the callee") {
    kj::String callee;
    kj::String root;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      root = kj::str(tractor::Actor::current().id().uuid);
      Portal p = co_await n.startActor("flooder", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(overrunCaller, [&](Context&, Value) -> Task<void> {
        // Busy elsewhere: the callee's relayed refusal interrupts this wait.
        co_await never();
      }));
    });
    CHECK_CLEAN(error);
    // Relayed back by the callee, whose task it failed.
    CHECK_RAISED_REMOTELY(scope, tractor::STREAM_OVERRUN);
    CHECK(senderUuid(scope) == callee);
    CHECK(sourceUuid(scope) == root);
  }

  TEST_CASE("stream overrun of a callee that never opened its stream is raised at the caller") {
    kj::String callee;
    kj::String root;
    kj::Maybe<kj::Exception> scope;
    bool cancelled = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      root = kj::str(tractor::Actor::current().id().uuid);
      Portal p = co_await n.startActor("flooded", tractor::enable("context_test"));
      callee = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(sleeper, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          // The refusal interrupts the sends wherever they are (here: maybe waiting for room).
          co_await sendUntilRefused(stream);
        });
      }));
      // The caller's block failed: the callee was cancelled.
      cancelled = co_await errorOf(deadline(p.run(waitForCutFrames, 1))) == nullptr;
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, tractor::STREAM_OVERRUN);
    CHECK(senderUuid(scope) == root);
    CHECK(sourceUuid(scope) == callee);
    CHECK(cancelled);
  }

  TEST_CASE("stream a slow reader without overruns refuses a fast writer") {
    bool callerReads = false;
    SUBCASE("the callee reads slowly") { callerReads = false; }
    SUBCASE("the caller reads slowly") { callerReads = true; }
    kj::String writer;
    kj::Maybe<kj::Exception> refused;
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("peer", tractor::enable("context_test"));
      if (callerReads) {
        writer = kj::str(p.actorId().uuid);
        scope = co_await errorOf(p.openContext(
            slowReaderOptions(false), fastWriter, -1, [&](Context& ctx, Value) -> Task<void> {
              co_await ctx.openStream(slowReaderOptions(false), [&](MsgStream& s) -> Task<void> {
                // The writer's refusal ends its task, which ends this loop with its error.
                refused = co_await errorOf(
                    tractor::toPromise(receiveInOrder(s, SLOW_READER_PAUSE)).ignoreResult());
                KJ_IF_MAYBE(e, refused) {
                  rethrow(*e);
                }
              });
            }));
      } else {
        writer = kj::str(tractor::Actor::current().id().uuid);
        scope = co_await errorOf(p.openContext(slowReader, false,
                                               [&](Context& ctx, Value) -> Task<void> {
          co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
            refused = co_await errorOf(sendUntilRefused(stream));
            KJ_IF_MAYBE(e, refused) {
              rethrow(*e);
            }
          });
        }));
      }
    });
    CHECK_CLEAN(error);
    if (callerReads) {
      // The writer's task is interrupted by the refusal and ends with it; the slow caller's
      // receive raises it (or, if it was pausing, the block is interrupted with it).
      if (refused != nullptr) {
        CHECK_RAISED(refused, tractor::STREAM_OVERRUN);
        CHECK(senderUuid(refused) == writer);
      }
    }
    CHECK_RAISED(scope, tractor::STREAM_OVERRUN);
    CHECK(senderUuid(scope) == writer);
  }

  TEST_CASE("stream a slow reader with overruns allowed gets every item in order") {
    constexpr int64_t COUNT = 300;
    bool callerReads = false;
    SUBCASE("the callee reads slowly") { callerReads = false; }
    SUBCASE("the caller reads slowly") { callerReads = true; }
    int64_t count = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("peer", tractor::enable("context_test"));
      if (callerReads) {
        co_await p.openContext(slowReaderOptions(true), fastWriter, COUNT,
                               [&](Context& ctx, Value) -> Task<void> {
          co_await ctx.openStream(slowReaderOptions(true), [&](MsgStream& s) -> Task<void> {
            count = co_await receiveInOrder(s, SLOW_READER_PAUSE);
          });
          co_await ctx.waitForResult();
        });
      } else {
        co_await p.openContext(slowReader, true, [&](Context& ctx, Value) -> Task<void> {
          co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
            co_await sendCount(stream, COUNT);
          });
          count = co_await ctx.waitForResult<int64_t>();
        });
      }
    });
    CHECK_CLEAN(error);
    CHECK(count == COUNT);
  }

  // ---- 12. a transport broken in the middle of a stream -------------------------------------

  TEST_CASE("stream a child killed in the middle of a stream raises TransportClosed") {
    bool childSends = false;
    SUBCASE("while the child sends") { childSends = true; }
    SUBCASE("while the child receives") { childSends = false; }
    int64_t received = 0;
    kj::Maybe<kj::Exception> streamOp;
    kj::Maybe<kj::Exception> scope;
    kj::Maybe<kj::Exception> supervision;
    auto error = runTree([&](ActorNursery&) -> Task<void> {
      LoneActor victim = co_await startLoneActor("victim", "context_test");
      Portal& p = victim.portal;
      auto victimPid = static_cast<pid_t>(co_await p.run(pid));
      CHECK(static_cast<uint32_t>(victimPid) == p.actorId().pid);
      if (childSends) {
        scope = co_await errorOf(p.openContext(
            StreamOptions().withOverruns(), produce, LONG_STREAM,
            [&](Context& ctx, Value) -> Task<void> {
              co_await ctx.openStream(StreamOptions().withOverruns(),
                                      [&](MsgStream& stream) -> Task<void> {
                auto body = [&]() -> Task<void> {
                  for (;;) {
                    if (received == BREAK_AT) {
                      KJ_SYSCALL(kill(victimPid, SIGKILL));
                    }
                    // Never null: a dead child cannot end its stream in order.
                    if (co_await stream.receive() == nullptr) break;
                    ++received;
                  }
                };
                streamOp = co_await errorOf(body());
                KJ_IF_MAYBE(e, streamOp) {
                  rethrow(*e);
                }
              });
            }));
      } else {
        scope = co_await errorOf(p.openContext(sink, [&](Context& ctx, Value) -> Task<void> {
          co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
            auto body = [&]() -> Task<void> {
              for (int64_t i = 0; i < LONG_STREAM; i++) {
                if (i == BREAK_AT) {
                  KJ_SYSCALL(kill(victimPid, SIGKILL));
                }
                co_await stream.send(i);
              }
              co_await stream.close();
            };
            streamOp = co_await errorOf(body());
            KJ_IF_MAYBE(e, streamOp) {
              rethrow(*e);
            }
          });
        }));
      }
      // Its nursery notices the death on its own (its block still waits to be released).
      supervision = co_await kj::mv(victim.supervision);
      victim.release->fulfill();
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(streamOp, tractor::TRANSPORT_CLOSED);
    CHECK_RAISED(scope, tractor::TRANSPORT_CLOSED);
    // (The items the child sent before it died may all have arrived: a receiver that allows
    // overruns takes whole batches. The stream did not end, though: no end came, only the error.)
    if (childSends) CHECK(received >= BREAK_AT);
    // The victim's own nursery saw it die.
    CHECK_RAISED(supervision, tractor::ACTOR_FAILURE);
  }

  TEST_CASE("stream a child breaking its own connection in the middle of a stream") {
    bool childSends = false;
    int64_t how = BREAK_BOTH;
    SUBCASE("closed while the child sends") {
      childSends = true;
      how = BREAK_BOTH;
    }
    SUBCASE("closed while the child receives") {
      childSends = false;
      how = BREAK_BOTH;
    }
    SUBCASE("half-closed while the child sends") {
      childSends = true;
      how = BREAK_WRITE;
    }
    SUBCASE("half-closed while the child receives") {
      childSends = false;
      how = BREAK_WRITE;
    }
    int64_t received = 0;
    bool exited = false;
    kj::Maybe<kj::Exception> streamOp;
    kj::Maybe<kj::Exception> scope;
    kj::Maybe<kj::Exception> supervision;
    auto error = runTree([&](ActorNursery&) -> Task<void> {
      LoneActor breaker = co_await startLoneActor("breaker", "context_test");
      Portal& p = breaker.portal;
      auto breakerPid = static_cast<pid_t>(co_await p.run(pid));
      kj::Promise<void> exit = processExit(breakerPid);
      scope = co_await errorOf(p.openContext(
          StreamOptions().withOverruns(), streamThenBreak, childSends, how,
          [&](Context& ctx, Value) -> Task<void> {
            co_await ctx.openStream(StreamOptions().withOverruns(),
                                    [&](MsgStream& stream) -> Task<void> {
              auto body = [&]() -> Task<void> {
                if (childSends) {
                  while (co_await stream.receive() != nullptr) ++received;
                } else {
                  co_await sendCount(stream, LONG_STREAM);
                  co_await stream.close();
                }
              };
              streamOp = co_await errorOf(body());
              KJ_IF_MAYBE(e, streamOp) {
                rethrow(*e);
              }
            });
          }));
      // The child exits on its own, before its nursery would tear it down.
      exited = co_await errorOf(deadline(kj::mv(exit))) == nullptr;
      breaker.release->fulfill();
      supervision = co_await kj::mv(breaker.supervision);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(streamOp, tractor::TRANSPORT_CLOSED);
    CHECK_RAISED(scope, tractor::TRANSPORT_CLOSED);
    CHECK(received < LONG_STREAM);
    CHECK(exited);
    // ... and in order.
    CHECK_CLEAN(supervision);
  }

  TEST_CASE("context a child streaming into its parent dies and the parent's callee is cancelled") {
    kj::Maybe<kj::Exception> childCall;
    kj::Maybe<kj::Exception> supervision;
    bool calleeGone = false;
    kj::String sinkEnd;
    int64_t receivedAtKill = 0;
    auto error = runTree([&](ActorNursery&) -> Task<void> {
      LoneActor streamer = co_await startLoneActor("streamer", "context_test");
      Portal& p = streamer.portal;
      auto streamerPid = static_cast<pid_t>(co_await p.run(pid));
      auto call = errorOf(p.run(streamToParent, LONG_STREAM)).eagerlyEvaluate(nullptr);
      // The root's callee (rootSink) is in the middle of the stream.
      co_await deadline(rootReceived.atLeast(BREAK_AT));
      receivedAtKill = rootReceived.value();
      KJ_SYSCALL(kill(streamerPid, SIGKILL));
      calleeGone = co_await errorOf(deadline(cutFrames.atLeast(1))) == nullptr;
      calleeGone = calleeGone && cutFrames.value() == 1;
      sinkEnd = kj::str(rootSinkEnd);
      childCall = co_await kj::mv(call);
      supervision = co_await kj::mv(streamer.supervision);
      streamer.release->fulfill();
    });
    CHECK_CLEAN(error);
    CHECK(receivedAtKill >= BREAK_AT);
    CHECK(receivedAtKill < LONG_STREAM);
    // rootSink's frame is gone, and it did not get to its end: it was cancelled while it waited
    // for the next item (its stream did not end, with an error or otherwise).
    CHECK(calleeGone);
    CHECK_MESSAGE(sinkEnd == "", doctest::String(sinkEnd.cStr()));
    CHECK_RAISED(childCall, tractor::TRANSPORT_CLOSED);
    CHECK_RAISED(supervision, tractor::ACTOR_FAILURE);
  }

  // ---- 13. broadcast ------------------------------------------------------------------------

  TEST_CASE("stream broadcast to three subscribers with one lagging behind") {
    constexpr int64_t COUNT = 400;
    struct Reader {
      int64_t count = 0;
      int64_t next = 0;
      // The item expected next if nothing was missed.
      int64_t first = -1;
      int64_t last = -1;
      int64_t lags = 0;
      bool outOfOrder = false;
      bool silentGap = false;
      kj::Maybe<kj::Exception> otherError;
    };
    Reader readers[3];
    uint64_t ring = tractor::DEFAULT_MSG_BUFFER_SIZE;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Gauge ahead;
      // How far the slower of the two prompt readers has got.
      auto read = [&](tractor::Subscription& sub, Reader& r, bool prompt) -> Task<void> {
        if (!prompt) {
          // Lags on purpose: starts reading only once the others are past the ring's size.
          co_await ahead.atLeast(int64_t(ring) + 16);
        }
        bool lagPending = false;
        for (;;) {
          kj::Maybe<int64_t> item;
          bool ended = false;
          auto failed = co_await errorOf(sub.receive<int64_t>().then(
              [&](kj::Maybe<int64_t>&& v) {
                item = kj::mv(v);
                ended = item == nullptr;
              }));
          KJ_IF_MAYBE(e, failed) {
            if (isError(*e, tractor::LAGGED)) {
              ++r.lags;
              lagPending = true;
              continue;
            }
            r.otherError = kj::mv(*e);
            break;
          }
          if (ended) break;
          KJ_IF_MAYBE(v, item) {
            if (r.first < 0) r.first = *v;
            if (*v < r.next) r.outOfOrder = true;
            if (*v > r.next && !lagPending) r.silentGap = true;
            lagPending = false;
            r.next = *v + 1;
            r.last = *v;
            ++r.count;
            if (prompt) {
              int64_t slower = kj::min(readers[0].count, readers[1].count);
              if (slower > ahead.value()) ahead.add(slower - ahead.value());
            }
          }
        }
      };
      Portal p = co_await n.startActor("producer", tractor::enable("context_test"));
      co_await p.openContext(StreamOptions().withOverruns(), produce, COUNT,
                             [&](Context& ctx, Value) -> Task<void> {
        auto subscribed = [&](MsgStream& stream) -> Task<void> {
          auto a = stream.subscribe();
          auto b = stream.subscribe();
          auto c = stream.subscribe();
          co_await tractor::openTaskGroup([&](tractor::TaskGroup& g) -> Task<void> {
            g.start(read(*a, readers[0], true));
            g.start(read(*b, readers[1], true));
            g.start(read(*c, readers[2], false));
            co_return;
          });
        };
        co_await ctx.openStream(StreamOptions().withOverruns(), kj::mv(subscribed));
        co_await ctx.waitForResult();
      });
    });
    CHECK_CLEAN(error);
    for (int i = 0; i < 2; i++) {
      CAPTURE(i);
      CHECK_CLEAN(readers[i].otherError);
      CHECK(readers[i].count == COUNT);
      CHECK(readers[i].first == 0);
      CHECK(readers[i].lags == 0);
      CHECK(!readers[i].outOfOrder);
      CHECK(!readers[i].silentGap);
    }
    auto& laggard = readers[2];
    CHECK_CLEAN(laggard.otherError);
    CHECK(laggard.lags >= 1);
    CHECK(laggard.first > 0);
    CHECK(laggard.last == COUNT - 1);
    CHECK(laggard.count < COUNT);
    CHECK(!laggard.outOfOrder);
    CHECK(!laggard.silentGap);
  }

  // ---- 14. legacy one-way streams -----------------------------------------------------------

  TEST_CASE("stream from a legacy stream function delivers every item then ends") {
    int64_t count = -1;
    kj::Maybe<kj::Exception> afterEnd;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("ticker", tractor::enable("context_test"));
      co_await p.openStreamFrom(ticks, 50, [&](MsgStream& stream) -> Task<void> {
        count = co_await receiveInOrder(stream, nullptr);
        afterEnd = co_await errorOf(stream.receive().ignoreResult());
      });
    });
    CHECK_CLEAN(error);
    CHECK(count == 50);
    CHECK_RAISED(afterEnd, tractor::END_OF_STREAM);
  }

  TEST_CASE("stream from a legacy stream function left early cancels the remote function") {
    int64_t received = 0;
    int64_t cut = -1;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("ticker", tractor::enable("context_test"));
      co_await p.openStreamFrom(ticksThenHang, 10, [&](MsgStream& stream) -> Task<void> {
        for (int i = 0; i < 3; i++) {
          if (co_await stream.receive() != nullptr) ++received;
        }
      });
      cut = co_await p.run(cutFrameCount);
    });
    CHECK_CLEAN(error);
    CHECK(received == 3);
    CHECK(cut == 1);
  }

  // ---- 15. bounded ends, and cancellations that keep real errors ------------------------------

  TEST_CASE("context a callee ignoring its cancellation is given up on after the hard timeout") {
    kj::Maybe<kj::Exception> scope;
    kj::Own<Context> kept;
    kj::TimePoint asked = kj::origin<kj::TimePoint>();
    kj::Duration took = 0 * kj::SECONDS;
    bool cancelCalled = false;
    bool hadOutcome = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("stubborn", tractor::enable("context_test"));
      auto& timer = tractor::Actor::current().timer();
      scope = co_await errorOf(p.openContext(ignoresCancellation,
                                             [&](Context& ctx, Value) -> Task<void> {
        kept = ctx.addRef();
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          auto said = co_await stream.receive<kj::String>();
          KJ_REQUIRE(said != nullptr);
        });
        asked = timer.now();
        co_await ctx.cancel();
      }));
      took = timer.now() - asked;
      // Handles do not outlive the actor.
      REQUIRE(kept.get() != nullptr);
      cancelCalled = kept->cancelCalled();
      hadOutcome = kept->outcome() != nullptr;
      kept = nullptr;
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, tractor::ACTOR_TOO_SLOW);
    CHECK(contains(describe(scope), "did not end within"));
    CHECK(took >= tractor::CANCEL_HARD_TIMEOUT);
    CHECK(took < tractor::CANCEL_HARD_TIMEOUT + 2 * kj::SECONDS);
    CHECK(cancelCalled);
    CHECK(hadOutcome);
  }

  TEST_CASE("context a real error a nursery recorded wins over the cancellation of its task") {
    // The callee's nursery holds a child's failure (during the other child's grace) when its
    // caller cancels it: the task's outcome is that failure, not the cancellation.
    kj::Maybe<kj::Exception> scope;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("supervisor", tractor::enable("context_test"));
      scope = co_await errorOf(p.openContext(nurseryWithFailedChild,
                                             [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          auto said = co_await stream.receive<kj::String>();
          KJ_REQUIRE(said != nullptr);
          co_await ctx.cancel();
        });
      }));
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, "std::logic_error");
    CHECK(contains(describe(scope), "the child failed"));
  }

  // ---- 16. bad targets ----------------------------------------------------------------------

  TEST_CASE("context bad targets are clear errors at the caller") {
    bool blockRan = false;
    kj::Maybe<kj::Exception> notEnabled;
    kj::Maybe<kj::Exception> unknown;
    kj::Maybe<kj::Exception> plainFunction;
    kj::Maybe<kj::Exception> streamFunction;
    kj::Maybe<kj::Exception> runContext;
    kj::Maybe<kj::Exception> streamFromContext;
    kj::Maybe<kj::Exception> badArguments;
    int64_t afterwards = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("target", tractor::enable("context_test"));
      auto block = [&](Context&, Value) -> Task<void> {
        blockRan = true;
        co_return;
      };
      auto streamBlock = [&](MsgStream&) -> Task<void> {
        blockRan = true;
        co_return;
      };
      notEnabled = co_await errorOf(p.openContext(rootSleeper, block));
      unknown = co_await errorOf(p.openContext("context_test", "noSuchContext", block));
      plainFunction = co_await errorOf(p.openContext("context_test", "pid", block));
      streamFunction = co_await errorOf(p.openContext("context_test", "ticks", 3, block));
      runContext = co_await errorOf(p.run("context_test", "pingPong", 10).ignoreResult());
      streamFromContext = co_await errorOf(
          p.openStreamFrom("context_test", "pingPong", 10, streamBlock));
      badArguments = co_await errorOf(p.openContext("context_test", "pingPong", "ten", block));
      afterwards = co_await p.run(pid);
    });
    CHECK_CLEAN(error);
    CHECK(!blockRan);
    CHECK(afterwards > 0);
    CHECK_RAISED_REMOTELY(notEnabled, tractor::MODULE_NOT_EXPOSED);
    CHECK(contains(describe(notEnabled), "context_root"));
    CHECK_RAISED_REMOTELY(unknown, tractor::FUNCTION_NOT_FOUND);
    CHECK(contains(describe(unknown), "noSuchContext"));
    CHECK_RAISED_REMOTELY(plainFunction, tractor::CONTEXT_ERROR);
    CHECK(contains(describe(plainFunction), "pid"));
    CHECK_RAISED_REMOTELY(streamFunction, tractor::CONTEXT_ERROR);
    CHECK(contains(describe(streamFunction), "ticks"));
    CHECK_RAISED_REMOTELY(runContext, tractor::CONTEXT_ERROR);
    CHECK(contains(describe(runContext), "pingPong"));
    CHECK_RAISED_REMOTELY(streamFromContext, tractor::CONTEXT_ERROR);
    CHECK(contains(describe(streamFromContext), "pingPong"));
    CHECK_RAISED_REMOTELY(badArguments, tractor::BAD_ARGUMENTS);
    CHECK(contains(describe(badArguments), "argument 1"));
  }
}
