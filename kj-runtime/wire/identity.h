// Actor identity: who an actor is, how it prints, how it travels.

#pragma once

#include <kj/string.h>
#include "tractor/schema/actor.capnp.h"

namespace tractor {

struct ActorId {
  // The identity of one actor: a human-chosen name (not unique), a uuid (unique, the identity for
  // equality) and the pid of its process. Printed as `name@pid`.
  kj::String name;
  kj::String uuid;
  uint32_t pid = 0;

  ActorId clone() const { return {kj::str(name), kj::str(uuid), pid}; }
  bool operator==(const ActorId& other) const { return uuid == other.uuid; }
  kj::String toString() const { return kj::str(name, '@', pid); }

  static ActorId fromReader(schema::ActorId::Reader reader);
  void copyTo(schema::ActorId::Builder builder) const;
};

inline kj::String KJ_STRINGIFY(const ActorId& id) { return id.toString(); }
// `kj::str(id)` and KJ_LOG print an identity as `name@pid`.

kj::String newUuid();
// A random (version 4) uuid in its canonical 36-character text form, from getrandom(2).

void validateActorName(kj::StringPtr name);
// Requires a name of 1-64 characters from [A-Za-z0-9_.-] (names end up in process titles, log
// lines and socket file names).

}  // namespace tractor
