// Broadcast subscriptions of a stream: the ring they share and each reader. See Subscription in
// context.h.

#include "tractor/kj-runtime/actor/context-internal.h"

#include <kj/debug.h>

namespace tractor {

kj::Promise<void> Context::Broadcaster::pull() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters.add(kj::mv(paf.fulfiller));
  if (!pulling) {
    pulling = true;
    ctx.tasks.add(ctx.receiveItem().then(
        [this](kj::Maybe<Value>&& item) {
          KJ_IF_MAYBE(v, item) {
            ring.push_back(kj::mv(*v));
            if (ring.size() > ctx.receiving.bufferSize) {
              ring.pop_front();
              ++base;
            }
          } else {
            ended = true;
          }
          settle();
        },
        [this](kj::Exception&& e) {
          ended = true;
          endError = kj::mv(e);
          settle();
        }));
  }
  return kj::mv(paf.promise);
}

void Context::Broadcaster::settle() {
  pulling = false;
  _::fulfillAll(waiters);
}

MsgStream::MsgStream(Context& ctx): ctx(ctx) {}
MsgStream::~MsgStream() noexcept(false) {}

kj::Own<Subscription> MsgStream::subscribe() {
  if (ctx.broadcaster == nullptr) ctx.broadcaster = kj::heap<Context::Broadcaster>(ctx);
  auto position = KJ_ASSERT_NONNULL(ctx.broadcaster)->end();
  if (ownSubscription.get() == nullptr) {
    // The context owns this stream, so its own subscription must not own the context back.
    kj::Own<Context> unowned(&ctx, kj::NullDisposer::instance);
    ownSubscription = kj::heap<Subscription>(kj::Badge<MsgStream>(), kj::mv(unowned), position);
  }
  return kj::heap<Subscription>(kj::Badge<MsgStream>(), kj::addRef(ctx), position);
}

Subscription::Subscription(kj::Badge<MsgStream>, kj::Own<Context> ctx, uint64_t position)
    : ctx(kj::mv(ctx)), next(position) {}

Subscription::~Subscription() noexcept(false) {}

kj::Promise<kj::Maybe<Value>> Subscription::receive() {
  auto& b = *KJ_ASSERT_NONNULL(ctx->broadcaster);
  if (next < b.base) {
    auto missed = b.base - next;
    next = b.base;
    return typedError(LAGGED, kj::str("this subscriber fell ", missed, " items behind the "
                                      "newest and missed them (the stream's buffer holds ",
                                      ctx->receiving.bufferSize, "); it continues with the "
                                      "oldest item still held"));
  }
  if (next < b.end()) {
    return kj::Maybe<Value>(b.ring[next++ - b.base].clone());
  }
  if (b.ended) {
    KJ_IF_MAYBE(e, b.endError) {
      return kj::cp(*e);
    }
    if (!endReported) {
      endReported = true;
      return kj::Maybe<Value>(nullptr);
    }
    return typedError(END_OF_STREAM, kj::str("the stream from ", ctx->peerId.toString(),
                                             " has ended"));
  }
  return b.pull().then([this]() { return receive(); });
}

kj::Promise<void> Subscription::send(Value item) { return ctx->sendItem(kj::mv(item)); }

}  // namespace tractor
