// Typed dialogues across real processes: payload specs checked at both ends (MsgTypeError on
// the started value, on stream items in each direction and on the result), narrowing, and
// capabilities inside payloads with their structured lifetimes (revoked when the context that
// handed them out ends, or when the actor serving them is cancelled), including a hand-off to a
// third actor. The schema is tests/typed.capnp, compiled with tractor_add_schema().

#include <doctest/doctest.h>
#include "tractor/supervise/main.h"
#include "tests/support/fake-env.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"
#include "tests/typed.capnp.h"

namespace {

using tractor::ActorNursery;
using tractor::CallerContext;
using tractor::CalleeContext;
using tractor::DialogueSpec;
using tractor::Portal;
using tractor::Task;
using tractor::Typed;
using tractor::Value;
using namespace tractor::test;
using namespace typedtest;

using Session = DialogueSpec<Hello, Request, Reply, Summary>;
// The dialogue the tests' context functions declare.

// ---- in the child actors ------------------------------------------------------------------

int64_t liveCounters = 0;
// CounterServer objects alive in this process.
kj::String calleeSaw = kj::str();
// What a callee's runtime call raised, for the test to ask afterwards (`seen()`).
kj::Maybe<kj::Own<tractor::Context>> lastCallee;
// The callee side of the last recording context: `seen()` reports the error it ended with (a
// refusal interrupts the callee's task wherever it is, so the task itself cannot note it).

class CounterServer final: public Counter::Server {
public:
  CounterServer() { ++liveCounters; }
  ~CounterServer() noexcept(false) { --liveCounters; }

