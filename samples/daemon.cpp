// A daemon: a program whose only job is to serve RPC, found by name by other programs that share
// its registry. Run it, then `samples/client` (samples/client.cpp) in another terminal, as often
// as you like; stop the daemon with Ctrl-C (SIGINT) or SIGTERM, which end it with exit code 0.
//
//     build/samples/daemon [REGISTRY]
//
// REGISTRY is the registry address both programs are started with (address.h: `unix:/path` or
// `tcp:host:port`); by default `unix:<runtimeDir()>/registry.sock`, that is
// `$XDG_RUNTIME_DIR/tractor/registry.sock` or `/tmp/tractor-<uid>/registry.sock`. The daemon
// probes it: if a registrar answers there, it registers with it; if nothing does, the daemon
// becomes the registrar itself and listens there (so start the daemon first: a client started
// alone would become a short-lived registrar of its own). Either way it registers as "calc".
//
// The functions are called by name from the client, which does not link them: what travels is the
// module and function name and the arguments, converted by the payload codec on arrival.

#include <iostream>
#include <stdexcept>
#include <tractor/tractor.h>

int64_t add(int64_t a, int64_t b) {
  std::cout << "calc: add(" << a << ", " << b << ")" << std::endl;
  return a + b;
}
TRACTOR_EXPOSE(calc, add);

int64_t mul(int64_t a, int64_t b) {
  std::cout << "calc: mul(" << a << ", " << b << ")" << std::endl;
  return a * b;
}
TRACTOR_EXPOSE(calc, mul);

int64_t divide(int64_t a, int64_t b) {
  // Fails for b == 0: the client gets the error as a remote error naming this actor.
  std::cout << "calc: divide(" << a << ", " << b << ")" << std::endl;
  if (b == 0) throw std::domain_error("division by zero");
  return a / b;
}
TRACTOR_EXPOSE(calc, divide);

tractor::Task<int64_t> accumulate(tractor::Context& ctx, int64_t start) {
  // A context function: starts with `start`, answers every number the caller streams with the
  // running total, and returns the final total once the caller closes its side.
  std::cout << "calc: accumulate from " << start << std::endl;
  co_await ctx.started(start);
  int64_t total = start;
  co_await ctx.openStream([&](tractor::MsgStream& stream) -> tractor::Task<void> {
    for (;;) {
      kj::Maybe<int64_t> item = co_await stream.receive<int64_t>();
      KJ_IF_MAYBE(x, item) {
        total += *x;
        co_await stream.send(total);
      } else {
        break;
      }
    }
  });
  std::cout << "calc: accumulate done, total " << total << std::endl;
  co_return total;
}
TRACTOR_CONTEXT(calc, accumulate);

int main(int argc, char** argv) {
  kj::String registry = argc > 1 ? kj::str(argv[1])
                                 : kj::str("unix:", tractor::runtimeDir(), "/registry.sock");
  std::cout << "calc: serving; registry " << registry.cStr() << std::endl;
  int code = tractor::runDaemon(
      argc, argv, tractor::RootOptions().withName("calc").enable("calc").withRegistry(registry));
  std::cout << "calc: stopped" << std::endl;
  return code;
}
