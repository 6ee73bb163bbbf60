// Bidirectional streaming between two actors: tractor's README "ping-pong" example, and a first
// look at contexts.
//
// A *context* is a pair of tasks in two actors, started together and ended together. The root
// opens it through a Portal; the child runs the context function, whose first act is
// `ctx.started(value)`: that value is what the root's block receives, and the block only runs
// once it has arrived. From then on each side may open its *stream* and exchange items in both
// directions. The dialogue ends with the context function's result (or its error), which the
// root collects with `waitForResult()`. The two tasks are linked: if the root's block fails, the
// child's task is cancelled; if the child's task fails, its error is raised in the root. One
// structured unit of concurrency spanning two processes.

#include <iostream>
#include <tractor/tractor.h>

constexpr int PINGS = 10;

tractor::Task<int64_t> simpleRpc(tractor::Context& ctx, int64_t data) {
  // A context function: it runs in the child actor "rpc_server", once per `openContext()`. It
  // takes the context first, then the arguments the root passed (by value: a coroutine's
  // reference parameters would dangle).

  // Like trio's `task_status.started()`: hands the root its first value; the root's block
  // starts when it arrives.
  co_await ctx.started(data + 1);

  int64_t count = 0;
  // Both sides open their stream to exchange items. The block may capture by reference: the
  // stream stays open, and the lambda alive, until the block's promise is done.
  co_await ctx.openStream([&](tractor::MsgStream& stream) -> tractor::Task<void> {
    for (;;) {
      // `receive()` gives null once the root has closed its side of the stream.
      kj::Maybe<kj::String> ping = co_await stream.receive<kj::String>();
      KJ_IF_MAYBE(p, ping) {
        KJ_REQUIRE(p->startsWith("ping"), "not a ping", *p);
        co_await stream.send(kj::str("pong", p->slice(4)));
        count++;
      } else {
        break;
      }
    }
  });  // leaving the block closes this side of the stream too

  // The context's result: what the root's `waitForResult()` returns.
  co_return count;
}
TRACTOR_CONTEXT(ping_pong, simpleRpc);
// TRACTOR_CONTEXT registers a context function; TRACTOR_EXPOSE registers plain functions (for
// `Portal::run()`). Either way the actor serves it only if it enables the module, "ping_pong".

tractor::Task<void> rootMain() {
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal server = co_await n.startActor("rpc_server", tractor::enable("ping_pong"));

    // The arguments of `simpleRpc` (after the context), then the block. `first` is the value the
    // child passed to `started()`.
    co_await server.openContext(
        simpleRpc, 10, [](tractor::Context& ctx, tractor::Value first) -> tractor::Task<void> {
          std::cout << "rpc_server started with " << first.as<int64_t>() << std::endl;

          co_await ctx.openStream([](tractor::MsgStream& stream) -> tractor::Task<void> {
            for (int i = 1; i <= PINGS; i++) {
              co_await stream.send(kj::str("ping ", i));
              kj::Maybe<kj::String> pong = co_await stream.receive<kj::String>();
              KJ_IF_MAYBE(p, pong) {
                std::cout << "ping " << i << " -> " << p->cStr() << std::endl;
              } else {
                KJ_FAIL_REQUIRE("rpc_server ended its stream early");
              }
            }
          });  // our side closes here; the child's `receive()` then gives null

          // The child's loop ended, so its function returns: here is its result.
          int64_t answered = co_await ctx.waitForResult<int64_t>();
          std::cout << "rpc_server answered " << answered << " pings" << std::endl;
        });  // resolves once the block is done and the child's task has ended

    // The daemon is still running (it serves further contexts): shut it down explicitly, as
    // tractor's example does. The nursery would cancel it at its end anyway.
    bool acknowledged = co_await server.cancelActor();
    std::cout << "rpc_server cancelled: " << (acknowledged ? "yes" : "no") << std::endl;
  });
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
