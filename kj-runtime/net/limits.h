// Limits on what a peer may send: the message size and nesting every Cap'n Proto connection of
// the runtime accepts (the two-party RPC connection that applies them is runtime-only, in
// limits-internal.h).
//
// Every connection between actors (parent and child over their socketpair, peers through a
// listening address) reads incoming messages with the process's current `MessageLimits`:
//
// - A frame larger than `maxWords` (or one whose segment table is not Cap'n Proto framing at
//   all) is refused before its body is read: capnp raises "Message is too large" (or "Message
//   has too many segments", ...), the receiving side aborts the whole connection, tells the
//   sender why (a Cap'n Proto Abort message), and every call pending on it fails on both sides
//   with `tractor::TransportClosed` naming capnp's reason. Memory held for one incoming message
//   is bounded by `maxWords` words.
// - A message nested deeper than `nestingLimit` is read normally, and fails where the receiver
//   walks into the excess depth: a call's arguments fail that call (the caller gets the error),
//   a result fails at the caller when it is read. The connection stays up.
//
// The root decides the limits (`RootOptions::withMessageLimits`, main.h); every actor of its
// tree uses the same. A child learns them from MESSAGE_LIMITS_ENV, which both spawn backends put
// in its environment (see `childEnvironmentLimits()`): a child sets up its parent connection
// before any message from the parent arrives, so they cannot travel in the spawn spec.

#pragma once

#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/string.h>
#include "tractor/kj-runtime/wire/errors.h"

namespace tractor {

constexpr uint64_t DEFAULT_MAX_WORDS = 8 * 1024 * 1024;
// 64 MiB, Cap'n Proto's own default: large enough for any payload the runtime is meant to carry
// in one message (bulk data belongs in a stream of smaller items), small enough that one hostile
// frame cannot make an actor allocate without bound.
constexpr uint32_t DEFAULT_NESTING_LIMIT = 64;
// Cap'n Proto's default. The RPC envelope takes about eight levels, so a `tractor::Value` may
// nest about 55 lists or maps deep.
constexpr uint64_t MIN_MAX_WORDS = 1024;
// 8 KiB: below this the runtime's own messages (spawn specs, boxed errors with their stacks)
// would not fit.
constexpr uint32_t MIN_NESTING_LIMIT = 16;
// The runtime's own messages nest about ten levels deep.
constexpr uint32_t MAX_NESTING_LIMIT = 1024;
// Readers of nested values (capnp's copy, `describeValue`, decoders) recurse once per level: the
// ceiling keeps that recursion far from the end of an 8 MiB stack.

// The errors these limits raise, MESSAGE_TOO_LARGE and MESSAGE_TOO_DEEP, are in errors.h.

constexpr const char* MESSAGE_LIMITS_ENV = "TRACTOR_MESSAGE_LIMITS";
// "<maxWords>:<nestingLimit>", set by the runtime in a child's environment. Not a user setting:
// the root always uses its RootOptions and overwrites what it finds there for its children.

struct MessageLimits {
  // What one incoming message may be.
  uint64_t maxWords = DEFAULT_MAX_WORDS;
  // The most 8-byte words a message may hold (capnp's traversal limit: also the most words a
  // reader may visit, so data reached twice through shared pointers counts twice).
  uint32_t nestingLimit = DEFAULT_NESTING_LIMIT;
  // How deep pointers (structs, lists) may nest.

  MessageLimits&& withMaxWords(uint64_t words) && {
    maxWords = words;
    return kj::mv(*this);
  }
  MessageLimits&& withNestingLimit(uint32_t levels) && {
    nestingLimit = levels;
    return kj::mv(*this);
  }
  // Chain setters (usable inside coroutines, where g++ 12 refuses braced lists):
  // `MessageLimits().withMaxWords(1 << 16)`.

  capnp::ReaderOptions readerOptions() const;

  kj::String toString() const;
  // The MESSAGE_LIMITS_ENV form.
  static MessageLimits parse(kj::StringPtr text);
  // The reverse; raises (KJ_REQUIRE) for malformed text or limits that `validate()` refuses.

  void validate() const;
  // Raises unless MIN_MAX_WORDS <= maxWords and MIN_NESTING_LIMIT <= nestingLimit <=
  // MAX_NESTING_LIMIT.
};

const MessageLimits& messageLimits();
// The limits this process applies to every connection it makes from now on.
void setMessageLimits(MessageLimits limits);
// Validates and sets them (the root at boot, a child from its environment). Connections that
// already exist keep the limits they were made with.

MessageLimits childEnvironmentLimits();
// In a child at boot: the limits MESSAGE_LIMITS_ENV holds, defaults when it is absent. The
// variable stays in the environment: the child's own exec-spawned children inherit it (the exec
// backend also sets it explicitly). The forkserver backend sets it in each forked actor from
// the copy of `messageLimits()` the server took when the root forked it, which is why the root
// sets its limits before starting the server.

kj::Maybe<kj::Exception> explainLimitError(const kj::Exception& e, kj::StringPtr peer);
// When `e` is capnp's refusal of a message beyond the limits (too large to send, or too deeply
// nested to read), the same as a MessageTooLarge or MessageTooDeep typed error that says which
// limit and how to change it, with capnp's text after it; else null. `peer` names the other
// actor in the message.

}  // namespace tractor
