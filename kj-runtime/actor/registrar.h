// Discovery: the registrar and finding actors by name (tractor's `find_actor`, `wait_for_actor`,
// `query_actor`).
//
// Every actor listens on one address (address.h) and registers (name, uuid, address) with the
// tree's registrar when it starts; it unregisters when it ends, also when it was cancelled. By
// default the root actor is the registrar. A root started with registry addresses
// (`RootOptions::withRegistry()`) probes them first: it joins a registrar that answers, and
// becomes the registrar on the first free address otherwise, so that separate programs started
// with the same address share one registry (see `runDaemon()` in main.h).
//
//     KJ_IF_MAYBE(peer, co_await tractor::findActor("worker")) {   // null: none registered
//       co_await peer->run(add, 1, 2);                              // a direct connection
//     }
//     tractor::Portal later = co_await tractor::waitForActor("late-comer");
//
// Actors found this way are called directly, peer to peer, with the same errors and
// cancellation semantics as parent and child. An entry whose actor died without unregistering
// is evicted when a lookup finds it unreachable. Names need not be unique: entries are told
// apart by uuid (`queryActors()`). An actor looking itself up gets a portal to itself that needs
// no connection.

#pragma once

#include <kj/async.h>
#include "tractor/kj-runtime/net/address.h"
#include "tractor/kj-runtime/actor/portal.h"

namespace tractor {

struct Registration {
  // One registry entry.
  ActorId id;
  Address address;
};

kj::Promise<kj::Maybe<Portal>> findActor(kj::StringPtr name);
// A connected portal to an actor registered under `name` (the first reachable one), or null.

kj::Promise<Portal> waitForActor(kj::StringPtr name);
// The same, waiting until such an actor registers.

kj::Promise<kj::Maybe<Address>> queryActor(kj::StringPtr name);
// The address of an actor registered under `name`, without connecting; null if there is none.

kj::Promise<kj::Array<Registration>> queryActors(kj::StringPtr name);
// Every entry registered under `name`, in registration order.

kj::Promise<Portal> connectTo(const Address& address);
// A portal to the actor listening at `address` (handshake included): for peers known by
// address rather than by name. Raises TransportClosed if nothing answers there.

schema::Registrar::Client newRegistrar();
// A fresh, empty registry (the runtime makes one for the actor that is the registrar).

}  // namespace tractor
