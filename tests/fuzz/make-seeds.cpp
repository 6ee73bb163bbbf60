// Writes the fuzzers' seed corpora: real frames, so that the fuzzers start deep in the code.
//
//     make-seeds <dir>   writes <dir>/incoming/*.bin and <dir>/payload/*.bin
//
// An incoming seed is the byte stream a real peer writes when it calls the context peer that
// incoming-fuzz serves (bootstrap, then `started`, `send` with values of every kind, `stop`,
// `finish`, `cancel`), captured from a real RpcConnection. A payload seed is one encoded Value.
// The committed corpora (tests/fuzz/corpus) were made with it; rerun it after a schema change.

#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/filesystem.h>
#include <map>
#include <string>
#include <vector>
#include "tractor/kj-runtime/wire/errors.h"
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/kj-runtime/wire/payload.h"
#include "tractor/schema/actor.capnp.h"

namespace {

using tractor::Value;

kj::Array<Value> sampleValues() {
  kj::Vector<Value> values;
  values.add(Value());
  values.add(Value::of(true));
  values.add(Value::of(int64_t(-42)));
  values.add(Value::of(uint64_t(42)));
  values.add(Value::of(1.5));
  values.add(Value::of(kj::str("text")));
  values.add(Value::of(kj::heapArray<kj::byte>(3)));
  std::vector<int64_t> list;
  list.push_back(1);
  list.push_back(2);
  values.add(Value::of(list));
  std::map<std::string, std::vector<double>> map;
  map["a"].push_back(1.0);
  map["b"];
  values.add(Value::of(map));
  Value deep;
  auto builder = deep.builder();
  for (int i = 0; i < 8; i++) builder = builder.initList(2)[0];
  builder.setText("bottom");
  values.add(kj::mv(deep));
  return values.releaseAsArray();
}

void writeFile(const kj::Directory& dir, kj::StringPtr name, kj::ArrayPtr<const kj::byte> bytes) {
  dir.openFile(kj::Path(name), kj::WriteMode::CREATE | kj::WriteMode::MODIFY)->writeAll(bytes);
}

using Peer = tractor::schema::ContextPeer;

void captureCalls(kj::AsyncIoContext& io, const kj::Directory& dir, kj::StringPtr name,
                  kj::Function<void(Peer::Client)> calls) {
  // The bytes a real client writes for `calls`, up to the end of its stream.
  auto pipe = io.provider->newTwoWayPipe();
  {
    tractor::RpcConnection client(*pipe.ends[0], capnp::rpc::twoparty::Side::CLIENT);
    calls(client.bootstrap().castAs<Peer>());
    io.waitScope.poll();
  }
  pipe.ends[0] = nullptr;
  auto bytes = pipe.ends[1]->readAllBytes().wait(io.waitScope);
  writeFile(dir, name, bytes);
}

}  // namespace

int main(int argc, char** argv) {
  KJ_REQUIRE(argc == 2, "usage: make-seeds <dir>");
  auto fs = kj::newDiskFilesystem();
  auto root = fs->getRoot().openSubdir(fs->getCurrentPath().eval(argv[1]),
                                          kj::WriteMode::CREATE | kj::WriteMode::MODIFY);
  auto incoming = root->openSubdir(kj::Path("incoming"),
                                   kj::WriteMode::CREATE | kj::WriteMode::MODIFY);
  auto payload = root->openSubdir(kj::Path("payload"),
                                  kj::WriteMode::CREATE | kj::WriteMode::MODIFY);
  auto values = sampleValues();

  for (auto i: kj::indices(values)) {
    capnp::MallocMessageBuilder message;
    message.setRoot(values[i].reader());
    auto words = capnp::messageToFlatArray(message);
    writeFile(*payload, kj::str("value-", i, ".bin"), words.asBytes());
  }

  auto io = kj::setupAsyncIo();
  captureCalls(io, *incoming, "send.bin", [&](Peer::Client peer) {
    auto request = peer.sendRequest();
    auto items = request.initItems(values.size());
    for (auto i: kj::indices(values)) items.setWithCaveats(i, values[i].reader());
    request.send().detach([](kj::Exception&&) {});
  });
  captureCalls(io, *incoming, "started-send-stop-finish.bin", [&](Peer::Client peer) {
    auto started = peer.startedRequest();
    started.setValue(values[5].reader());
    started.initWindow().setCapacity(64);
    started.send().detach([](kj::Exception&&) {});
    auto send = peer.sendRequest();
    send.initItems(1).setWithCaveats(0, values[2].reader());
    send.send().detach([](kj::Exception&&) {});
    peer.stopRequest().send().detach([](kj::Exception&&) {});
    auto finish = peer.finishRequest();
    finish.initOutcome().setValue(values[8].reader());
    finish.send().detach([](kj::Exception&&) {});
  });
  captureCalls(io, *incoming, "finish-error.bin", [&](Peer::Client peer) {
    auto finish = peer.finishRequest();
    tractor::boxError(finish.initOutcome().initError(),
                      tractor::typedError("tractor::ContextCancelled", "seed"),
                      tractor::ActorId{kj::str("peer"), kj::str("peer-uuid"), 2});
    finish.send().detach([](kj::Exception&&) {});
  });
  captureCalls(io, *incoming, "finish-error-group.bin", [&](Peer::Client peer) {
    // A nested group, so that the fuzzer starts from members (and members of members).
    tractor::ActorId peerId{kj::str("peer"), kj::str("peer-uuid"), 2};
    kj::Vector<kj::Exception> inner;
    inner.add(tractor::typedError("std::logic_error", "one"));
    inner.add(tractor::typedError("std::logic_error", "two"));
    kj::Vector<kj::Exception> outer;
    outer.add(tractor::errorGroup(peerId, "2 errors in the nursery of peer@2", inner));
    outer.add(tractor::typedError("std::runtime_error", "three"));
    auto finish = peer.finishRequest();
    tractor::boxError(finish.initOutcome().initError(),
                      tractor::errorGroup(peerId, "2 errors in the nursery of peer@2", outer),
                      peerId);
    finish.send().detach([](kj::Exception&&) {});
  });
  captureCalls(io, *incoming, "cancel.bin", [&](Peer::Client peer) {
    peer.cancelRequest().send().detach([](kj::Exception&&) {});
  });
  return 0;
}
