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

  descendantStarted @5 (pid :UInt32) -> ();
  # A process of this actor's subtree now exists. Each actor relays it to its parent, up to the
  # root, which is the tree's child subreaper: should the process's own parent die first, the
  # root adopts it, and this record is how the root tells it from a process its user started.
  descendantReaped @6 (pid :UInt32) -> ();
  # That process was reaped by its parent; the root forgets it (its pid may be reused).
}
