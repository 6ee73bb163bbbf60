// Tests of the buffered connection wrapper (kj-runtime/net/buffered-stream.h): writes of one burst
// leave in one inner write and none is lost while another is in flight, small reads are served
// from one inner read, write errors stick, shutdownWrite() follows the buffered bytes, writes past
// HIGH_WATER wait for the peer, and a Cap'n Proto two-party connection runs over it.
//
// Inner streams are in memory (kj::newTwoWayPipe(), whose writes finish only once the peer has
// read them) or a stream of the test's own whose writes finish when the test says so, so every
// test is deterministic: none sleeps.

#include "tractor/kj-runtime/net/buffered-stream.h"

#include <capnp/rpc-twoparty.h>
#include <doctest/doctest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <string>
#include "tractor/schema/actor.capnp.h"

namespace tractor {
namespace {

kj::ArrayPtr<const kj::byte> bytesOf(kj::StringPtr text) { return text.asBytes(); }

std::string textOf(kj::ArrayPtr<const kj::byte> bytes) {
  // As std::string, which doctest prints when a check fails.
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

kj::Promise<void> writeText(kj::AsyncOutputStream& stream, kj::StringPtr text) {
  // `text` must outlive the write; the tests pass literals.
  return stream.write(text.begin(), text.size());
}

kj::Array<kj::byte> patternBytes(size_t size, kj::uint seed) {
  // Bytes that differ from one offset to the next, so that reordering or loss shows.
  auto result = kj::heapArray<kj::byte>(size);
  for (size_t i = 0; i < size; i++) {
    result[i] = static_cast<kj::byte>((i * 131 + (i >> 11) + seed) & 0xff);
  }
  return result;
}

bool isReady(kj::Promise<void>& promise, kj::WaitScope& waitScope) {
  // Runs the event loop until it is idle, then tells whether `promise` has resolved (which
  // includes having failed). The promise stays usable: `wait()` it afterwards. (Promise::poll()
  // alone returns as soon as the promise is ready, leaving the rest of the queue unrun.)
  waitScope.poll();
  return promise.poll(waitScope);
}

kj::Maybe<kj::Exception> failureOf(kj::Promise<void> promise, kj::WaitScope& waitScope) {
  // The exception `promise` fails with, or null if it succeeds.
  return kj::runCatchingExceptions([&]() { promise.wait(waitScope); });
}

class CountingStream final: public kj::AsyncIoStream {
  // Forwards to another stream and counts the calls that would be system calls on a socket. The
  // counters are public: tests read them while the wrapper above owns the stream.
public:
  explicit CountingStream(kj::Own<kj::AsyncIoStream> inner): inner(kj::mv(inner)) {}

  kj::uint writes = 0;
  kj::uint reads = 0;
  kj::Vector<size_t> writeSizes;
  // The size of every write, in order.
  const void* lastReadBuffer = nullptr;
  // The buffer passed to the latest tryRead().
  std::string events;
  // 'w' for each write, 's' for shutdownWrite(), in call order.

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    ++reads;
    lastReadBuffer = buffer;
    return inner->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    noteWrite(size);
    return inner->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    size_t size = 0;
    for (auto piece: pieces) size += piece.size();
    noteWrite(size);
    return inner->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override {
    events += 's';
    inner->shutdownWrite();
  }
  void abortRead() override { inner->abortRead(); }

private:
  kj::Own<kj::AsyncIoStream> inner;

  void noteWrite(size_t size) {
    ++writes;
    writeSizes.add(size);
    events += 'w';
  }
};

struct CountedPipe {
  // A BufferedStream over a counting in-memory pipe end, and the pipe's other end (`peer`).
  kj::EventLoop loop;
  kj::WaitScope ws;
  kj::TwoWayPipe pipe;
  kj::Own<CountingStream> counting;
  CountingStream& counts;
  BufferedStream stream;
  kj::AsyncIoStream& peer;

  CountedPipe()
      : ws(loop), pipe(kj::newTwoWayPipe()),
        counting(kj::heap<CountingStream>(kj::mv(pipe.ends[0]))), counts(*counting),
        stream(kj::mv(counting)), peer(*pipe.ends[1]) {}
};

class GateStream final: public kj::AsyncIoStream {
  // A stream whose writes finish only when the test says so: each write's bytes are recorded and
  // the write stays in flight until complete() or fail(). Checks that the writer never has two
  // writes in flight, as AsyncOutputStream requires. Reads never finish.
public:
  kj::Vector<std::string> written;
  // The bytes of every write, in order.
  kj::uint shutdowns = 0;

  bool busy() const { return inFlight.get() != nullptr; }
  // True while a write is in flight.

  void complete() {
    REQUIRE(busy());
    auto fulfiller = kj::mv(inFlight);
    fulfiller->fulfill();
  }

  void fail(kj::Exception&& exception) {
    REQUIRE(busy());
    auto fulfiller = kj::mv(inFlight);
    fulfiller->reject(kj::mv(exception));
  }

  std::string allWritten() {
    std::string all;
    for (auto& bytes: written) all += bytes;
    return all;
  }

  kj::Promise<size_t> tryRead(void*, size_t, size_t) override { return kj::NEVER_DONE; }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return accept(std::string(reinterpret_cast<const char*>(buffer), size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    std::string all;
    for (auto piece: pieces) all += textOf(piece);
    return accept(kj::mv(all));
  }
  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }
  void shutdownWrite() override {
    CHECK_FALSE(busy());
    ++shutdowns;
  }

private:
  kj::Own<kj::PromiseFulfiller<void>> inFlight;

  kj::Promise<void> accept(std::string bytes) {
    CHECK_FALSE(busy());
    CHECK(shutdowns == 0);
    written.add(kj::mv(bytes));
    auto paf = kj::newPromiseAndFulfiller<void>();
    inFlight = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }
};

void drain(GateStream& gate, kj::WaitScope& waitScope) {
  // Completes inner writes until the wrapper issues no more.
  for (;;) {
    waitScope.poll();
    if (!gate.busy()) return;
    gate.complete();
  }
}

class NamedActor final: public schema::Actor::Server {
  // Answers getId with a fixed identity and counts the calls; every other method is
  // unimplemented.
public:
  explicit NamedActor(kj::uint& served): served(served) {}

protected:
  kj::Promise<void> getId(GetIdContext context) override {
    auto id = context.getResults().initId();
    id.setName("buffered-peer");
    id.setUuid("00000000-0000-4000-8000-000000000001");
    id.setPid(4242);
    ++served;
    return kj::READY_NOW;
  }

private:
  kj::uint& served;
};

}  // namespace

TEST_SUITE("unit") {

TEST_CASE_FIXTURE(CountedPipe, "buffered stream: writes of one turn leave in one inner write") {
  char received[64];

  // Three writes in the same turn, none awaited in between (awaiting would run the flush).
  auto w1 = writeText(stream, "alpha ");
  auto w2 = writeText(stream, "beta ");
  kj::ArrayPtr<const kj::byte> pieces[] = {bytesOf("gam"), bytesOf("ma")};
  auto w3 = stream.write(kj::arrayPtr(pieces, 2));
  CHECK(counts.writes == 0);  // nothing leaves before the burst ends

  size_t n = peer.tryRead(received, 1, sizeof(received)).wait(ws);
  CHECK(std::string(received, n) == "alpha beta gamma");
  w1.wait(ws);
  w2.wait(ws);
  w3.wait(ws);
  ws.poll();
  CHECK(counts.writes == 1);
  CHECK(counts.writeSizes[0] == 16);

  // The flush has finished: the next burst is a new single write.
  auto w4 = writeText(stream, "delta ");
  auto w5 = writeText(stream, "epsilon");
  n = peer.tryRead(received, 1, sizeof(received)).wait(ws);
  CHECK(std::string(received, n) == "delta epsilon");
  w4.wait(ws);
  w5.wait(ws);
  ws.poll();
  CHECK(counts.writes == 2);
  CHECK(counts.writeSizes[1] == 13);
}

TEST_CASE("buffered stream: writes from work queued in the same burst join the same write") {
  // Cap'n Proto queues each outgoing message behind the previous one's write promise, so the
  // messages of a burst are written over several event-loop turns: they must still leave
  // together.
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  auto first = writeText(stream, "a");
  auto later = kj::evalLater([&]() { return writeText(stream, "b"); })
                   .then([&]() { return kj::evalLater([&]() { return writeText(stream, "c"); }); })
                   .then([&]() { return writeText(stream, "d"); });
  later.wait(ws);
  first.wait(ws);
  ws.poll();
  CHECK(gate.written.size() == 1);
  CHECK(gate.allWritten() == "abcd");
  drain(gate, ws);
  CHECK(gate.written.size() == 1);
}

TEST_CASE("buffered stream: writes are acknowledged before the inner write finishes") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  auto first = writeText(stream, "one");
  CHECK(isReady(first, ws));
  first.wait(ws);
  REQUIRE(gate.busy());  // the inner write is in flight, yet the caller may go on
  CHECK(gate.written.size() == 1);
  CHECK(gate.written[0] == "one");
}

TEST_CASE("buffered stream: a write made while an inner write is in flight follows it") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  writeText(stream, "first").wait(ws);
  ws.poll();
  REQUIRE(gate.busy());

