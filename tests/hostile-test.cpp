// Hostile and malformed input: message limits (size and nesting) on every connection, and peers
// that send bytes which are not Cap'n Proto framing. Each case checks what the receiver does (the
// connection broken or the one call failed, never a crash or a hang), what the sender learns, and
// that the error the user sees names capnp's reason.

#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <doctest/doctest.h>
#include <string.h>
#include <unistd.h>
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/supervise/main.h"
#include "tractor/spawn/exec-spawn.h"
#include "tests/support/calculator-server.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::MessageLimits;
using tractor::Portal;
using tractor::Task;
using tractor::Value;
using namespace tractor::test;

// ---- frames that are not what a Cap'n Proto peer sends --------------------------------------

const kj::byte TOO_MANY_SEGMENTS[] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
// A segment table announcing 2^31 segments.
const kj::byte HUGE_SEGMENT[] = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f};
// One segment of 2^28 words (2 GiB): refused before anything is allocated.
const kj::byte BAD_POINTER[] = {0, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
// Valid framing (one segment of two words) whose root pointer is garbage.

struct Garbage {
  kj::ArrayPtr<const kj::byte> bytes;
  kj::StringPtr reason;
  // What capnp 0.9.2 says about it.
};

kj::Array<Garbage> garbageKinds() {
  auto kinds = kj::heapArrayBuilder<Garbage>(3);
  kinds.add(Garbage{kj::arrayPtr(TOO_MANY_SEGMENTS, sizeof(TOO_MANY_SEGMENTS)),
                    "Message has too many segments"});
  kinds.add(Garbage{kj::arrayPtr(HUGE_SEGMENT, sizeof(HUGE_SEGMENT)), "Message is too large"});
  kinds.add(Garbage{kj::arrayPtr(BAD_POINTER, sizeof(BAD_POINTER)),
                    "Message contains non-struct pointer where struct pointer was expected"});
  return kinds.finish();
}

// ---- functions the children run --------------------------------------------------------------

kj::Exception nestedGroup(const tractor::ActorId& self, uint64_t depth) {
  // A chain of groups `depth` deep around one leaf error.
  if (depth == 0) return tractor::typedError("std::logic_error", "leaf");
  kj::Exception inner[] = {nestedGroup(self, depth - 1)};
  return tractor::errorGroup(self, "one level", kj::arrayPtr(inner, 1));
}

void raiseGroup(uint64_t members, uint64_t depth) {
  // An ErrorGroup of `members` errors, each the root of a chain of groups `depth` deep: what a
  // hostile (or very large) tree could make its parent read.
  auto& self = tractor::Actor::current().id();
  kj::Vector<kj::Exception> all;
  for (uint64_t i = 0; i < members; i++) all.add(nestedGroup(self, depth));
  kj::throwFatalException(tractor::errorGroup(self, "many", all));
}
TRACTOR_EXPOSE(hostile_test, raiseGroup);

uint64_t byteCount(kj::Array<kj::byte> data) { return data.size(); }
TRACTOR_EXPOSE(hostile_test, byteCount);

kj::Array<kj::byte> blob(uint64_t size) {
  auto bytes = kj::heapArray<kj::byte>(size);
  memset(bytes.begin(), 'x', size);
  return bytes;
}
TRACTOR_EXPOSE(hostile_test, blob);

uint64_t depthOf(Value value) {
  uint64_t depth = 0;
  auto reader = value.reader();
  while (reader.isList() && reader.getList().size() > 0) {
    reader = reader.getList()[0];
    depth++;
  }
  return depth;
}
TRACTOR_EXPOSE(hostile_test, depthOf);

Value nested(uint64_t depth) {
  // A list holding a list ... `depth` deep, around the integer 7.
  Value value;
  auto builder = value.builder();
  for (uint64_t i = 0; i < depth; i++) builder = builder.initList(1)[0];
  builder.setInt64(7);
  return value;
}
TRACTOR_EXPOSE(hostile_test, nested);

kj::String limitsHere() { return tractor::messageLimits().toString(); }
TRACTOR_EXPOSE(hostile_test, limitsHere);

Task<kj::String> grandchildLimits() {
  kj::String limits;
  co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
    Portal p = co_await n.startActor("grandchild", tractor::enable("hostile_test"));
    limits = co_await p.run(limitsHere);
  });
  co_return limits;
}
TRACTOR_EXPOSE(hostile_test, grandchildLimits);

