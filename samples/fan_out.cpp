// One stream, several readers: a producer actor streams numbers to the root, where
// `MsgStream::subscribe()` fans the stream out to three local consumer tasks, each of which sees
// every item (tractor's `MsgStream.subscribe()`, trio's broadcast receiver).
//
// Without a subscription, each item of a stream goes to whichever task calls `receive()` first:
// three tasks reading one stream would split the items between them. A subscription reads the
// stream at its own position instead; the fastest subscriber pulls the next item from the
// stream and the others read it from a ring the size of the stream's buffer (64 items by
// default). A subscriber that falls further behind than that gets `tractor::Lagged` rather than
// silently missing items; these three keep pace with each other.

#include <iostream>
#include <tractor/tractor.h>

constexpr int64_t ITEMS = 50;
constexpr int CONSUMERS = 3;

tractor::Task<void> numbers(tractor::MsgStream& out, int64_t count) {
  // A stream function (tractor's one-way stream): runs in the producer actor and only sends.
  // The stream ends when the function returns.
  for (int64_t i = 1; i <= count; i++) {
    co_await out.send(i);
  }
}
TRACTOR_STREAM(fan_out, numbers);

struct Tally {
  int64_t items = 0;
  int64_t sum = 0;
};

tractor::Task<void> consume(kj::Own<tractor::Subscription> subscription, Tally* tally) {
  // One consumer task: reads its subscription until the stream ends (a null item).
  for (;;) {
    kj::Maybe<int64_t> item = co_await subscription->receive<int64_t>();
    KJ_IF_MAYBE(value, item) {
      tally->items++;
      tally->sum += *value;
    } else {
      break;
    }
  }
}

tractor::Task<void> rootMain() {
  Tally tallies[CONSUMERS];
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal producer = co_await n.startActor("producer", tractor::enable("fan_out"));

    // `numbers(ITEMS)` runs in the producer; the block reads the stream it yields.
    co_await producer.openStreamFrom(
        numbers, ITEMS, [&](tractor::MsgStream& stream) -> tractor::Task<void> {
          // Every subscription is taken before any consumer reads, so that each one sees every
          // item: a subscription starts at the newest item the stream has delivered.
          kj::Vector<kj::Own<tractor::Subscription>> subscriptions;
          for (int i = 0; i < CONSUMERS; i++) subscriptions.add(stream.subscribe());
          kj::Vector<kj::Promise<void>> consumers;
          for (int i = 0; i < CONSUMERS; i++) {
            consumers.add(consume(kj::mv(subscriptions[i]), &tallies[i]));
          }
          // The three tasks run concurrently in this actor's event loop.
          co_await kj::joinPromises(consumers.releaseAsArray());
        });  // the producer's function has returned and the stream has ended
  });  // the producer daemon is cancelled and reaped here

  // In a fixed order, whatever order the tasks finished in.
  for (int i = 0; i < CONSUMERS; i++) {
    std::cout << "consumer " << i + 1 << ": " << tallies[i].items << " items, sum "
              << tallies[i].sum << std::endl;
  }
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
