// Broadcast fan-out of one stream to several local tasks (tractor's `MsgStream.subscribe()`,
// trio's `BroadcastReceiver`).
//
//     auto a = stream.subscribe();
//     auto b = stream.subscribe();
//     // two tasks: each `co_await a->receive()` / `co_await b->receive()` sees every item
//
// The stream's items go into a ring of the stream's buffer size shared by all subscriptions; a
// subscription reads at its own position. Whichever subscription needs an item the ring does not
// hold yet pulls the next one from the stream, so the fastest reader sets the pace. A reader that
// falls more than the ring's size behind gets `tractor::Lagged` (naming how many items it
// missed) and continues from the oldest item still held: it never misses items silently.

#pragma once

#include "tractor/kj-runtime/actor/context.h"

namespace tractor {

class Subscription {
  // One reader of a broadcast stream; see the file comment. Created by `MsgStream::subscribe()`;
  // keeps its context alive.
public:
  ~Subscription() noexcept(false);
  KJ_DISALLOW_COPY(Subscription);

  kj::Promise<kj::Maybe<Value>> receive();
  template <typename T>
  kj::Promise<kj::Maybe<T>> receive();
  // The next item for this subscription; null at the end of the stream (as
  // `MsgStream::receive()`). Raises Lagged when it fell behind (see the file comment).

  kj::Promise<void> send(Value item);
  // Sends on the underlying stream.

  Subscription(kj::Badge<MsgStream>, kj::Own<Context> ctx, uint64_t position);

private:
  kj::Own<Context> ctx;
  uint64_t next;
  // The sequence number of the next item this subscription reads.
  bool endReported = false;
};

// =======================================================================================
// implementation details

class Context::Broadcaster {
  // The ring of recent items shared by a stream's subscriptions, and the one pull from the
  // stream in progress at a time.
public:
  explicit Broadcaster(Context& ctx): ctx(ctx) {}

  std::deque<Value> ring;
  uint64_t base = 0;
  // The sequence number of `ring.front()`.
  bool ended = false;
  kj::Maybe<kj::Exception> endError;

  uint64_t end() const { return base + ring.size(); }

  kj::Promise<void> pull();
  // Resolves once the next item (or the end) was read from the stream into the ring.

private:
  Context& ctx;
  bool pulling = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiters;

  void settle();
};

template <typename T>
kj::Promise<kj::Maybe<T>> Subscription::receive() {
  return receive().then([](kj::Maybe<Value>&& item) -> kj::Maybe<T> {
    KJ_IF_MAYBE(v, item) {
      return v->as<T>();
    }
    return nullptr;
  });
}

}  // namespace tractor
