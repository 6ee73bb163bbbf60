// A process pool computing primes, built from nothing but a nursery and portals: the equivalent
// of the standard library's ProcessPoolExecutor example in tractor's documentation.

#include <unistd.h>
#include <iostream>
#include <vector>
#include <tractor/tractor.h>

bool isPrime(uint64_t n) {
  // Deliberately slow trial division, so that the work is worth a process.
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t i = 3; i * i <= n; i += 2) {
    if (n % i == 0) return false;
  }
  return true;
}
TRACTOR_EXPOSE(worker_pool, isPrime);

std::vector<uint64_t> candidates() {
  return {112272535095293, 112582705942171, 112272535095293, 115280095190773,
          115797848077099, 1099726899285419};
}

tractor::Task<void> rootMain() {
  auto numbers = candidates();
  std::vector<bool> results(numbers.size());
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    long workers = sysconf(_SC_NPROCESSORS_ONLN);
    kj::Vector<tractor::Portal> pool;
    for (long i = 0; i < workers; i++) {
      pool.add(co_await n.startActor(kj::str("worker_", i), tractor::enable("worker_pool")));
    }
    // Hand the numbers out round-robin; all calls are in flight at once.
    kj::Vector<kj::Promise<void>> calls;
    for (size_t i = 0; i < numbers.size(); i++) {
      calls.add(pool[i % pool.size()].run(isPrime, numbers[i]).then([&results, i](bool prime) {
        results[i] = prime;
      }));
    }
    co_await kj::joinPromises(calls.releaseAsArray());
  });  // the pool's daemons are cancelled and reaped here
  for (size_t i = 0; i < numbers.size(); i++) {
    std::cout << numbers[i] << " is prime: " << (results[i] ? "True" : "False") << std::endl;
  }
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
