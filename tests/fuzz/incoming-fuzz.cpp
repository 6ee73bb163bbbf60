// libFuzzer target: the runtime's incoming-message path. Each input is the raw byte stream a peer
// writes on a connection: it is fed to a two-party RPC connection (RpcConnection, the one every
// actor connection uses, with the runtime's default message limits) whose bootstrap is a real
// context peer (`serveContext()` of a fresh caller-side Context: `started`, `send`, `stop`,
// `finish`, `cancel` and the payload values they carry), then the stream ends and the input runs
// until the connection is down. Whatever the bytes, the process must neither crash (ASan, UBSan)
// nor hang (libFuzzer's -timeout) nor grow without bound (-rss_limit_mb).
//
// Seeds (tests/fuzz/corpus/incoming) are real call frames written by tests/fuzz/make-seeds.cpp.

#include <kj/async-io.h>
#include <kj/debug.h>
#include <stddef.h>
#include <stdint.h>
#include "tractor/kj-runtime/actor/actor.h"
#include "tractor/kj-runtime/actor/context.h"
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/kj-runtime/async/log.h"

namespace {

struct Runtime {
  // One event loop and one actor for the whole run: what a child has while it serves.
  kj::AsyncIoContext io = kj::setupAsyncIo();
  tractor::Actor actor{io, tractor::ActorId{kj::str("fuzz"), kj::str("fuzz-uuid"), 1}, false};
};

Runtime& runtime() {
  static Runtime* instance = []() {
    tractor::setLogLevel(tractor::LogLevel::ERROR);
    return new Runtime();
  }();
  return *instance;
}

kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::Array<kj::byte>& buffer) {
  // Reads (and drops) what the runtime answers until it closes its side.
  return stream.tryRead(buffer.begin(), 1, buffer.size()).then([&stream, &buffer](size_t n) {
    if (n == 0) return kj::Promise<void>(kj::READY_NOW);
    return drain(stream, buffer);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& rt = runtime();
  auto& waitScope = rt.io.waitScope;
  auto pipe = rt.io.provider->newTwoWayPipe();
  auto ctx = kj::refcounted<tractor::Context>(
      tractor::Context::Side::CALLER, rt.actor,
      tractor::ActorId{kj::str("peer"), kj::str("peer-uuid"), 2}, tractor::StreamOptions());
  {
    tractor::RpcConnection server(*pipe.ends[0], capnp::rpc::twoparty::Side::SERVER,
                                  capnp::Capability::Client(tractor::serveContext(*ctx)));
    auto& peer = *pipe.ends[1];
    auto buffer = kj::heapArray<kj::byte>(4096);
    auto answers = drain(peer, buffer).catch_([](kj::Exception&&) {}).eagerlyEvaluate(nullptr);
    kj::runCatchingExceptions([&]() {
      peer.write(data, size).wait(waitScope);
      peer.shutdownWrite();
    });
    server.onDisconnect().wait(waitScope);
    answers.wait(waitScope);
  }
  ctx = nullptr;
  // Whatever the dialogue left behind (timers, cancelled tasks) settles before the next input.
  kj::evalLater([]() {}).wait(waitScope);
  return 0;
}
