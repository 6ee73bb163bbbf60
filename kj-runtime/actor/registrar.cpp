// The registrar and discovery. See registrar.h.

#include "tractor/kj-runtime/actor/registrar.h"

#include <kj/debug.h>
#include "tractor/kj-runtime/actor/actor.h"
#include "tractor/kj-runtime/actor/connection-internal.h"

namespace tractor {

namespace {

class RegistrarServer final: public schema::Registrar::Server {
  // The registry: every registered actor by name, in registration order, and the lookups
  // waiting for a name.
public:
  kj::Promise<void> registerActor(RegisterActorContext context) override {
    auto entry = context.getParams().getEntry();
    Registration registration{ActorId::fromReader(entry.getId()),
                              Address::parse(entry.getAddress())};
    TRACTOR_LOG(RUNTIME, "registered ", registration.id.toString(), " at ",
                registration.address);
    remove(registration.id.uuid);
    entries.add(kj::mv(registration));
    auto& added = entries.back();
    // Wake the lookups waiting for this name.
    kj::Vector<Waiter> still;
    for (auto& w: waiters) {
      if (w.name == added.id.name) {
        w.fulfiller->fulfill(Registration{added.id.clone(), added.address.clone()});
      } else {
        still.add(kj::mv(w));
      }
    }
    waiters = kj::mv(still);
    return kj::READY_NOW;
  }

  kj::Promise<void> unregisterActor(UnregisterActorContext context) override {
    remove(context.getParams().getUuid());
    return kj::READY_NOW;
  }

