// What a part of an actor knows of the actor at the other end of a capability: the error a lost
// connection becomes, whether the peer still answers, how long it is given to acknowledge a
// cancel. Shared by contexts and portals (below both).

#pragma once

#include <kj/async.h>
#include <kj/time.h>
#include <kj/timer.h>
#include "tractor/kj-runtime/wire/identity.h"
#include "tractor/schema/actor.capnp.h"

namespace tractor {

constexpr kj::Duration CANCEL_TIMEOUT = 500 * kj::MILLISECONDS;
// How long `Portal::cancelActor()` waits for the remote runtime to acknowledge, by default.

constexpr kj::Duration LIVENESS_INTERVAL = 1 * kj::SECONDS;
constexpr kj::Duration LIVENESS_TIMEOUT = 5 * kj::SECONDS;
kj::Promise<void> whenUnresponsive(schema::Actor::Client actor, kj::Timer& timer);
// Probes `actor` (a cheap call its event loop answers) every LIVENESS_INTERVAL, and resolves once
// a probe is not answered within LIVENESS_TIMEOUT: its loop is blocked or it is hung. Never
// resolves once the connection is gone (that is reported where it is noticed). How a caller
// bounds a wait on a peer that may run for long: as long as the peer is alive.

kj::Exception transportError(const kj::Exception& e, const ActorId& peer);
// The error a caller sees when the connection to `peer` failed under a call: DISCONNECTED
// exceptions become `tractor::TransportClosed`; anything else passes unchanged.

}  // namespace tractor