  // Two writes land while "first" is in flight: acknowledged, held, and sent together after it.
  auto second = writeText(stream, "second");
  auto third = writeText(stream, "third");
  CHECK(isReady(second, ws));
  CHECK(isReady(third, ws));
  second.wait(ws);
  third.wait(ws);
  CHECK(gate.written.size() == 1);  // never two inner writes at once

  gate.complete();
  ws.poll();
  REQUIRE(gate.written.size() == 2);
  CHECK(gate.written[1] == "secondthird");
  gate.complete();
  ws.poll();
  CHECK_FALSE(gate.busy());
  CHECK(gate.allWritten() == "firstsecondthird");
}

TEST_CASE("buffered stream: no write is lost whichever event it lands after") {
  // Lands a write after each possible number of events following the completion of an inner
  // write (and, in the second part, following the first write): whether it joins the flush
  // under way or starts the next one, it must go out, after the earlier bytes, exactly once.
  for (kj::uint turns = 0; turns < 32; turns++) {
    CAPTURE(turns);
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto owned = kj::heap<GateStream>();
    auto& gate = *owned;
    BufferedStream stream(kj::mv(owned));

    auto first = writeText(stream, "first|");
    ws.poll();
    REQUIRE(gate.busy());
    gate.complete();
    for (kj::uint i = 0; i < turns; i++) loop.run(1);
    auto second = writeText(stream, "second|");
    auto third = writeText(stream, "third");
    drain(gate, ws);
    first.wait(ws);
    second.wait(ws);
    third.wait(ws);
    CHECK(gate.allWritten() == "first|second|third");
    CHECK(gate.written.size() == 2);

    // One more burst after all is quiet: one more write.
    auto fourth = writeText(stream, "|fourth");
    drain(gate, ws);
    fourth.wait(ws);
    CHECK(gate.allWritten() == "first|second|third|fourth");
    CHECK(gate.written.size() == 3);
  }

  for (kj::uint turns = 0; turns < 16; turns++) {
    CAPTURE(turns);
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    auto owned = kj::heap<GateStream>();
    auto& gate = *owned;
    BufferedStream stream(kj::mv(owned));

    auto first = writeText(stream, "first|");
    for (kj::uint i = 0; i < turns; i++) loop.run(1);
    auto second = writeText(stream, "second");
    drain(gate, ws);
    first.wait(ws);
    second.wait(ws);
    CHECK(gate.allWritten() == "first|second");
    CHECK(gate.written.size() <= 2);
  }
}

TEST_CASE_FIXTURE(CountedPipe, "buffered stream: small reads are served from one inner read") {

  // Like Cap'n Proto's segment table then body: an 8-byte read, then the rest.
  auto sent = writeText(peer, "01234567the body of the message");
  char head[8];
  CHECK(stream.tryRead(head, 8, 8).wait(ws) == 8);
  CHECK(std::string(head, 8) == "01234567");
  sent.wait(ws);  // the one inner read took the whole write
  char body[23];
  CHECK(stream.tryRead(body, 23, 23).wait(ws) == 23);
  CHECK(std::string(body, 23) == "the body of the message");
  CHECK(counts.reads == 1);

  // A read smaller than what is buffered leaves the rest for the next read.
  sent = writeText(peer, "abcdefghij");
  char small[4];
  CHECK(stream.tryRead(small, 1, 4).wait(ws) == 4);
  CHECK(std::string(small, 4) == "abcd");
  sent.wait(ws);
  CHECK(counts.reads == 2);

  // A read as big as the buffer: what is buffered first, then straight into the caller's buffer.
  const size_t bigSize = BufferedStream::READ_BUFFER_SIZE + 4096;
  auto big = patternBytes(bigSize, 7);
  auto out = kj::heapArray<kj::byte>(bigSize + 6);
  auto reading = stream.tryRead(out.begin(), out.size(), out.size());
  peer.write(big.begin(), big.size()).wait(ws);
  CHECK(reading.wait(ws) == out.size());
  CHECK(textOf(out.slice(0, 6)) == "efghij");
  CHECK(out.slice(6, out.size()) == big.asPtr());
  CHECK(counts.reads == 3);
  CHECK(counts.lastReadBuffer == out.begin() + 6);
}

TEST_CASE("buffered stream: end of stream gives a short count then zero") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto pipe = kj::newTwoWayPipe();
  BufferedStream stream(kj::mv(pipe.ends[0]));
  auto& peer = *pipe.ends[1];

