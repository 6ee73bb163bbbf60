// Error typing, boxing and the remote-error layout.

#include <doctest/doctest.h>
#include <capnp/message.h>
#include <stdexcept>
#include "tractor/kj-runtime/wire/errors.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::test::contains;

tractor::ActorId actor(kj::StringPtr name, uint32_t pid) {
  return {kj::str(name), tractor::newUuid(), pid};
}

kj::Exception roundTrip(const kj::Exception& e, const tractor::ActorId& self) {
  capnp::MallocMessageBuilder message;
  auto error = message.initRoot<tractor::schema::Error>();
  tractor::boxError(error, e, self);
  return tractor::unboxError(error.asReader());
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("typed errors carry their type name") {
    auto e = tractor::typedError("my::Error", "went wrong");
    KJ_IF_MAYBE(name, tractor::typedErrorName(e)) {
      CHECK(*name == "my::Error");
    } else {
      FAIL("not typed");
    }
    CHECK(tractor::errorTypeName(e) == "my::Error");
    CHECK(tractor::typedErrorName(KJ_EXCEPTION(FAILED, "plain")) == nullptr);
    CHECK(tractor::errorTypeName(KJ_EXCEPTION(FAILED, "plain")) == "kj::Exception");
  }

  TEST_CASE("errors from a capability call keep their type behind Cap'n Proto's prefix") {
    // What a call on a revoked capability in another process raises.
    auto revoked = KJ_EXCEPTION(FAILED, "remote exception: remote exception: "
                                        "tractor::CapabilityRevoked: the context has ended");
    CHECK(tractor::errorTypeName(revoked) == tractor::CAPABILITY_REVOKED);
    // Plain text behind the prefix is not mistaken for a type.
    auto plain = KJ_EXCEPTION(FAILED, "remote exception: Peer disconnected: bye");
    CHECK(tractor::errorTypeName(plain) == "kj::Exception");
    // A relayed runtime error behind the prefix is still a RemoteActorError.
    tractor::ActorId a{kj::str("a"), kj::str("uuid-a"), 1};
    auto cancelled = tractor::contextCancelled(a, a, "actor a was cancelled by itself");
    auto viaRpc = KJ_EXCEPTION(FAILED, kj::str("remote exception: ", cancelled.getDescription()));
    CHECK(tractor::isRemoteError(viaRpc, tractor::CONTEXT_CANCELLED));
    CHECK(KJ_ASSERT_NONNULL(tractor::cancellerOf(viaRpc)).uuid == "uuid-a");
  }

  TEST_CASE("a received error keeps a bounded relay path") {
    // A hostile peer's error with a million (empty, so nearly free) hops: found by the fuzzer,
    // it took 38 s and 1.4 GB to unbox before the bound.
    capnp::MallocMessageBuilder message;
    auto error = message.initRoot<tractor::schema::Error>();
    error.setBoxedType("tractor::ContextCancelled");
    error.setMessage("cancelled");
    auto path = error.initRelayPath(1000000);
    path[0].setName("source");
    path[999999].setName("last");
    auto remote = KJ_ASSERT_NONNULL(
        tractor::RemoteActorError::from(tractor::unboxError(error.asReader())));
    CHECK(remote.relayPath.size() == tractor::MAX_RELAY_HOPS);
    CHECK(remote.relayPath[0].name == "source");
    CHECK(remote.relayUid().name == "last");
  }

  TEST_CASE("foreign exceptions keep their type name") {
    kj::Exception e = [] {
      try {
        throw std::out_of_range("index 7");
      } catch (...) {
        return tractor::currentExceptionAsKj();
      }
    }();
    CHECK(tractor::errorTypeName(e) == "std::out_of_range");
  }

  TEST_CASE("boxing and unboxing keep every field") {
    auto src = actor("worker", 4242);
    auto e = roundTrip(tractor::typedError("std::runtime_error", "line one\nline two \\ end"), src);
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(e)) {
      CHECK(r->boxedType == "std::runtime_error");
      CHECK(r->srcType == "std::runtime_error");
      CHECK(r->message == "line one\nline two \\ end");
      CHECK(r->src == src);
      CHECK(r->src.pid == 4242);
      CHECK(r->relayPath.size() == 1);
      CHECK(!r->isInception());
      CHECK(contains(r->remoteStack, "trace"));
    } else {
      FAIL("not a remote error: ", e.getDescription().cStr());
    }
    CHECK(tractor::isRemoteError(e, "std::runtime_error"));
    CHECK(tractor::errorTypeName(e) == "std::runtime_error");
  }

  TEST_CASE("relaying appends the hop and keeps the source") {
    auto src = actor("leaf", 10);
    auto mid = actor("middle", 11);
    auto once = roundTrip(tractor::typedError("ValueError", "bad"), src);
    auto twice = roundTrip(once, mid);
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(twice)) {
      CHECK(r->boxedType == "RemoteActorError");
      CHECK(r->srcType == "ValueError");
      CHECK(r->src == src);
      REQUIRE(r->relayPath.size() == 2);
      CHECK(r->relayPath[0] == src);
      CHECK(r->relayUid() == mid);
      CHECK(r->isInception());
    } else {
      FAIL("not a remote error");
    }
    CHECK(tractor::isRemoteError(twice, "ValueError"));
  }

  TEST_CASE("plain kj exceptions box as kj Exception") {
    auto e = roundTrip(KJ_EXCEPTION(FAILED, "plain failure"), actor("a", 1));
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(e)) {
      CHECK(r->boxedType == "kj::Exception");
      CHECK(contains(r->message, "plain failure"));
    } else {
      FAIL("not a remote error");
    }
  }

  TEST_CASE("a malformed wire error still unboxes sensibly") {
    capnp::MallocMessageBuilder message;
    auto error = message.initRoot<tractor::schema::Error>();
    error.setMessage("only a message");
    auto e = tractor::unboxError(error.asReader());
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(e)) {
      CHECK(r->boxedType == "kj::Exception");
      CHECK(r->message == "only a message");
    } else {
      FAIL("not a remote error");
    }
  }

  TEST_CASE("an error group keeps its members through boxing and relaying") {
    auto a = actor("a", 1);
    auto b = actor("b", 2);
    auto c = actor("c", 3);
    kj::Vector<kj::Exception> members;
    members.add(tractor::typedError("std::runtime_error", "block failed"));
    members.add(roundTrip(tractor::typedError("std::logic_error", "child failed"), b));
    auto group = tractor::errorGroup(a, "2 errors in the nursery of a@1", members);
    CHECK(tractor::errorTypeName(group) == tractor::ERROR_GROUP);
    auto check = [&](const kj::Exception& e) {
      KJ_IF_MAYBE(g, tractor::ErrorGroup::from(e)) {
        CHECK(g->message == "2 errors in the nursery of a@1");
        CHECK(g->src.uuid == a.uuid);
        REQUIRE(g->members.size() == 2);
        auto first = KJ_ASSERT_NONNULL(tractor::RemoteActorError::from(g->members[0]));
        CHECK(first.boxedType == "std::runtime_error");
        CHECK(first.message == "block failed");
        CHECK(first.src.uuid == a.uuid);
        auto second = KJ_ASSERT_NONNULL(tractor::RemoteActorError::from(g->members[1]));
        CHECK(second.boxedType == "std::logic_error");
        CHECK(second.src.uuid == b.uuid);
      } else {
        FAIL("not an error group: ", e.getDescription().cStr());
      }
    };
    check(group);
    auto sent = roundTrip(group, a);
    CHECK(tractor::isRemoteError(sent, tractor::ERROR_GROUP));
    check(sent);
    auto relayed = roundTrip(sent, c);
    auto remote = KJ_ASSERT_NONNULL(tractor::RemoteActorError::from(relayed));
    CHECK(remote.boxedType == "RemoteActorError");
    CHECK(remote.srcType == tractor::ERROR_GROUP);
    check(relayed);
  }

  TEST_CASE("an error group nested in a group keeps both levels") {
    auto a = actor("a", 1);
    auto b = actor("b", 2);
    kj::Vector<kj::Exception> inner;
    inner.add(tractor::typedError("std::logic_error", "one"));
    inner.add(tractor::typedError("std::logic_error", "two\nlines \\ and a backslash"));
    auto subtree = roundTrip(tractor::errorGroup(b, "2 errors in b", inner), b);
    kj::Vector<kj::Exception> outer;
    outer.add(kj::cp(subtree));
    outer.add(kj::cp(subtree));
    auto root = roundTrip(roundTrip(tractor::errorGroup(a, "2 errors in a", outer), a), b);
    auto group = KJ_ASSERT_NONNULL(tractor::ErrorGroup::from(root));
    REQUIRE(group.members.size() == 2);
    for (auto& member: group.members) {
      auto nested = KJ_ASSERT_NONNULL(tractor::ErrorGroup::from(member));
      CHECK(nested.src.uuid == b.uuid);
      REQUIRE(nested.members.size() == 2);
      auto second = KJ_ASSERT_NONNULL(tractor::RemoteActorError::from(nested.members[1]));
      CHECK(second.message == "two\nlines \\ and a backslash");
    }
  }

  TEST_CASE("a received error group keeps a bounded number of members") {
    // A hostile peer's group of empty members costs it nothing on the wire.
    capnp::MallocMessageBuilder message;
    auto error = message.initRoot<tractor::schema::Error>();
    error.setBoxedType(tractor::ERROR_GROUP);
    error.setMessage("many");
    error.initMembers(tractor::MAX_GROUP_MEMBERS + 10);
    auto received = tractor::unboxError(error.asReader());
    auto group = KJ_ASSERT_NONNULL(tractor::ErrorGroup::from(received));
    CHECK(group.members.size() == tractor::MAX_GROUP_MEMBERS);
    CHECK(contains(group.message, "10 more members were dropped"));
  }
}