  kj::Promise<void> next(NextContext call) override {
    call.getResults().setN(++count);
    return kj::READY_NOW;
  }
  kj::Promise<void> hang(HangContext call) override {
    call.allowCancellation();
    return kj::NEVER_DONE;
  }

private:
  int64_t count = 0;
};

int64_t counters() { return liveCounters; }
TRACTOR_EXPOSE(typed_test, counters);

kj::String seen() {
  // Forgets the context (which must not outlive the actor's event loop).
  auto kept = kj::mv(lastCallee);
  lastCallee = nullptr;
  KJ_IF_MAYBE(c, kept) {
    KJ_IF_MAYBE(o, (*c)->outcome()) {
      if (o->is<kj::Exception>()) {
        auto& e = o->get<kj::Exception>();
        return kj::str(tractor::errorTypeName(e), ": ", e.getDescription());
      }
    }
  }
  return kj::str(calleeSaw);
}
TRACTOR_EXPOSE(typed_test, seen);

void record(const kj::Exception& e) {
  calleeSaw = kj::str(tractor::errorTypeName(e), ": ", e.getDescription());
}

Typed<Hello> hello(kj::StringPtr greeting, bool withCounter) {
  Typed<Hello> h;
  h.builder().setGreeting(greeting);
  if (withCounter) h.builder().setCounter(kj::heap<CounterServer>());
  return h;
}

Task<Typed<Summary>> echo(CalleeContext<Session>& ctx, int64_t offset) {
  // Sends a Hello holding a fresh Counter, answers each Request with a Reply (n + offset), and
  // returns the sum of the requests with a second Counter.
  co_await ctx.started(hello("welcome", true));
  int64_t total = 0;
  co_await ctx.openStream([&](CalleeContext<Session>::Stream& stream) -> Task<void> {
    for (;;) {
      auto request = co_await stream.receive();
      KJ_IF_MAYBE(r, request) {
        total += r->reader().getN();
        Typed<Reply> reply;
        reply.builder().setN(r->reader().getN() + offset);
        reply.builder().setText(kj::str("#", r->reader().getN()));
        co_await stream.send(kj::mv(reply));
      } else {
        break;
      }
    }
  });
  Typed<Summary> summary;
  summary.builder().setTotal(total);
  summary.builder().setCounter(kj::heap<CounterServer>());
  co_return summary;
}
TRACTOR_CONTEXT(typed_test, echo);

using OtherStarted = DialogueSpec<Other, Request, Reply, Summary>;
using OtherCallerItems = DialogueSpec<Hello, Other, Reply, Summary>;
using OtherCalleeItems = DialogueSpec<Hello, Request, Other, Summary>;
using OtherResult = DialogueSpec<Hello, Request, Reply, Other>;
// Specs that differ from Session in one slot: what a caller built against another schema (or a
// hostile one) opens the context with.

Task<Typed<Summary>> recordingEcho(CalleeContext<Session>& ctx, int64_t offset) {
  // `echo`, keeping its context for `seen()`.
  lastCallee = ctx.untyped().addRef();
  co_return co_await echo(ctx, offset);
}
TRACTOR_CONTEXT(typed_test, recordingEcho);

Task<Typed<Summary>> badStartedFirst(CalleeContext<Session>& ctx) {
  // Tries to start with a value that is not a Hello (through the untyped view), which must be
  // refused before sending, then starts properly.
  try {
    co_await ctx.untyped().started(Value::of(42));
  } catch (const kj::Exception& e) {
    record(e);
  }
  co_await ctx.started(hello("second try", false));
  Typed<Summary> summary;
  summary.builder().setTotal(7);
  co_return summary;
}
TRACTOR_CONTEXT(typed_test, badStartedFirst);

using Loose = DialogueSpec<Value, Value, Value, Value>;
// Every slot dynamic: the context a spec can be narrowed in.

Task<Value> narrowing(CalleeContext<Loose>& ctx) {
  // Accepts anything, then only Requests while a limit is in scope, then anything again, then
  // only Requests once more; says "narrowed" / "widened" when it changed what it accepts.
  lastCallee = ctx.untyped().addRef();
  co_await ctx.started(Value());
  try {
    co_await ctx.openStream([&](CalleeContext<Loose>::Stream& stream) -> Task<void> {
      co_await stream.receive();
      {
        auto limit = ctx.limitItems<Request>();
        co_await stream.send(Value::of("narrowed"));
        co_await stream.receive();
      }
      co_await stream.send(Value::of("widened"));
      co_await stream.receive();
      auto limit = ctx.limitItems<Request>();
      co_await stream.send(Value::of("narrowed"));
      co_await stream.receive();
    });
  } catch (const kj::Exception& e) {
    record(e);
    throw;
  }
  co_return Value();
}
TRACTOR_CONTEXT(typed_test, narrowing);

using HandOff = DialogueSpec<Value, Hello, Reply, Summary>;
// A user of capabilities it is handed: each Hello item with a counter is kept and called; a
// Hello without one calls the one kept last.

Task<Typed<Summary>> user(CalleeContext<HandOff>& ctx) {
  co_await ctx.started(Value());
  int64_t calls = 0;
  co_await ctx.openStream([&](CalleeContext<HandOff>::Stream& stream) -> Task<void> {
    kj::Maybe<Counter::Client> kept;
    for (;;) {
      auto item = co_await stream.receive();
      KJ_IF_MAYBE(h, item) {
        if (h->reader().hasCounter()) kept = h->reader().getCounter();
        Counter::Client counter = KJ_REQUIRE_NONNULL(kept, "no counter was handed over");
        Typed<Reply> reply;
        auto error = co_await errorOf(counter.nextRequest().send().then(
            [&reply](auto&& response) { reply.builder().setN(response.getN()); }));
        KJ_IF_MAYBE(e, error) {
          reply.builder().setN(-1);
          reply.builder().setText(e->getDescription());
        } else {
          ++calls;
        }
        co_await stream.send(kj::mv(reply));
      } else {
        break;
      }
    }
  });
  Typed<Summary> summary;
  summary.builder().setTotal(calls);
  co_return summary;
}
TRACTOR_CONTEXT(typed_test, user);

Typed<Hello> counterFor(kj::String greeting) { return hello(greeting, true); }
TRACTOR_EXPOSE(typed_test, counterFor);
// A function result that holds a capability: revoked when this actor is cancelled.

Task<int64_t> next(Counter::Client counter) {
  auto response = co_await counter.nextRequest().send();
  co_return response.getN();
}

int64_t nextNow(Counter::Client counter, kj::WaitScope& waitScope) {
  return kj::Promise<int64_t>(next(kj::mv(counter))).wait(waitScope);
}

kj::Promise<kj::Maybe<kj::Exception>> nextError(Counter::Client counter) {
  return errorOf(counter.nextRequest().send().ignoreResult());
}

bool mentions(const kj::Maybe<kj::Exception>& error, kj::StringPtr text) {
  return contains(describe(error), text);
}

Typed<Request> request(int64_t n) {
  Typed<Request> r;
  r.builder().setN(n);
  return r;
}

template <typename Spec>
Task<void> oneExchange(CallerContext<Spec>& ctx) {
  // Sends one Request, reads one reply, closes the stream and waits for the result.
  co_await ctx.openStream([&](typename CallerContext<Spec>::Stream& stream) -> Task<void> {
    co_await stream.send(request(1));
    co_await stream.receive();
  });
  co_await ctx.waitForResult();
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("typed context: structs both ways, a typed result, capabilities in payloads") {
    kj::String greeting;
    int64_t firstCount = 0;
    int64_t secondCount = 0;
    kj::Vector<int64_t> replies;
    kj::String lastText;
    int64_t total = 0;
    int64_t resultCount = 0;
    kj::Maybe<kj::Exception> afterScope;
    kj::Maybe<kj::Exception> resultAfterScope;
    int64_t liveAfter = -1;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      kj::Maybe<Counter::Client> kept;
      kj::Maybe<Counter::Client> keptResult;
      co_await p.openContext(echo, 100,
                             [&](CallerContext<Session>& ctx, Typed<Hello> h) -> Task<void> {
        greeting = kj::str(h.reader().getGreeting());
        auto counter = h.reader().getCounter();
        firstCount = co_await next(counter);
        secondCount = co_await next(counter);
        kept = counter;
        co_await ctx.openStream([&](CallerContext<Session>::Stream& stream) -> Task<void> {
          for (int64_t i = 1; i <= 3; i++) {
            Typed<Request> request;
            request.builder().setN(i);
            co_await stream.send(kj::mv(request));
            auto reply = co_await stream.receive();
            KJ_IF_MAYBE(r, reply) {
              replies.add(r->reader().getN());
              lastText = kj::str(r->reader().getText());
            }
          }
        });
        Typed<Summary> summary = co_await ctx.waitForResult();
        total = summary.reader().getTotal();
        resultCount = co_await next(summary.reader().getCounter());
        keptResult = summary.reader().getCounter();
      });
      // The context is over: what it handed out no longer works.
      Counter::Client fromStarted = KJ_ASSERT_NONNULL(kept);
      Counter::Client fromResult = KJ_ASSERT_NONNULL(keptResult);
      afterScope = co_await nextError(fromStarted);
      resultAfterScope = co_await nextError(fromResult);
      liveAfter = co_await p.run(counters);
    });
    CHECK_CLEAN(error);
    CHECK(greeting == "welcome");
    CHECK(firstCount == 1);
    CHECK(secondCount == 2);
    REQUIRE(replies.size() == 3);
    CHECK(replies[0] == 101);
    CHECK(replies[2] == 103);
    CHECK(lastText == "#3");
    CHECK(total == 6);
    CHECK(resultCount == 1);
    CHECK_RAISED(afterScope, tractor::CAPABILITY_REVOKED);
    CHECK_RAISED(resultAfterScope, tractor::CAPABILITY_REVOKED);
    // Nothing in the child is reachable through the revoked capabilities any more.
    CHECK(liveAfter == 0);
  }

  TEST_CASE("typed context: a started value of the wrong type is refused at the caller") {
    kj::Maybe<kj::Exception> scope;
    kj::String calleeError;
    kj::String childUuid;
    kj::String rootUuid;
    bool blockRan = false;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      childUuid = kj::str(p.actorId().uuid);
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      scope = co_await errorOf(p.openContext(
          "typed_test", "recordingEcho", 0,
          [&](CallerContext<OtherStarted>&, Typed<Other>) -> Task<void> {
            blockRan = true;
            co_return;
          }));
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    CHECK_FALSE(blockRan);
    CHECK_RAISED(scope, tractor::MSG_TYPE_ERROR);
    CHECK(sourceUuid(scope) == rootUuid);
    CHECK_MESSAGE(mentions(scope, "started value"), shown(scope));
    CHECK_MESSAGE(mentions(scope, "Other"), shown(scope));
    CHECK_MESSAGE(mentions(scope, "got tests/typed.capnp:Hello"), shown(scope));
    // Relayed to the sender: the callee's started() raised it.
    CHECK_MESSAGE(calleeError.startsWith(tractor::MSG_TYPE_ERROR), ds(calleeError));
    (void)childUuid;
  }

  TEST_CASE("typed context: a value that does not match is refused before sending") {
    kj::String greeting;
    kj::String calleeError;
    int64_t total = 0;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      co_await p.openContext(badStartedFirst,
                             [&](CallerContext<Session>& ctx, Typed<Hello> h) -> Task<void> {
        greeting = kj::str(h.reader().getGreeting());
        Typed<Summary> summary = co_await ctx.waitForResult();
        total = summary.reader().getTotal();
      });
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    // The refused value never reached the caller; the second one did.
    CHECK(greeting == "second try");
    CHECK(total == 7);
    CHECK_MESSAGE(calleeError.startsWith(tractor::MSG_TYPE_ERROR), ds(calleeError));
    CHECK_MESSAGE(contains(calleeError, "it was not sent"), ds(calleeError));
    CHECK_MESSAGE(contains(calleeError, "got int64 42"), ds(calleeError));
  }
}