  char buffer[8];
  auto reading = stream.tryRead(buffer, 8, 8);
  writeText(peer, "12345").wait(ws);
  peer.shutdownWrite();
  CHECK(reading.wait(ws) == 5);
  CHECK(std::string(buffer, 5) == "12345");
  CHECK(stream.tryRead(buffer, 1, 8).wait(ws) == 0);
  CHECK(stream.tryRead(buffer, 8, 8).wait(ws) == 0);

  // A large read at end of stream too.
  auto large = kj::heapArray<kj::byte>(BufferedStream::READ_BUFFER_SIZE * 2);
  CHECK(stream.tryRead(large.begin(), large.size(), large.size()).wait(ws) == 0);
}

TEST_CASE("buffered stream: a failed inner write fails the next writes") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  writeText(stream, "doomed").wait(ws);  // acknowledged before the inner write fails
  ws.poll();
  REQUIRE(gate.busy());
  gate.fail(KJ_EXCEPTION(DISCONNECTED, "peer went away"));
  ws.poll();

  for (kj::uint attempt = 0; attempt < 2; attempt++) {
    CAPTURE(attempt);
    KJ_IF_MAYBE(e, failureOf(writeText(stream, "more"), ws)) {
      CHECK(e->getType() == kj::Exception::Type::DISCONNECTED);
      CHECK(e->getDescription() == "peer went away");
    } else {
      FAIL("a write after the failed flush succeeded");
    }
  }
  ws.poll();
  CHECK(gate.written.size() == 1);  // nothing more reached the inner stream
}

