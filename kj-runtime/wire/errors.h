// Errors that cross process boundaries: typed local errors, boxing, `RemoteActorError`.
//
// Inside one actor every error is a `kj::Exception` (that is all a kj::Promise can carry). Two
// conventions give those exceptions the structure tractor's errors need:
//
// - A *typed* error has `getFile() == CXX_EXCEPTION_FILE` and a description of the form
//   "<type name>: <message>". Foreign C++ exceptions become typed errors when they escape a
//   coroutine or a called function (`currentExceptionAsKj()`), and the runtime raises its own
//   errors this way (`typedError("tractor::ModuleNotExposed", ...)`).
// - A *remote* error is one that came from another actor: `RemoteActorError::toException()`
//   writes its fields into the description in a fixed, readable layout, and
//   `RemoteActorError::from()` reads them back, so the structure survives any number of copies,
//   promise hops and relays:
//
//       RemoteActorError: std::runtime_error: boom
//        src: worker 5c0e...-uuid 4242 std::runtime_error
//        relay: worker 5c0e...-uuid 4242; parent 77aa...-uuid 4241
//        canceller: parent 77aa...-uuid 4241      (ContextCancelled only)
//        sender: parent 77aa...-uuid 4241         (StreamOverrun only)
//        remote stack:
//       <stack text>
//
// The runtime's own dialogue errors (`contextCancelled()`, `streamOverrun()`) use the remote
// layout even where they are raised, because they carry an actor identity (the canceller, the
// sender) that must survive every hop.
//
// `boxError()` turns any kj::Exception into the wire form (`schema::Error`); `unboxError()` turns
// the wire form back into a remote-error kj::Exception at the receiver.

#pragma once

#include <kj/exception.h>
#include <kj/vector.h>
#include "tractor/kj-runtime/async/coro.h"
#include "tractor/kj-runtime/wire/identity.h"

namespace tractor {

constexpr kj::StringPtr MODULE_NOT_EXPOSED = "tractor::ModuleNotExposed"_kj;
// Raised at the caller when it calls into a module the remote actor does not serve.
constexpr kj::StringPtr FUNCTION_NOT_FOUND = "tractor::FunctionNotFound"_kj;
// An enabled module has no function of that name.
constexpr kj::StringPtr BAD_ARGUMENTS = "tractor::BadArguments"_kj;
// The arguments of a call did not convert to the function's parameters.
constexpr kj::StringPtr BAD_RESULT = "tractor::BadResult"_kj;
// A call's result did not convert to the type the caller asked for (`run<T>()`,
// `waitForResult<T>()`).
constexpr kj::StringPtr CONTEXT_CANCELLED = "tractor::ContextCancelled"_kj;
// A remote task was cancelled (its actor was cancelled, or its caller went away).
constexpr kj::StringPtr TRANSPORT_CLOSED = "tractor::TransportClosed"_kj;
// The connection to a peer was lost.
constexpr kj::StringPtr NO_RUNTIME = "tractor::NoRuntime"_kj;
// A runtime API was used in a thread with no actor running.
constexpr kj::StringPtr ACTOR_TOO_SLOW = "tractor::ActorTooSlowError"_kj;
// A peer did not acknowledge a cancel request in time.
constexpr kj::StringPtr TOO_SLOW = "tractor::TooSlowError"_kj;
// A deadline (`failAfter`) passed.
constexpr kj::StringPtr NO_RESULT = "tractor::NoResult"_kj;
// `waitForResult()` on an actor without a main task.
constexpr kj::StringPtr STREAM_OVERRUN = "tractor::StreamOverrun"_kj;
// A stream's sender overran a receiver whose buffer was full (raised at the sender).
constexpr kj::StringPtr END_OF_STREAM = "tractor::EndOfStream"_kj;
// The peer closed its side of a stream (or its task ended): nothing more arrives, and nothing
// more may be sent.
constexpr kj::StringPtr STREAM_CLOSED = "tractor::StreamClosed"_kj;
// The stream was closed on this side.
constexpr kj::StringPtr LAGGED = "tractor::Lagged"_kj;
// A broadcast subscriber fell so far behind that items it had not read were overwritten.
constexpr kj::StringPtr SERVICE_NOT_FOUND = "tractor::ServiceNotFound"_kj;
// `Portal::bootstrap<T>()` of an interface the actor's program registers no service for.
constexpr kj::StringPtr NO_REGISTRAR = "tractor::NoRegistrar"_kj;
// A discovery call in an actor that has no registrar to ask.
constexpr kj::StringPtr MSG_TYPE_ERROR = "tractor::MsgTypeError"_kj;
// A payload did not match its dialogue's spec (typed.h): refused before sending, or refused on
// arrival and relayed to the sender.
constexpr kj::StringPtr CAPABILITY_REVOKED = "tractor::CapabilityRevoked"_kj;
// A capability handed out within a context was used after that context ended.
constexpr kj::StringPtr CONTEXT_ERROR = "tractor::ContextError"_kj;
// A context or stream was used in a way its protocol does not allow (a second `started()`,
// a stream opened before `started()`, a context function called with `run()`, ...).
constexpr kj::StringPtr ERROR_GROUP = "tractor::ErrorGroup"_kj;
// Several errors at once: a nursery whose block and children failed (see `ErrorGroup`).
constexpr kj::StringPtr ACTOR_FAILURE = "tractor::ActorFailure"_kj;
// A child process ended without being asked to.
constexpr kj::StringPtr MESSAGE_TOO_LARGE = "tractor::MessageTooLarge"_kj;
// A message beyond its connection's `maxWords` (limits.h) that capnp refused to send (the
// sender's limits are the receiver's, so it never leaves): raised at the caller, for its
// arguments or the callee's answer. The connection stays up.
constexpr kj::StringPtr MESSAGE_TOO_DEEP = "tractor::MessageTooDeep"_kj;
// A received message nested deeper than its connection's `nestingLimit`, found while reading it.

bool isError(const kj::Exception& e, kj::StringPtr typeName);
// True when `e` is an error of the named type (one of the names above, or the C++ type name of
// anything a remote function threw, such as "std::invalid_argument"), raised here or in another
// actor and relayed any number of hops:
//
//     catch (const kj::Exception& e) {
//       if (tractor::isError(e, tractor::STREAM_OVERRUN)) { ... }
//     }

kj::Exception typedError(kj::StringPtr typeName, kj::StringPtr message,
                         kj::Exception::Type type = kj::Exception::Type::FAILED);
// A local error of the named type (see the file comment).

kj::Maybe<kj::String> typedErrorName(const kj::Exception& e);
// The type name of a typed error; null for a plain kj::Exception. Also recognised behind Cap'n
// Proto's "remote exception: " prefix, which a failed call on a capability (a service, a
// capability handed out in a payload) carries: `errorTypeName()` of a call on a revoked
// capability is "tractor::CapabilityRevoked", and RemoteActorError::from() reads a relayed
// error behind the prefix too.

kj::String errorTypeName(const kj::Exception& e);
// The name an error goes by: a remote error's boxed type, a typed error's type, "kj::Exception"
// for anything else.

class RemoteActorError {
  // An error raised in another actor, unpacked. Obtain one with `from()`.
public:
  kj::String boxedType;
  // The type of the boxed error; "RemoteActorError" when another actor relayed it.
  kj::String srcType;
  // The type at the source actor.
  kj::String message;
  ActorId src;
  // The actor in which the error was raised.
  kj::Vector<ActorId> relayPath;
  // Every actor the error passed through, the source first, the last hop last.
  kj::String remoteStack;
  kj::Maybe<ActorId> canceller;
  // ContextCancelled: the actor that asked for the cancellation.
  kj::Maybe<ActorId> sender;
  // StreamOverrun: the actor whose items overran the receiver.
  kj::Vector<kj::Exception> members;
  // ErrorGroup: the errors of the group, each in this layout itself (see `ErrorGroup`).

