// What the parts of one actor need from it: the seam that keeps contexts, portals and connections
// below the actor runtime that owns them.

#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>
#include "tractor/kj-runtime/wire/identity.h"
#include "tractor/kj-runtime/wire/revoker.h"
#include "tractor/schema/actor.capnp.h"

namespace tractor {

class PeerConnection;

class ActorEnv {
  // The actor a context, a portal or a peer connection belongs to, as far as that part needs it.
  // Whoever makes a part hands it the env (the actor runtime, `Actor`, implements it; a portal
  // hands its own to the contexts it opens), so no part looks the actor up or includes actor.h:
  // the modules of kj-runtime/actor/ stack without a cycle (env, context, module, portal,
  // connection, actor, registrar).
  //
  // Lifetime: the actor outlives every part it made (it is the process's runtime, destroyed only
  // after the user's code and every connection are gone).
public:
  virtual const ActorId& id() const = 0;
  virtual kj::Maybe<const ActorId&> parentId() const = 0;
  // The parent actor (null in the root).
  virtual bool isRegistrar() const = 0;

  virtual kj::AsyncIoContext& io() = 0;
  virtual kj::Timer& timer() = 0;
  virtual Revoker& revoker() = 0;
  // Revokes the capabilities handed out in this actor's results when it ends (revoker.h).

  virtual void runInBackground(kj::Promise<void> work) = 0;
  // Fire-and-forget work owned by the actor; a failure is logged.

  virtual schema::Actor::Client serve(kj::Maybe<ActorId> peer) = 0;
  // A new capability to this actor, for `peer` (used in logs and as the canceller's identity).
  virtual void adoptPeer(kj::Own<PeerConnection> connection) = 0;
  // Keeps a handshaken connection until it disconnects or the actor ends.

protected:
  ~ActorEnv() noexcept(false) = default;
};

}  // namespace tractor