TEST_CASE("buffered stream: a write waiting past the high-water mark gets the write error") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  auto data = patternBytes(BufferedStream::HIGH_WATER + 1, 3);
  auto waiting = stream.write(data.begin(), data.size());
  CHECK_FALSE(isReady(waiting, ws));
  REQUIRE(gate.busy());
  gate.fail(KJ_EXCEPTION(FAILED, "broken pipe"));
  KJ_IF_MAYBE(e, failureOf(kj::mv(waiting), ws)) {
    CHECK(e->getDescription() == "broken pipe");
  } else {
    FAIL("the waiting write succeeded");
  }
}

TEST_CASE_FIXTURE(CountedPipe, "buffered stream: shutdownWrite comes after the buffered bytes") {

  auto w1 = writeText(stream, "hello ");
  auto w2 = writeText(stream, "world");
  stream.shutdownWrite();
  CHECK(counts.events == "");  // nothing is written or shut down before the burst ends

  CHECK(peer.readAllText().wait(ws) == "hello world");
  w1.wait(ws);
  w2.wait(ws);
  CHECK(counts.events == "ws");
}

TEST_CASE("buffered stream: shutdownWrite waits for the write in flight and the pending one") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto owned = kj::heap<GateStream>();
  auto& gate = *owned;
  BufferedStream stream(kj::mv(owned));

  writeText(stream, "in flight|").wait(ws);
  ws.poll();
  REQUIRE(gate.busy());
  writeText(stream, "pending").wait(ws);
  stream.shutdownWrite();
  ws.poll();
  CHECK(gate.shutdowns == 0);
  gate.complete();
  ws.poll();
  CHECK(gate.shutdowns == 0);
  CHECK(gate.written.size() == 2);
  gate.complete();
  ws.poll();
  CHECK(gate.shutdowns == 1);
  CHECK(gate.allWritten() == "in flight|pending");
}