  static kj::Maybe<RemoteActorError> from(const kj::Exception& e);
  // Unpacks a remote error; null when `e` did not come from another actor.

  kj::Exception toException() const;
  // The kj::Exception (FAILED) that carries this error inside an actor.

  bool isInception() const { return relayPath.size() > 1; }
  // True when the error was relayed through at least one actor other than its source.
  const ActorId& relayUid() const { return relayPath.back(); }
  // The last actor the error passed through before reaching us.
};

class ErrorGroup {
  // Several errors raised as one: what a nursery raises when more than one of its children (or
  // its block and a child) failed (tractor's ExceptionGroup). Obtain one with `from()`, from the
  // group itself or from a remote error boxing it (a failed subtree's group relayed up the tree
  // keeps its members):
  //
  //     KJ_IF_MAYBE(group, tractor::ErrorGroup::from(e)) {
  //       for (auto& member: group->members) {
  //         KJ_IF_MAYBE(r, tractor::RemoteActorError::from(member)) {
  //           // r->boxedType, r->src, r->relayPath, r->canceller, ... of each failure
  //         }
  //       }
  //     }
  //
  // Every member is in the remote layout: an error raised in this actor (the block's own) names
  // this actor as its source. A member may be a group itself (a nested tree).
public:
  kj::String message;
  // "3 errors in the nursery of root@4242".
  kj::Array<kj::Exception> members;
  // In the order the nursery recorded them: the block's own error first, then the children's.
  ActorId src;
  // The actor whose nursery raised the group.

  static kj::Maybe<ErrorGroup> from(const kj::Exception& e);
  // The group `e` is, or boxes (also relayed); null for any other error.
};

kj::Exception errorGroup(const ActorId& self, kj::StringPtr message,
                         kj::ArrayPtr<const kj::Exception> members);
// An ErrorGroup raised in actor `self`. Members that are not remote errors are described as
// raised in `self`.

constexpr kj::uint MAX_GROUP_MEMBERS = 4096;
// A received group keeps at most this many members (a hostile peer's list of empty errors would
// cost it nothing on the wire); the message says how many were dropped.

bool isRemoteError(const kj::Exception& e, kj::StringPtr boxedType);
// True when `e` is a remote error whose boxed type (or source type) is `boxedType`.

kj::Exception contextCancelled(const ActorId& self, const ActorId& canceller,
                               kj::StringPtr message);
// A ContextCancelled raised in actor `self` at the request of `canceller`.
kj::Exception streamOverrun(const ActorId& self, const ActorId& sender, kj::StringPtr message);
// A StreamOverrun detected by receiver `self`, to be raised at `sender`.
kj::Exception msgTypeError(const ActorId& self, kj::StringPtr message);
// A MsgTypeError detected in actor `self` (the sender, before sending, or the receiver).
kj::Maybe<ActorId> cancellerOf(const kj::Exception& e);
// The canceller of a ContextCancelled (remote or raised here); null for any other error.

void boxError(schema::Error::Builder builder, const kj::Exception& e, const ActorId& self);
// Packs `e` for sending to a peer. A remote error is relayed: its source fields are kept, its
// boxed type becomes "RemoteActorError" and `self` is appended to its relay path. An error that
// `self` raised in the remote layout (see `contextCancelled()`) keeps its own type.

constexpr kj::uint MAX_RELAY_HOPS = 64;
// A received error keeps at most this many hops of its relay path (the source and the last ones).

kj::Exception unboxError(schema::Error::Reader reader);
// The remote-error kj::Exception for a received error.

}  // namespace tractor
