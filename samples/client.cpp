// The client of samples/daemon.cpp: a separate program, started with the same registry address,
// that finds the daemon "calc" by name, calls it, opens a context with it, prints the results and
// exits. The daemon keeps running for the next client.
//
//     build/samples/daemon [REGISTRY]     # terminal 1
//     build/samples/client [REGISTRY]     # terminal 2, as often as you like
//
// If "calc" does not register within 5 s (no daemon runs with that registry address), the client
// says so and exits with 1. (Being alone, it was its own registrar meanwhile.)
//
// REGISTRY defaults to `unix:<runtimeDir()>/registry.sock`, as the daemon's does. This program is
// a root actor of its own: it joins the registrar it finds at REGISTRY (the daemon), asks it where
// "calc" listens, and then talks to "calc" directly. It does not link the daemon's functions: it
// calls them by module and function name.

#include <iostream>
#include <tractor/tractor.h>

constexpr kj::Duration FIND_DEADLINE = 5 * kj::SECONDS;
// How long to wait for "calc" to register.

kj::String registry;
// The registry address this program was started with.
bool found = false;
// Whether "calc" was found: the exit code is 1 if not.

tractor::Task<void> clientMain() {
  kj::Maybe<tractor::Portal> waited = co_await tractor::moveOnAfter(
      tractor::Actor::current().timer(), FIND_DEADLINE, tractor::waitForActor("calc"));
  if (waited == nullptr) {
    std::cerr << "client: no actor \"calc\" registered at " << registry.cStr()
              << " within 5 s: is build/samples/daemon running with this registry address?"
              << std::endl;
    co_return;
  }
  found = true;
  tractor::Portal calc = KJ_ASSERT_NONNULL(waited);
  std::cout << "found " << calc.actorId().toString().cStr() << std::endl;

  int64_t sum = co_await calc.run<int64_t>("calc", "add", 2, 3);
  std::cout << "add(2, 3) = " << sum << std::endl;
  int64_t product = co_await calc.run<int64_t>("calc", "mul", 6, 7);
  std::cout << "mul(6, 7) = " << product << std::endl;

  // An error raised in the daemon comes back boxed, naming its type and the actor it came from.
  kj::Maybe<kj::Exception> error;
  try {
    co_await calc.run<int64_t>("calc", "divide", 1, 0);
  } catch (const kj::Exception& e) {
    error = kj::cp(e);
  }
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(remote, tractor::RemoteActorError::from(*e)) {
      std::cout << "divide(1, 0) raised " << remote->srcType.cStr() << ": "
                << remote->message.cStr() << " in " << remote->src.name.cStr() << std::endl;
    } else {
      std::cout << "divide(1, 0) raised a local error: " << e->getDescription().cStr() << std::endl;
    }
  } else {
    std::cout << "divide(1, 0) did not raise" << std::endl;
  }

  // A context: running totals streamed back for every number we send.
  co_await calc.openContext(
      "calc", "accumulate", 100,
      [](tractor::Context& ctx, tractor::Value first) -> tractor::Task<void> {
        std::cout << "accumulate started at " << first.as<int64_t>() << std::endl;
        co_await ctx.openStream([](tractor::MsgStream& stream) -> tractor::Task<void> {
          for (int64_t i = 1; i <= 4; i++) {
            co_await stream.send(i);
            kj::Maybe<int64_t> total = co_await stream.receive<int64_t>();
            KJ_IF_MAYBE(t, total) {
              std::cout << "sent " << i << ", total " << *t << std::endl;
            } else {
              KJ_FAIL_REQUIRE("calc ended its stream early");
            }
          }
        });
        int64_t total = co_await ctx.waitForResult<int64_t>();
        std::cout << "accumulate returned " << total << std::endl;
      });
}

int main(int argc, char** argv) {
  registry = argc > 1 ? kj::str(argv[1])
                      : kj::str("unix:", tractor::runtimeDir(), "/registry.sock");
  int code = tractor::main(argc, argv, clientMain,
                           tractor::RootOptions().withName("client").withRegistry(registry));
  return code == 0 && !found ? 1 : code;
}