TEST_CASE_FIXTURE(CountedPipe,
                  "buffered stream: shutdownWrite with nothing buffered is immediate") {

  stream.shutdownWrite();
  CHECK(counts.events == "s");
  CHECK(pipe.ends[1]->readAllText().wait(ws) == "");
}

TEST_CASE("buffered stream: a write past the high-water mark waits for the peer") {
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  auto pipe = kj::newTwoWayPipe();
  BufferedStream stream(kj::mv(pipe.ends[0]));
  auto& peer = *pipe.ends[1];

  const size_t firstSize = BufferedStream::HIGH_WATER / 2;
  const size_t secondSize = BufferedStream::HIGH_WATER / 2 + 100 * 1024;
  auto data = patternBytes(firstSize + secondSize, 11);

  // Below the mark: acknowledged, and the flush starts (the peer reads nothing yet).
  auto first = stream.write(data.begin(), firstSize);
  CHECK(isReady(first, ws));
  first.wait(ws);

  // In flight plus pending now exceed the mark: the write waits.
  auto second = stream.write(data.begin() + firstSize, secondSize);
  CHECK_FALSE(isReady(second, ws));

  auto received = kj::heapArray<kj::byte>(data.size());
  const size_t part = firstSize + secondSize / 2;
  peer.read(received.begin(), part).wait(ws);
  CHECK_FALSE(isReady(second, ws));  // the peer has not read everything yet

  peer.read(received.begin() + part, received.size() - part).wait(ws);
  CHECK(isReady(second, ws));
  second.wait(ws);
  CHECK(received.asPtr() == data.asPtr());

  // Drained: a small write is acknowledged at once again.
  auto third = writeText(stream, "after");
  CHECK(isReady(third, ws));
  third.wait(ws);
  char tail[5];
  peer.read(tail, 5).wait(ws);
  CHECK(std::string(tail, 5) == "after");
}

TEST_CASE("buffered stream: Cap'n Proto calls over a socketpair") {
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;
  auto pipe = io.provider->newTwoWayPipe();
  auto clientCounting = kj::heap<CountingStream>(kj::mv(pipe.ends[0]));
  auto& clientCounts = *clientCounting;
  BufferedStream clientStream(kj::mv(clientCounting));
  BufferedStream serverStream(kj::mv(pipe.ends[1]));
  kj::uint served = 0;
  capnp::TwoPartyClient server(serverStream, kj::heap<NamedActor>(served),
                               capnp::rpc::twoparty::Side::SERVER);
  capnp::TwoPartyClient client(clientStream);
  auto actor = client.bootstrap().castAs<schema::Actor>();

  for (kj::uint i = 0; i < 100; i++) {
    auto response = actor.getIdRequest().send().wait(ws);
    auto id = response.getId();
    REQUIRE(id.getName() == "buffered-peer");
    REQUIRE(id.getPid() == 4242);
  }
  CHECK(served == 100);
  // About one write (Finish of the last call with the next Call) and one read (the Return) per
  // call, where the bare connection makes two of each.
  CHECK(clientCounts.writes <= 110);
  CHECK(clientCounts.reads <= 110);

  // A burst of calls made in one turn leaves in one write, not one write per call.
  kj::uint writesBefore = clientCounts.writes;
  kj::Vector<kj::Promise<void>> calls;
  for (kj::uint i = 0; i < 100; i++) {
    calls.add(actor.getIdRequest().send().then([](auto response) {
      KJ_ASSERT(response.getId().getName() == "buffered-peer");
    }));
  }
  kj::joinPromises(calls.releaseAsArray()).wait(ws);
  CHECK(served == 200);
  CHECK(clientCounts.writes - writesBefore < 10);
}

}  // TEST_SUITE("unit")

}  // namespace tractor