TEST_SUITE("multiproc") {
  TEST_CASE("typed context: a caller's stream item of the wrong type is refused by the callee") {
    kj::Maybe<kj::Exception> scope;
    kj::String calleeError;
    kj::String childUuid;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      childUuid = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(
          "typed_test", "recordingEcho", 0,
          [&](CallerContext<OtherCallerItems>& ctx, Typed<Hello>) -> Task<void> {
            co_await ctx.openStream([&](CallerContext<OtherCallerItems>::Stream& s) -> Task<void> {
              Typed<Other> other;
              other.builder().setX(1.5);
              co_await s.send(kj::mv(other));
              co_await s.receive();
            });
          }));
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, tractor::MSG_TYPE_ERROR);
    CHECK(sourceUuid(scope) == childUuid);
    CHECK_MESSAGE(mentions(scope, "stream item"), shown(scope));
    // The child names Other if its process has seen the type (a forkserver child may have), by
    // its id otherwise.
    auto expected = "expected tests/typed.capnp:Request, got "_kj;
    CHECK_MESSAGE((mentions(scope, kj::str(expected, "tests/typed.capnp:Other")) ||
                   mentions(scope, kj::str(expected, "struct @0x",
                                           kj::hex(capnp::typeId<Other>())))),
                  shown(scope));
    CHECK_MESSAGE(calleeError.startsWith(tractor::MSG_TYPE_ERROR), ds(calleeError));
  }

  TEST_CASE("typed context: a callee's stream item of the wrong type is refused by the caller") {
    kj::Maybe<kj::Exception> scope;
    kj::String calleeError;
    kj::String rootUuid;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      scope = co_await errorOf(p.openContext(
          "typed_test", "recordingEcho", 0,
          [&](CallerContext<OtherCalleeItems>& ctx, Typed<Hello>) -> Task<void> {
            co_await oneExchange(ctx);
          }));
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, tractor::MSG_TYPE_ERROR);
    CHECK(sourceUuid(scope) == rootUuid);
    CHECK_MESSAGE(mentions(scope, "stream item"), shown(scope));
    CHECK_MESSAGE(
        mentions(scope, "expected tests/typed.capnp:Other, got tests/typed.capnp:Reply"),
        shown(scope));
    // Relayed to the sender: the callee's next receive raised it.
    CHECK_MESSAGE(calleeError.startsWith(tractor::MSG_TYPE_ERROR), ds(calleeError));
  }

  TEST_CASE("typed context: a result of the wrong type is refused by the caller") {
    kj::Maybe<kj::Exception> scope;
    kj::String rootUuid;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      scope = co_await errorOf(p.openContext(
          "typed_test", "echo", 0,
          [&](CallerContext<OtherResult>& ctx, Typed<Hello>) -> Task<void> {
            co_await oneExchange(ctx);
          }));
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, tractor::MSG_TYPE_ERROR);
    CHECK(sourceUuid(scope) == rootUuid);
    CHECK_MESSAGE(mentions(scope, "the result from"), shown(scope));
    CHECK_MESSAGE(
        mentions(scope, "expected tests/typed.capnp:Other, got tests/typed.capnp:Summary"),
        shown(scope));
  }

  TEST_CASE("typed context: malformed typed content is refused with MsgTypeError") {
    kj::Maybe<kj::Exception> scope;
    kj::String calleeError;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      // A hostile caller: claims a Request, sends a list.
      scope = co_await errorOf(p.openContext(
          "typed_test", "recordingEcho", 0, [&](CallerContext<Loose>& ctx, Value) -> Task<void> {
            co_await ctx.openStream([&](CallerContext<Loose>::Stream& s) -> Task<void> {
              Value forged;
              auto typed = forged.builder().initTyped();
              typed.setTypeId(capnp::typeId<Request>());
              typed.getContent().initAs<capnp::List<int64_t>>(3);
              co_await s.send(kj::mv(forged));
              co_await s.receive();
            });
          }));
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED_REMOTELY(scope, tractor::MSG_TYPE_ERROR);
    CHECK_MESSAGE(mentions(scope, "content is not a struct"), shown(scope));
    CHECK_MESSAGE(calleeError.startsWith(tractor::MSG_TYPE_ERROR), ds(calleeError));
  }

  TEST_CASE("typed context: limitItems narrows what arrives for a scope, then widens again") {
    kj::Vector<kj::String> said;
    kj::Maybe<kj::Exception> scope;
    kj::String calleeError;
    kj::String childUuid;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      childUuid = kj::str(p.actorId().uuid);
      scope = co_await errorOf(p.openContext(
          narrowing, [&](CallerContext<Loose>& ctx, Value) -> Task<void> {
            co_await ctx.openStream([&](CallerContext<Loose>::Stream& s) -> Task<void> {
              co_await s.send(Value::of(1));  // anything goes
              auto a = co_await s.receive();
              said.add(KJ_ASSERT_NONNULL(a).as<kj::String>());
              co_await s.send(request(2).release());  // narrowed: a Request is accepted
              auto b = co_await s.receive();
              said.add(KJ_ASSERT_NONNULL(b).as<kj::String>());
              co_await s.send(Value::of(3));  // widened again
              auto c = co_await s.receive();
              said.add(KJ_ASSERT_NONNULL(c).as<kj::String>());
              co_await s.send(Value::of(4));  // narrowed: refused
              co_await s.receive();
            });
          }));
      calleeError = co_await p.run(seen);
    });
    CHECK_CLEAN(error);
    REQUIRE(said.size() == 3);
    CHECK(said[0] == "narrowed");
    CHECK(said[1] == "widened");
    CHECK(said[2] == "narrowed");
    CHECK_RAISED_REMOTELY(scope, tractor::MSG_TYPE_ERROR);
    CHECK(sourceUuid(scope) == childUuid);
    CHECK_MESSAGE(contains(calleeError, "expected tests/typed.capnp:Request, got int64 4"),
                  ds(calleeError));
  }

  TEST_CASE("typed context: a capability handed on to a third actor dies with its context") {
    int64_t viaThird = 0;
    int64_t direct = 0;
    int64_t afterEnd = 0;
    kj::String afterEndText;
    int64_t calls = 0;
    int64_t liveInA = -1;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal a = co_await n.startActor("a", tractor::enable("typed_test"));
      Portal b = co_await n.startActor("b", tractor::enable("typed_test"));
      co_await b.openContext(user, [&](CallerContext<HandOff>& bctx, Value) -> Task<void> {
        co_await bctx.openStream([&](CallerContext<HandOff>::Stream& toB) -> Task<void> {
          co_await a.openContext(echo, 0,
                                 [&](CallerContext<Session>& actx, Typed<Hello> h) -> Task<void> {
            Typed<Hello> pass;
            pass.builder().setCounter(h.reader().getCounter());
            co_await toB.send(kj::mv(pass));
            auto reply = co_await toB.receive();
            viaThird = KJ_ASSERT_NONNULL(reply).reader().getN();
            direct = co_await next(h.reader().getCounter());
            co_await oneExchange(actx);
          });
          // A's context is over: B's copy of the counter must be dead too.
          co_await toB.send(Typed<Hello>());
          auto reply = co_await toB.receive();
          afterEnd = KJ_ASSERT_NONNULL(reply).reader().getN();
          afterEndText = kj::str(KJ_ASSERT_NONNULL(reply).reader().getText());
        });
        Typed<Summary> summary = co_await bctx.waitForResult();
        calls = summary.reader().getTotal();
      });
      liveInA = co_await a.run(counters);
    });
    CHECK_CLEAN(error);
    CHECK(viaThird == 1);  // B -> root -> A
    CHECK(direct == 2);    // the same counter
    CHECK(afterEnd == -1);
    CHECK_MESSAGE(contains(afterEndText, tractor::CAPABILITY_REVOKED), ds(afterEndText));
    CHECK(calls == 1);
    CHECK(liveInA == 0);
  }

  TEST_CASE("typed context: runtime messages pass whatever the spec; only narrowing is allowed") {
    kj::Maybe<kj::Exception> widening;
    bool cancelled = false;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      co_await p.openContext(echo, 0, [&](CallerContext<Session>& ctx, Typed<Hello>) -> Task<void> {
        // The items from the callee are Replies already: limiting them to Reply is allowed,
        // limiting them to another type is not (a limit only narrows).
        auto same = ctx.limitItems<Reply>();
        widening = kj::runCatchingExceptions([&]() { auto other = ctx.limitItems<Other>(); });
        // The cancel request, its acknowledgement and the callee's ContextCancelled are not
        // payloads: they pass, and this side's own cancel is absorbed.
        co_await ctx.cancel();
        cancelled = ctx.cancelCalled();
      });
    });
    CHECK_CLEAN(error);
    CHECK(cancelled);
    CHECK_MESSAGE(mentions(widening, "can only narrow"), shown(widening));
  }

  TEST_CASE("typed context: a call in flight fails when its context ends") {
    kj::Maybe<kj::Promise<kj::Maybe<kj::Exception>>> inFlight;
    kj::Maybe<kj::Exception> hung;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      co_await p.openContext(echo, 0,
                             [&](CallerContext<Session>& ctx, Typed<Hello> h) -> Task<void> {
        Counter::Client counter = h.reader().getCounter();
        inFlight = errorOf(counter.hangRequest().send().ignoreResult()).eagerlyEvaluate(nullptr);
        co_await next(counter);  // the hang call was delivered before this one returned
        co_await oneExchange(ctx);
      });
      auto pending = kj::mv(KJ_ASSERT_NONNULL(inFlight));
      hung = co_await kj::mv(pending);
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(hung, tractor::CAPABILITY_REVOKED);
  }

  TEST_CASE("typed payloads: capabilities in a function's result are revoked on actor cancel") {
    kj::String greeting;
    int64_t before = 0;
    kj::Maybe<kj::Exception> inFlight;
    kj::Maybe<kj::Exception> after;
    kj::String rootUuid;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("typed", tractor::enable("typed_test"));
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      Typed<Hello> h = co_await p.run(counterFor, "hi");
      greeting = kj::str(h.reader().getGreeting());
      Counter::Client counter = h.reader().getCounter();
      before = co_await next(counter);
      auto hanging = errorOf(counter.hangRequest().send().ignoreResult()).eagerlyEvaluate(nullptr);
      co_await next(counter);
      co_await p.cancelActor();
      inFlight = co_await kj::mv(hanging);
      after = co_await nextError(counter);
    });
    CHECK_CLEAN(error);
    CHECK(greeting == "hi");
    CHECK(before == 1);
    // The actor's cancellation, as a ContextCancelled naming who asked (the root).
    CHECK_RAISED(inFlight, tractor::CONTEXT_CANCELLED);
    CHECK_RAISED(after, tractor::CONTEXT_CANCELLED);
    CHECK(cancellerUuid(after) == rootUuid);
  }
}

