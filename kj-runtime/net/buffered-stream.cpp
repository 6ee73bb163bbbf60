// The buffered connection wrapper. See buffered-stream.h.

#include "tractor/kj-runtime/net/buffered-stream.h"

#include <kj/debug.h>
#include <string.h>

namespace tractor {

BufferedStream::BufferedStream(kj::Own<kj::AsyncIoStream> inner)
    : inner(kj::mv(inner)), readBuffer(kj::heapArray<kj::byte>(READ_BUFFER_SIZE)) {}

BufferedStream::~BufferedStream() noexcept(false) {}

size_t BufferedStream::takeBuffered(kj::byte* out, size_t maxBytes) {
  size_t n = kj::min(maxBytes, readEnd - readStart);
  memcpy(out, readBuffer.begin() + readStart, n);
  readStart += n;
  return n;
}

kj::Promise<size_t> BufferedStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  auto out = reinterpret_cast<kj::byte*>(buffer);
  size_t copied = takeBuffered(out, maxBytes);
  if (copied >= minBytes) return copied;
  if (maxBytes - copied >= readBuffer.size()) {
    // A large read goes straight into the caller's buffer.
    return inner->tryRead(out + copied, minBytes - copied, maxBytes - copied)
        .then([copied](size_t n) { return copied + n; });
  }
  return inner->tryRead(readBuffer.begin(), 1, readBuffer.size())
      .then([this, out, copied, minBytes, maxBytes](size_t n) -> kj::Promise<size_t> {
        readStart = 0;
        readEnd = n;
        if (n == 0) return copied;  // end of stream
        return tryRead(out + copied, minBytes - copied, maxBytes - copied)
            .then([copied](size_t more) { return copied + more; });
      });
}

kj::Promise<void> BufferedStream::write(const void* buffer, size_t size) {
  auto bytes = kj::arrayPtr(reinterpret_cast<const kj::byte*>(buffer), size);
  kj::ArrayPtr<const kj::byte> pieces[] = {bytes};
  return write(kj::arrayPtr(pieces, 1));
}

kj::Promise<void> BufferedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  KJ_IF_MAYBE(e, writeError) {
    return kj::cp(*e);
  }
  if (shutdownRequested) {
    return KJ_EXCEPTION(FAILED, "write after shutdownWrite()");
  }
  for (auto piece: pieces) pending.addAll(piece);
  return afterBuffering();
}

kj::Promise<void> BufferedStream::afterBuffering() {
  if (!flushing) {
    flushing = true;
    // Run when the event queue is otherwise empty and the thread is about to wait for I/O, so
    // that everything this burst of work writes joins the one write, and in the order the
    // streams were written to (what was sent first leaves first). A finished task is replaced by
    // the next burst's (never destroyed inside itself).
    arm();
  }
  if (pending.size() + inFlight.size() <= HIGH_WATER) return kj::READY_NOW;
  if (flushed == nullptr) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    flushedFulfiller = kj::mv(paf.fulfiller);
    flushed = paf.promise.fork();
  }
  return KJ_ASSERT_NONNULL(flushed).addBranch();
}

void BufferedStream::idle() {
  flushTask = kj::evalNow([this]() { return flush(); })
                  .then([]() {},
                        [this](kj::Exception&& e) {
                          flushing = false;
                          writeError = kj::cp(e);
                          KJ_IF_MAYBE(f, flushedFulfiller) {
                            (*f)->reject(kj::mv(e));
                          }
                          flushedFulfiller = nullptr;
                          if (shutdownRequested) inner->shutdownWrite();
                        })
                  .eagerlyEvaluate(nullptr);
}

kj::Promise<void> BufferedStream::flush() {
  if (pending.size() == 0) {
    // Done, decided in the same step as the emptiness check: a write from here on starts a new
    // flush.
    flushing = false;
    KJ_IF_MAYBE(f, flushedFulfiller) {
      (*f)->fulfill();
    }
    flushedFulfiller = nullptr;
    flushed = nullptr;
    if (shutdownRequested) inner->shutdownWrite();
    return kj::READY_NOW;
  }
  inFlight = pending.releaseAsArray();
  return inner->write(inFlight.begin(), inFlight.size()).then([this]() {
    inFlight = nullptr;
    // Whatever was written meanwhile goes out in the next write.
    return flush();
  });
}

kj::Promise<void> BufferedStream::whenWriteDisconnected() { return inner->whenWriteDisconnected(); }

void BufferedStream::shutdownWrite() {
  // After the buffered bytes, like a socket's shutdown after its send queue.
  shutdownRequested = true;
  if (!flushing) inner->shutdownWrite();
}

void BufferedStream::abortRead() { inner->abortRead(); }

void BufferedStream::getsockopt(int level, int option, void* value, kj::uint* length) {
  inner->getsockopt(level, option, value, length);
}

void BufferedStream::setsockopt(int level, int option, const void* value, kj::uint length) {
  inner->setsockopt(level, option, value, length);
}

void BufferedStream::getsockname(struct sockaddr* addr, kj::uint* length) {
  inner->getsockname(addr, length);
}

void BufferedStream::getpeername(struct sockaddr* addr, kj::uint* length) {
  inner->getpeername(addr, length);
}

}  // namespace tractor
