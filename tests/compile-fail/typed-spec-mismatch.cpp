// Must not compile: a caller's block declares another spec than the typed context function's.
// Run by CTest (compile-fail.typed-spec-mismatch), which expects the static assertion below.

#include "tractor/supervise/main.h"
#include "tests/typed.capnp.h"

using Session = tractor::DialogueSpec<typedtest::Hello>;
using Other = tractor::DialogueSpec<typedtest::Other>;

tractor::Task<tractor::Value> greet(tractor::CalleeContext<Session>& ctx) {
  co_await ctx.started(tractor::Typed<typedtest::Hello>());
  co_return tractor::Value();
}
TRACTOR_CONTEXT(compile_fail, greet);

kj::Promise<void> mismatched(tractor::Portal& portal) {
  return portal.openContext(
      greet, [](tractor::CallerContext<Other>&, tractor::Typed<typedtest::Other>) {
        return kj::Promise<void>(kj::READY_NOW);
      });
}