kj::String ownAddress() {
  KJ_IF_MAYBE(address, tractor::Actor::current().address()) {
    return address->toString();
  }
  KJ_FAIL_ASSERT("the actor does not listen");
}
TRACTOR_EXPOSE(hostile_test, ownAddress);

int64_t writeGarbage(int64_t kind) {
  // Test-only: writes straight to the parent connection's socket, which a child finds at
  // CHILD_SOCKET_FD (both spawn backends put it there), behind the runtime's back.
  auto bytes = garbageKinds()[kind].bytes;
  ssize_t n;
  KJ_SYSCALL(n = write(tractor::CHILD_SOCKET_FD, bytes.begin(), bytes.size()));
  KJ_ASSERT(static_cast<size_t>(n) == bytes.size());
  return 0;
}
TRACTOR_EXPOSE(hostile_test, writeGarbage);

// ---- helpers -------------------------------------------------------------------------------

MessageLimits smallLimits() {
  // 512 KiB and 32 levels: a 1 MiB payload is beyond them.
  return MessageLimits().withMaxWords(64 * 1024).withNestingLimit(32);
}

constexpr uint64_t BIG = 1024 * 1024;


tractor::RootOptions smallRoot() {
  return tractor::RootOptions().withMessageLimits(smallLimits());
}

struct LimitsScope {
  // Sets this process's limits for a unit test and restores the defaults after it.
  explicit LimitsScope(MessageLimits limits) { tractor::setMessageLimits(limits); }
  ~LimitsScope() { tractor::setMessageLimits(MessageLimits()); }
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("message limits parse print and validate") {
    auto limits = MessageLimits::parse("65536:32");
    CHECK(limits.maxWords == 65536);
    CHECK(limits.nestingLimit == 32);
    CHECK(limits.toString() == "65536:32");
    CHECK(MessageLimits::parse(MessageLimits().toString()).maxWords == tractor::DEFAULT_MAX_WORDS);
    auto options = limits.readerOptions();
    CHECK(options.traversalLimitInWords == 65536);
    CHECK(options.nestingLimit == 32);
    for (auto bad: {"", "1", "65536:", ":32", "x:32", "65536:y", "65536:32:1", "-5:32",
                    "65536:-1", "100:32", "65536:4", "65536:5000", "99999999999999999999:32"}) {
      CAPTURE(bad);
      CHECK_THROWS(MessageLimits::parse(bad));
    }
    CHECK_THROWS(tractor::setMessageLimits(MessageLimits().withMaxWords(10)));
    CHECK(tractor::messageLimits().maxWords == tractor::DEFAULT_MAX_WORDS);
  }

  TEST_CASE("an oversized frame breaks an RpcConnection and both sides learn why") {
    auto io = kj::setupAsyncIo();
    auto pipe = io.provider->newTwoWayPipe();
    kj::Maybe<tractor::RpcConnection> server;
    {
      LimitsScope scope(MessageLimits().withMaxWords(4096));
      server.emplace(*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER,
                     capnp::Capability::Client(kj::heap<CalculatorServer>()));
    }
    tractor::RpcConnection client(*pipe.ends[1], capnp::rpc::twoparty::Side::CLIENT);
    auto calculator = client.bootstrap().castAs<calc::Calculator>();
    // Within the limit: answered.
    auto small = calculator.addRequest();
    small.setA(2);
    small.setB(3);
    CHECK(small.send().wait(io.waitScope).getSum() == 5);
    // 64 KiB of text against a 32 KiB limit.
    auto big = calculator.failRequest();
    big.setWhy(kj::str(kj::repeat('x', 64 * 1024)));
    auto error = errorOf(big.send().ignoreResult()).wait(io.waitScope);
    CHECK(contains(describe(error), "Message is too large"));
    KJ_IF_MAYBE(e, error) {
      CHECK(e->getType() == kj::Exception::Type::DISCONNECTED);
    }
    KJ_IF_MAYBE(s, server) {
      s->onDisconnect().wait(io.waitScope);
      client.onDisconnect().wait(io.waitScope);
      KJ_IF_MAYBE(why, s->failure()) {
        CHECK(contains(why->getDescription(), "the peer sent a message this actor refuses"));
        CHECK(contains(why->getDescription(), "Message is too large"));
      } else {
        FAIL_CHECK("the receiver recorded no failure");
      }
    }
    KJ_IF_MAYBE(why, client.failure()) {
      CHECK(contains(why->getDescription(), "the peer aborted the connection"));
      CHECK(contains(why->getDescription(), "Message is too large"));
    } else {
      FAIL_CHECK("the sender recorded no failure");
    }
  }

