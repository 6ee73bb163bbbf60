@0x9786933732cbc853;
# The runtime protocol between two actors: identity, the spawn spec, calls, outcomes and errors.
#
# Parent and child are joined by a socketpair running a Cap'n Proto two-party connection. The
# child offers its `Actor` capability as the connection's bootstrap; the parent's first call on it
# is `start`, which hands over the spawn spec and the parent's own `Actor` capability.

$import "/capnp/c++.capnp".namespace("tractor::schema");

using Payload = import "payload.capnp";

struct ActorId {
  # Who an actor is. Identity and equality are by `uuid`; `name` need not be unique.
  name @0 :Text;
  uuid @1 :Text;
  pid @2 :UInt32;
}

struct Call {
  # One function invocation, addressed by module and function name.
  module @0 :Text;
  function @1 :Text;
  args @2 :List(Payload.Value);
}

struct Error {
  # A boxed exception, as it crosses process boundaries.
  boxedType @0 :Text;
  # The C++ type name of the original exception (for example "std::runtime_error") or the name
  # of a runtime error ("tractor::ModuleNotExposed"); "RemoteActorError" when relayed.
  srcType @1 :Text;
  # Type name at the source actor; equal to `boxedType` unless the error was relayed.
  message @2 :Text;
  src @3 :ActorId;
  # The actor in which the error was raised.
  relayPath @4 :List(ActorId);
  # Every actor the error passed through, the source first.
  remoteStack @5 :Text;
  # The stack (KJ trace, symbolized where possible) at the source.
  kjType @6 :UInt8;
  # The kj::Exception::Type at the source (FAILED, OVERLOADED, DISCONNECTED, UNIMPLEMENTED).
  canceller @7 :ActorId;
  # ContextCancelled only: the actor that asked for the cancellation.
  sender @8 :ActorId;
  # StreamOverrun only: the actor whose stream items overran the receiver.
  members @9 :List(Error);
  # ErrorGroup only: the errors of the group (a nursery's failed children, its block's error),
  # each boxed as it was when the group was raised.
}

struct Outcome {
  # The end of a dialogue: a value or an error.
  union {
    value @0 :Payload.Value;
    error @1 :Error;
  }
}

struct SpawnSpec {
  # Everything a child needs to become an actor.
  id @0 :ActorId;
  # The child's own identity (its pid is filled in by the child).
  parent @1 :ActorId;
  enableModules @2 :List(Text);
  # The modules whose functions this actor serves; calls into anything else are refused.
  logLevel @3 :Text;
  mainTask :union {
    none @4 :Void;
    call @5 :Call;
    # `runInActor`: the single function this actor runs as its main task.
  }
  bindAddress @6 :Text;
  # Where the child listens for peers ("unix:/path" or "tcp:host:port"; see address.h).
}

struct Hello {
  # The first message each way on every connection between actors made through a listening
  # address (parent and child share a socketpair and skip it): who is speaking. The connecting
  # side sends first.
  id @0 :ActorId;
  isRegistrar @1 :Bool;
  isProbe @2 :Bool;
  # A registrar election probe: the listener answers with its own Hello and hangs up.
}

struct RegistryEntry {
  id @0 :ActorId;
  address @1 :Text;
}

interface Registrar {
  # The tree's (or the registry's) directory of actors by name.
  registerActor @0 (entry :RegistryEntry) -> ();
  # Adds (or replaces, by uuid) an entry and wakes the lookups waiting for its name.
  unregisterActor @1 (uuid :Text) -> ();
  find @2 (name :Text) -> (entries :List(RegistryEntry));
  # Every entry under `name`, in registration order.
  wait @3 (name :Text) -> (entry :RegistryEntry);
  # The first entry under `name`, once there is one.
}

interface Actor {
  # One actor, as seen by a peer. A `Portal` wraps a client of this interface.

  start @0 (spec :SpawnSpec, parent :Actor) -> (id :ActorId);
  # The parent's first call on a freshly spawned child. Returns once the child runtime is
  # configured; its main task (if any) is running by then.

