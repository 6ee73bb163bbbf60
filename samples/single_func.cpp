// Run a function in a process and collect its pid: tractor's "single function" example.
//
// The nursery spawns one child actor per function call; the child runs the function as its main
// task, the result comes back through the portal, and the nursery reaps the child at its end.

#include <unistd.h>
#include <iostream>
#include <tractor/tractor.h>

int64_t childPid() {
  // Runs in the child actor.
  return getpid();
}
TRACTOR_EXPOSE(single_func, childPid);

kj::String cellarDoor() { return kj::str("Dang that's beautiful"); }
TRACTOR_EXPOSE(single_func, cellarDoor);

tractor::Task<void> rootMain() {
  kj::Maybe<tractor::Portal> door;
  int64_t pid = 0;
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal portal = co_await n.runInActor(childPid);
    pid = co_await portal.waitForResult<int64_t>();
    door = co_await n.runInActor(cellarDoor);
  });
  // Every child is reaped here; results stay available from their portals.
  std::cout << "root pid " << getpid() << " ran childPid in pid " << pid << std::endl;
  KJ_IF_MAYBE(p, door) {
    kj::String words = co_await p->waitForResult<kj::String>();
    std::cout << words.cStr() << std::endl;
  }
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
