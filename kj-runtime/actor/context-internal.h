// Parts of Context that only its implementation (context.cpp, broadcast.cpp) sees. Not installed.

#pragma once

#include "tractor/kj-runtime/actor/context.h"

namespace tractor {

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

}  // namespace tractor