  run @1 (call :Call) -> (outcome :Outcome);
  # Runs one function of an enabled module to completion. Dropping the call cancels it.

  waitForResult @2 () -> (outcome :Outcome);
  # The outcome of the main task of a `runInActor` child; fails if the actor has none.

  cancel @3 () -> (acknowledged :Bool);
  # Asks the actor runtime to shut down: every task is cancelled, every child nursery torn
  # down. Returns once that is done; the actor exits when its parent connection closes.

  getId @4 () -> (id :ActorId);

  descendantStarted @5 (pid :UInt32, socketPath :Text) -> ();
  # A process of this actor's subtree now exists. Each actor relays it to its parent, up to the
  # root, which is the tree's child subreaper: should the process's own parent die first, the
  # root adopts it, and this record is how the root tells it from a process its user started.
  # `socketPath` is the unix socket it listens on, which the root removes if it reaps it.
  descendantReaped @6 (pid :UInt32) -> ();
  # That process was reaped by its parent; the root forgets it (its pid may be reused).

  getRegistrar @8 () -> (registrar :Registrar);
  # The registrar this actor uses: itself if it is the registrar, else the one it joined (an
  # actor's children reach the registrar through their parent).

  bootstrapService @9 (interfaceId :UInt64) -> (service :Capability);
  # The actor's service of a user-defined interface (TRACTOR_SERVICE in an enabled module),
  # made on first request and shared by every later one. Revoked when the actor is cancelled.

  openContext @7 (call :Call, caller :ContextPeer, options :ContextOptions) -> ();
  # Starts a context function (or a legacy stream function) as a task linked to the caller's.
  # Everything the task says goes to `caller`: `started`, stream items, `stop` and, last,
  # `finish` with its outcome; the call returns once `finish` was delivered. Dropping the call
  # (the caller's scope was cancelled, or the connection was lost) cancels the task.
}

struct ContextOptions {
  kind @0 :DialogueKind;
  # What the caller expects the function to be; a mismatch is refused with a clear error.
  window @1 :ReceiveWindow;
  # How the caller receives stream items: the callee sizes its batches by it.
}

struct ReceiveWindow {
  # How one side of a context receives stream items, as its peer's sender needs to know.
  capacity @0 :UInt32;
  # The receive buffer, in items.
  allowOverruns @1 :Bool;
  # Whether a batch arriving at a full buffer is queued (and the sender stalled) rather than
  # refused with StreamOverrun.
}

enum DialogueKind {
  context @0;
  # `Portal::openContext`: a TRACTOR_CONTEXT function.
  streamFrom @1;
  # `Portal::openStreamFrom`: a TRACTOR_STREAM function, which only yields items.
}

interface ContextPeer {
  # One side of an open context, as the other side sees it. Every message from one side to the
  # other is a call on the other side's ContextPeer, so Cap'n Proto's per-capability ordering
  # keeps them in the order they were sent: `started` before any item, items before `stop`,
  # everything before `finish`.

  started @0 (value :Payload.Value, callee :ContextPeer, window :ReceiveWindow)
      -> (refused :Error);
  # Callee to caller, once: the first value, the capability the caller talks to from now on, and
  # how the callee receives. `refused` is set when the value does not match the caller's payload
  # spec (a MsgTypeError, which ends the dialogue).

  send @1 (items :List(Payload.Value)) -> (refused :Error, window :ReceiveWindow);
  # A batch of stream items, in order. The receiver answers once the batch is queued, with how
  # it receives now. `refused` is set, and the batch refused, when its buffer was full and
  # overruns are not allowed (StreamOverrun), or when an item does not match the receiver's
  # payload spec (MsgTypeError); every later batch is refused too, so that the receiver never
  # sees a gap.

  stop @2 () -> ();
  # The sender closed its stream: no more items follow.

  finish @3 (outcome :Outcome) -> (refused :Error);
  # Callee to caller, last: the task's result or error. `refused` is set when the result does
  # not match the caller's payload spec.

  cancel @4 () -> ();
  # Caller to callee: cancel the task (`Context::cancel()`); answered once it is cancelled. The
  # callee knows who asks: the peer that opened the context.
}