TEST_SUITE("unit") {
  TEST_CASE("typed payloads: a struct travels as itself inside a Value") {
    Typed<Reply> reply;
    reply.builder().setN(5);
    reply.builder().setText("five");
    Value v = Value::of(reply);  // through the codec: a copy
    CHECK(v.reader().isTyped());
    CHECK(v.reader().getTyped().getTypeId() == capnp::typeId<Reply>());
    CHECK(tractor::kindName(v.reader()) == "struct");
    CHECK(v.toString() == "<tests/typed.capnp:Reply>");
    CHECK(v == Value::of(reply));
    auto back = v.as<Typed<Reply>>();
    CHECK(back.reader().getN() == 5);
    CHECK(back.reader().getText() == "five");
    Value released = kj::mv(back).release();  // no copy: the same message
    CHECK(released == v);
    // Another struct type, or a dynamic value, does not decode as a Reply.
    Typed<Request> other;
    auto wrongType = kj::runCatchingExceptions([&]() { Value::of(other).as<Typed<Reply>>(); });
    CHECK_MESSAGE(contains(KJ_ASSERT_NONNULL(wrongType).getDescription(),
                          "expected tests/typed.capnp:Reply, got tests/typed.capnp:Request"),
                  ds(KJ_ASSERT_NONNULL(wrongType).getDescription()));
    auto dynamic = kj::runCatchingExceptions([&]() { Value::of(3).as<Typed<Reply>>(); });
    CHECK_MESSAGE(contains(KJ_ASSERT_NONNULL(dynamic).getDescription(), "got int64 3"),
                  ds(KJ_ASSERT_NONNULL(dynamic).getDescription()));
  }

  TEST_CASE("typed payloads: capabilities are kept, and a revoker cuts them off") {
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    int64_t live = liveCounters;
    {
      auto h = hello("hi", true);
      CHECK(h.asValue().hasCapabilities());
      CHECK_FALSE(hello("no", false).asValue().hasCapabilities());
      Value copy = h.asValue().clone();  // a copy holds the same capability
      CHECK(copy.hasCapabilities());
      auto viaCopy = Typed<Hello>::fromValue(kj::mv(copy));
      CHECK(nextNow(viaCopy.reader().getCounter(), waitScope) == 1);

      auto revoker = kj::refcounted<tractor::Revoker>();
      auto guarded = Typed<Hello>::fromValue(revoker->guard(h.asValue().clone()));
      auto counter = guarded.reader().getCounter();
      CHECK(nextNow(counter, waitScope) == 2);
      auto pending = counter.hangRequest().send();
      revoker->revoke(tractor::typedError(tractor::CAPABILITY_REVOKED, "the test is over"));
      auto inFlight = kj::runCatchingExceptions([&]() { pending.wait(waitScope); });
      CHECK(tractor::errorTypeName(KJ_ASSERT_NONNULL(inFlight)) == tractor::CAPABILITY_REVOKED);
      auto later = kj::runCatchingExceptions([&]() { nextNow(counter, waitScope); });
      CHECK(tractor::errorTypeName(KJ_ASSERT_NONNULL(later)) == tractor::CAPABILITY_REVOKED);
      // The unguarded holders still reach it.
      CHECK(nextNow(h.reader().getCounter(), waitScope) == 3);
    }
    loop.run();
    CHECK(liveCounters == live);
  }

  TEST_CASE("typed payloads: a payload spec names what is wrong") {
    auto expected = tractor::PayloadType::of<Request>();
    CHECK(tractor::payloadMismatch(expected, tractor::Typed<Request>().asValue().reader()) ==
          nullptr);
    CHECK(tractor::payloadMismatch(nullptr, Value::of("anything").reader()) == nullptr);
    auto why = KJ_ASSERT_NONNULL(tractor::payloadMismatch(expected, Value::of("x").reader()));
    CHECK(why == "expected tests/typed.capnp:Request, got text \"x\"");
    Value forged;
    auto typed = forged.builder().initTyped();
    typed.setTypeId(capnp::typeId<Request>());
    typed.getContent().initAs<capnp::List<int64_t>>(2);
    auto notStruct = KJ_ASSERT_NONNULL(tractor::payloadMismatch(expected, forged.reader()));
    CHECK(contains(notStruct, "content is not a struct"));
  }
}

TEST_SUITE("unit") {
  TEST_CASE("a context refuses a stream batch larger than any sender makes") {
    // A hostile peer's batch of empty items (nearly free on the wire, a Value each here).
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    tractor::test::FakeEnv env(tractor::ActorId{kj::str("me"), kj::str("uuid-me"), 1});
    auto ctx = kj::refcounted<tractor::Context>(
        tractor::Context::Side::CALLER, env,
        tractor::ActorId{kj::str("peer"), kj::str("uuid-peer"), 2}, tractor::StreamOptions());
    auto peer = tractor::serveContext(*ctx);
    auto batch = peer.sendRequest();
    batch.initItems(100000);
    auto response = batch.send().wait(waitScope);
    REQUIRE(response.hasRefused());
    auto refused = tractor::unboxError(response.getRefused());
    CHECK(tractor::errorTypeName(refused) == tractor::CONTEXT_ERROR);
    CHECK_MESSAGE(contains(refused.getDescription(), "larger than any sender may make"),
                  ds(refused.getDescription()));
    // The dialogue is over: a later, ordinary batch is refused too.
    auto later = peer.sendRequest();
    later.initItems(1);
    CHECK(later.send().wait(waitScope).hasRefused());
  }
}