  kj::Promise<void> find(FindContext context) override {
    auto name = context.getParams().getName();
    kj::Vector<const Registration*> found;
    for (auto& e: entries) {
      if (e.id.name == name) found.add(&e);
    }
    auto list = context.getResults().initEntries(found.size());
    for (auto i: kj::indices(found)) fill(list[i], *found[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> wait(WaitContext context) override {
    context.allowCancellation();
    auto name = context.getParams().getName();
    for (auto& e: entries) {
      if (e.id.name == name) {
        fill(context.getResults().initEntry(), e);
        return kj::READY_NOW;
      }
    }
    auto paf = kj::newPromiseAndFulfiller<Registration>();
    waiters.add(Waiter{kj::str(name), kj::mv(paf.fulfiller)});
    return paf.promise.then([context](Registration&& r) mutable {
      fill(context.getResults().initEntry(), r);
    });
  }

private:
  struct Waiter {
    kj::String name;
    kj::Own<kj::PromiseFulfiller<Registration>> fulfiller;
  };
  kj::Vector<Registration> entries;
  kj::Vector<Waiter> waiters;

  static void fill(schema::RegistryEntry::Builder builder, const Registration& r) {
    r.id.copyTo(builder.initId());
    builder.setAddress(r.address.toString());
  }

  void remove(kj::StringPtr uuid) {
    kj::Vector<Registration> kept;
    for (auto& e: entries) {
      if (e.id.uuid == uuid) {
        TRACTOR_LOG(RUNTIME, "unregistered ", e.id.toString());
      } else {
        kept.add(kj::mv(e));
      }
    }
    entries = kj::mv(kept);
  }
};

Registration fromEntry(schema::RegistryEntry::Reader entry) {
  return Registration{ActorId::fromReader(entry.getId()), Address::parse(entry.getAddress())};
}

schema::Registrar::Client requireRegistrar(Actor& actor) {
  KJ_IF_MAYBE(r, actor.registrar()) {
    return *r;
  }
  kj::throwFatalException(typedError(
      NO_REGISTRAR, kj::str("actor ", actor.id().toString(), " has no registrar to ask")));
}

kj::Promise<kj::Maybe<Portal>> reach(Actor& actor, Registration&& entry) {
  // A portal to `entry`'s actor; null (and the entry evicted) when it is not there any more.
  if (entry.id == actor.id()) return kj::Maybe<Portal>(actor.selfPortal());
  KJ_IF_MAYBE(peer, actor.findPeer(entry.id.uuid)) {
    return kj::Maybe<Portal>(peer->portal());
  }
  return connectPeer(actor, entry.address)
      .then([&actor, uuid = kj::str(entry.id.uuid)](
                kj::Own<PeerConnection>&& connection) -> kj::Maybe<Portal> {
        if (connection->peer().uuid != uuid) {
          kj::throwFatalException(typedError(
              TRANSPORT_CLOSED, kj::str("another actor answers at the address: ",
                                        connection->peer().toString())));
        }
        auto portal = connection->portal();
        actor.adoptPeer(kj::mv(connection));
        return kj::mv(portal);
      })
      .catch_([&actor, entry = kj::mv(entry)](kj::Exception&& e) -> kj::Maybe<Portal> {
        TRACTOR_LOG(RUNTIME, "evicting the registry entry of ", entry.id.toString(), " at ",
                    entry.address, ": ", e.getDescription());
        KJ_IF_MAYBE(registrar, actor.registrar()) {
          auto request = registrar->unregisterActorRequest();
          request.setUuid(entry.id.uuid);
          actor.runInBackground(request.send().ignoreResult());
        }
        return nullptr;
      });
}

kj::Promise<kj::Maybe<Portal>> reachFirst(Actor& actor, kj::Array<Registration> entries,
                                          size_t next) {
  if (next >= entries.size()) return kj::Maybe<Portal>(nullptr);
  auto entry = kj::mv(entries[next]);
  return reach(actor, kj::mv(entry))
      .then([&actor, entries = kj::mv(entries), next](kj::Maybe<Portal>&& portal) mutable
            -> kj::Promise<kj::Maybe<Portal>> {
        if (portal != nullptr) return kj::mv(portal);
        return reachFirst(actor, kj::mv(entries), next + 1);
      });
}

}  // namespace

schema::Registrar::Client newRegistrar() { return kj::heap<RegistrarServer>(); }

kj::Promise<kj::Array<Registration>> queryActors(kj::StringPtr name) {
  auto& actor = Actor::current();
  auto request = requireRegistrar(actor).findRequest();
  request.setName(name);
  return request.send().then([](capnp::Response<schema::Registrar::FindResults>&& response) {
    return KJ_MAP(entry, response.getEntries()) { return fromEntry(entry); };
  });
}

kj::Promise<kj::Maybe<Address>> queryActor(kj::StringPtr name) {
  return queryActors(name).then([](kj::Array<Registration>&& entries) -> kj::Maybe<Address> {
    if (entries.size() == 0) return nullptr;
    return entries[0].address.clone();
  });
}

kj::Promise<kj::Maybe<Portal>> findActor(kj::StringPtr name) {
  auto& actor = Actor::current();
  return queryActors(name).then([&actor](kj::Array<Registration>&& entries) {
    return reachFirst(actor, kj::mv(entries), 0);
  });
}

kj::Promise<Portal> waitForActor(kj::StringPtr name) {
  auto& actor = Actor::current();
  auto request = requireRegistrar(actor).waitRequest();
  request.setName(name);
  return request.send().then(
      [&actor, name = kj::str(name)](
          capnp::Response<schema::Registrar::WaitResults>&& response) mutable {
        return reach(actor, fromEntry(response.getEntry()))
            .then([name = kj::mv(name)](kj::Maybe<Portal>&& portal) -> kj::Promise<Portal> {
              KJ_IF_MAYBE(p, portal) {
                return kj::mv(*p);
              }
              // The entry was stale (and is evicted now): wait for the next one.
              return waitForActor(name);
            });
      });
}

kj::Promise<Portal> connectTo(const Address& address) {
  auto& actor = Actor::current();
  return connectPeer(actor, address).then([&actor](kj::Own<PeerConnection>&& connection) {
    auto portal = connection->portal();
    actor.adoptPeer(kj::mv(connection));
    return portal;
  });
}

}  // namespace tractor
