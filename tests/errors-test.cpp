// Error typing, boxing and the remote-error layout.

#include <doctest/doctest.h>
#include <capnp/message.h>
#include <stdexcept>
#include "kj-runtime/errors.h"
#include "tests/leak-audit.h"

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
}