  TEST_CASE("garbage frames break an RpcConnection and the peer is told capnp's reason") {
    for (auto& kind: garbageKinds()) {
      CAPTURE(kind.reason.cStr());
      auto io = kj::setupAsyncIo();
      auto pipe = io.provider->newTwoWayPipe();
      tractor::RpcConnection server(*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER,
                                    capnp::Capability::Client(kj::heap<CalculatorServer>()));
      pipe.ends[1]->write(kind.bytes.begin(), kind.bytes.size()).wait(io.waitScope);
      server.onDisconnect().wait(io.waitScope);
      KJ_IF_MAYBE(why, server.failure()) {
        CHECK(contains(why->getDescription(), kind.reason));
      } else {
        FAIL_CHECK("the receiver recorded no failure");
      }
      // What the garbage's sender reads back: an Abort naming the reason, then the end.
      auto abort = capnp::readMessage(*pipe.ends[1]).wait(io.waitScope);
      auto message = abort->getRoot<capnp::rpc::Message>();
      REQUIRE(message.isAbort());
      CHECK(contains(message.getAbort().getReason(), kind.reason));
      kj::byte more;
      CHECK(pipe.ends[1]->tryRead(&more, 1, 1).wait(io.waitScope) == 0);
    }
  }

  TEST_CASE("an orderly end of an RpcConnection is no failure") {
    auto io = kj::setupAsyncIo();
    auto pipe = io.provider->newTwoWayPipe();
    tractor::RpcConnection server(*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER,
                                  capnp::Capability::Client(kj::heap<CalculatorServer>()));
    {
      tractor::RpcConnection client(*pipe.ends[1], capnp::rpc::twoparty::Side::CLIENT);
      auto add = client.bootstrap().castAs<calc::Calculator>().addRequest();
      add.setA(1);
      CHECK(add.send().wait(io.waitScope).getSum() == 1);
    }
    pipe.ends[1] = nullptr;
    server.onDisconnect().wait(io.waitScope);
    CHECK(server.failure() == nullptr);
  }
}

