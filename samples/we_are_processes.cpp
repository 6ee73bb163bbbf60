// One actor per core, each sleeping forever; the root raises after one second and the whole tree
// comes down: tractor's "we are processes" example. Run it and watch `pstree -p` meanwhile.

#include <unistd.h>
#include <iostream>
#include <stdexcept>
#include <tractor/tractor.h>

tractor::Task<void> sleepForever() {
  co_await tractor::Actor::current().timer().afterDelay(365 * kj::DAYS);
}
TRACTOR_EXPOSE(we_are_processes, sleepForever);

tractor::Task<void> selfDestruct() {
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> tractor::Task<void> {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < cores; i++) {
      co_await n.runInActor(kj::str("worker_", i), {}, sleepForever);
    }
    std::cout << "This process tree will self-destruct in 1 sec..." << std::endl;
    co_await tractor::Actor::current().timer().afterDelay(1 * kj::SECONDS);
    throw std::runtime_error("Self Destructed");
  });
}

tractor::Task<void> rootMain() {
  // The nursery cancels and reaps every worker before its error reaches us.
  bool contained = co_await selfDestruct().promise().then(
      []() { return false; },
      [](kj::Exception&& e) { return tractor::errorTypeName(e) == "std::runtime_error"; });
  if (contained) std::cout << "Zombies Contained" << std::endl;
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
