// A connection wrapper that saves system calls: reads fill a buffer, writes made in one burst of
// event-loop work leave in one system call.

#pragma once

#include <kj/async-io.h>
#include <kj/vector.h>
#include "tractor/kj-runtime/async/task-group.h"

namespace tractor {

class BufferedStream final: public kj::AsyncIoStream, private IdleHook {
  // Cap'n Proto 0.9.2 reads every message in two or three small reads (segment table, then body)
  // and writes every message (Call, Return, Finish) with its own system call. Under the two-party
  // network this wrapper turns that into about one read per burst of incoming messages and one
  // write per burst of outgoing ones.
  //
  // Writes are buffered and acknowledged at once; the buffer is flushed when the event loop has
  // nothing else to run and is about to wait for I/O (an `IdleHook`), so every message produced
  // in the same burst leaves together, streams in the order they were written to, and a lone message waits for no timer. Past HIGH_WATER
  // buffered bytes a write waits for the flush, which keeps flow control (the peer's reading
  // pace) intact. A write error is kept and raised by every later write.
  //
  // Owns the wrapped stream. Destroying the wrapper drops bytes not yet flushed, as closing a
  // socket with unsent data would.
public:
  explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner);
  ~BufferedStream() noexcept(false);

  static constexpr size_t READ_BUFFER_SIZE = 64 * 1024;
  static constexpr size_t HIGH_WATER = 1024 * 1024;

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, kj::uint* length) override;
  void setsockopt(int level, int option, const void* value, kj::uint length) override;
  void getsockname(struct sockaddr* addr, kj::uint* length) override;
  void getpeername(struct sockaddr* addr, kj::uint* length) override;
  kj::Maybe<int> getFd() const override { return inner->getFd(); }

private:
  kj::Own<kj::AsyncIoStream> inner;

  kj::Array<kj::byte> readBuffer;
  size_t readStart = 0;
  size_t readEnd = 0;

  kj::Vector<kj::byte> pending;
  // Written by the caller, not yet handed to the kernel.
  kj::Array<kj::byte> inFlight;
  // Handed to the inner stream's write, which is still running.
  kj::Maybe<kj::Promise<void>> flushTask;
  bool flushing = false;
  kj::Maybe<kj::ForkedPromise<void>> flushed;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> flushedFulfiller;
  // Resolve when the current flush has written everything; made only once a write past
  // HIGH_WATER waits for them (dropping an unfulfilled fulfiller builds a traced exception,
  // which costs every connection's teardown a stack unwind).

  kj::Maybe<kj::Exception> writeError;
  bool shutdownRequested = false;

  size_t takeBuffered(kj::byte* out, size_t maxBytes);
  kj::Promise<void> afterBuffering();
  kj::Promise<void> flush();
  void idle() override;
  // The idle point after a burst of writes: starts the flush.
};

}  // namespace tractor