TEST_SUITE("multiproc") {
  TEST_CASE("children and grandchildren inherit the root's message limits") {
    kj::String child;
    kj::String grandchild;
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.startActor("limited", tractor::enable("hostile_test"));
          child = co_await p.run(limitsHere);
          grandchild = co_await p.run(grandchildLimits);
        },
        smallRoot());
    CHECK_CLEAN(error);
    CHECK(child == smallLimits().toString());
    CHECK(grandchild == smallLimits().toString());
    // The next root without limits is back to the defaults, and so are its children.
    auto again = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("plain", tractor::enable("hostile_test"));
      child = co_await p.run(limitsHere);
    });
    CHECK_CLEAN(again);
    CHECK(child == MessageLimits().toString());
  }

  TEST_CASE("a root refuses to start with limits too small for the runtime") {
    auto error = runAuditedRoot([]() -> kj::Promise<void> { return kj::READY_NOW; },
                                tractor::RootOptions().withMessageLimits(
                                    MessageLimits().withNestingLimit(2)));
    CHECK(contains(describe(error), "nestingLimit is too small"));
  }

  TEST_CASE("oversized arguments are refused at the sender and the connection stays") {
    // The tree shares its limits, so capnp refuses to send what the receiver would refuse.
    kj::Maybe<kj::Exception> callError;
    uint64_t within = 0;
    kj::String after;
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.startActor("receiver", tractor::enable("hostile_test"));
          within = co_await p.run(byteCount, blob(256 * 1024));
          callError = co_await errorOf(p.run(byteCount, blob(BIG)).ignoreResult());
          after = co_await p.run(limitsHere);
        },
        smallRoot());
    MESSAGE("call: ", shown(callError));
    CHECK_CLEAN(error);
    CHECK(within == 256 * 1024);
    CHECK_RAISED(callError, tractor::MESSAGE_TOO_LARGE);
    CHECK(contains(describe(callError), "a message to actor receiver@"));
    CHECK(contains(describe(callError), "limit of 65536 words"));
    CHECK(contains(describe(callError), "larger than our single-message size limit"));
    CHECK(after == smallLimits().toString());
  }

  TEST_CASE("an oversized result is refused at the callee and the caller names the reason") {
    kj::Maybe<kj::Exception> callError;
    kj::String after;
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.startActor("sender", tractor::enable("hostile_test"));
          callError = co_await errorOf(p.run(blob, BIG).ignoreResult());
          after = co_await p.run(limitsHere);
        },
        smallRoot());
    MESSAGE("call: ", shown(callError));
    CHECK_CLEAN(error);
    CHECK_RAISED(callError, tractor::MESSAGE_TOO_LARGE);
    CHECK(contains(describe(callError), "the answer of actor sender@"));
    CHECK(contains(describe(callError), "larger than our single-message size limit"));
    CHECK(after == smallLimits().toString());
  }

  TEST_CASE("a runInActor child whose result is oversized fails its nursery") {
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.runInActor(blob, BIG);
          co_await p.waitForResult<Value>();
        },
        smallRoot());
    MESSAGE("nursery: ", shown(error));
    CHECK_RAISED(error, tractor::MESSAGE_TOO_LARGE);
    CHECK(contains(describe(error), "larger than our single-message size limit"));
  }

  TEST_CASE("too deeply nested values fail the one call both ways and the connection stays") {
    uint64_t fits = 0;
    uint64_t fitsBack = 0;
    kj::Maybe<kj::Exception> argsError;
    kj::Maybe<kj::Exception> resultError;
    kj::String after;
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.startActor("nesting", tractor::enable("hostile_test"));
          fits = co_await p.run(depthOf, nested(20));
          fitsBack = depthOf(co_await p.run(nested, 20));
          argsError = co_await errorOf(p.run(depthOf, nested(40)).ignoreResult());
          resultError = co_await errorOf(p.run(nested, 40).ignoreResult());
          after = co_await p.run(limitsHere);
        },
        smallRoot());
    MESSAGE("arguments: ", shown(argsError));
    MESSAGE("result: ", shown(resultError));
    CHECK_CLEAN(error);
    CHECK(fits == 20);
    CHECK(fitsBack == 20);
    // The callee reads its arguments: the call is refused there, naming the argument.
    CHECK_RAISED_REMOTELY(argsError, tractor::BAD_ARGUMENTS);
    CHECK(contains(describe(argsError), "Message is too deeply-nested"));
    // The caller reads the result.
    CHECK_RAISED(resultError, tractor::MESSAGE_TOO_DEEP);
    CHECK(contains(describe(resultError), "a message from actor nesting@"));
    CHECK(contains(describe(resultError), "limit of 32 levels"));
    CHECK(contains(describe(resultError), "Message is too deeply-nested"));
    CHECK(after == smallLimits().toString());
  }

  TEST_CASE("a child writing malformed frames is disconnected and reaped with the reason") {
    auto kinds = garbageKinds();
    for (auto i: kj::indices(kinds)) {
      CAPTURE(kinds[i].reason.cStr());
      kj::Maybe<kj::Exception> callError;
      kj::Maybe<kj::Exception> nurseryError;
      auto error = runAuditedRoot([&]() -> Task<void> {
        // In a nursery of its own, so that its failure does not cancel the call that observes
        // it.
        LoneActor lone = co_await startLoneActor("garbler", "hostile_test");
        callError = co_await errorOf(
            lone.portal.run(writeGarbage, static_cast<int64_t>(i)).ignoreResult());
        lone.release->fulfill();
        nurseryError = co_await kj::mv(lone.supervision);
      });
      MESSAGE("call: ", shown(callError));
      MESSAGE("nursery: ", shown(nurseryError));
      CHECK_CLEAN(error);
      CHECK_RAISED(callError, tractor::TRANSPORT_CLOSED);
      CHECK(contains(describe(callError), kinds[i].reason));
      CHECK_RAISED(nurseryError, tractor::TRANSPORT_CLOSED);
      CHECK(contains(describe(nurseryError), "connection to actor garbler@"));
      CHECK(contains(describe(nurseryError), " broke: "));
      CHECK(contains(describe(nurseryError), kinds[i].reason));
    }
  }

  TEST_CASE("a daemon child writing malformed frames on its own fails its nursery") {
    // Nothing of the parent's is pending on the connection: only the nursery can tell.
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("garbler", tractor::enable("hostile_test"));
      // Never awaited: the block waits for the nursery to cancel it.
      auto call = p.run(writeGarbage, int64_t(0)).ignoreResult().eagerlyEvaluate(
          [](kj::Exception&&) {});
      co_await kj::Promise<void>(kj::NEVER_DONE);
    });
    MESSAGE("nursery: ", shown(error));
    CHECK_RAISED(error, tractor::TRANSPORT_CLOSED);
    CHECK(contains(describe(error), "Message has too many segments"));
  }

  TEST_CASE("oversized messages on a peer connection are refused at their sender") {
    kj::Maybe<kj::Exception> toPeer;
    kj::Maybe<kj::Exception> fromPeer;
    kj::String stillThere;
    auto error = runAuditedTree(
        [&](ActorNursery& n) -> Task<void> {
          Portal p = co_await n.startActor("peer", tractor::enable("hostile_test"));
          auto address = tractor::Address::parse(co_await p.run(ownAddress));
          Portal direct = co_await tractor::connectTo(address);
          toPeer = co_await errorOf(direct.run(byteCount, blob(BIG)).ignoreResult());
          Portal again = co_await tractor::connectTo(address);
          fromPeer = co_await errorOf(again.run(blob, BIG).ignoreResult());
          stillThere = co_await p.run(limitsHere);
        },
        smallRoot());
    MESSAGE("to the peer: ", shown(toPeer));
    MESSAGE("from the peer: ", shown(fromPeer));
    CHECK_CLEAN(error);
    CHECK_RAISED(toPeer, tractor::MESSAGE_TOO_LARGE);
    CHECK_RAISED(fromPeer, tractor::MESSAGE_TOO_LARGE);
    CHECK(stillThere == smallLimits().toString());
  }

  TEST_CASE("an error group of more members than kept or nested past the limit is read in bounds") {
    kj::Maybe<kj::Exception> many;
    kj::Maybe<kj::Exception> deep;
    uint64_t after = 0;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("grouper", tractor::enable("hostile_test"));
      many = co_await errorOf(p.run(raiseGroup, tractor::MAX_GROUP_MEMBERS + 100, 0));
      deep = co_await errorOf(p.run(raiseGroup, 1, 100));
      after = co_await p.run(byteCount, kj::heapArray<kj::byte>(3));
    });
    CHECK_CLEAN(error);
    KJ_IF_MAYBE(e, many) {
      auto group = KJ_ASSERT_NONNULL(tractor::ErrorGroup::from(*e));
      CHECK(group.members.size() == tractor::MAX_GROUP_MEMBERS);
      CHECK(contains(group.message, "100 more members were dropped"));
    } else {
      FAIL("the group was not raised");
    }
    // Past the connection's nesting limit: refused with the reason, never a crash.
    CHECK_MESSAGE((raised(deep, tractor::MESSAGE_TOO_DEEP) ||
                   contains(describe(deep), "too deeply-nested")),
                  shown(deep));
    CHECK(after == 3);
  }
}
