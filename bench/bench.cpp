// tractor-bench: the runtime's latencies next to raw OS floors measured in the same run.
//
//     tractor-bench [--quick] [--json-only]
//
// Figures (microseconds; p50 / p90 / p99 and the ratio of p50 to the floor's p50):
// - spawn_first_result_1: open a nursery, `runInActor(trivial)`, `waitForResult`; timed from
//   before `runInActor` until the result arrived (teardown excluded). Floor: posix_spawn of
//   /bin/true + waitpid.
// - spawn_first_result_8: eight such chains at once (kj::joinPromises), per-run total. Floor:
//   eight concurrent posix_spawn of /bin/true, all waited for.
// - portal_run_rtt: sequential `Portal::run(echo, i)` on one daemon actor. Floor: 8-byte
//   ping-pong over a socketpair between two processes with blocking read/write.
// - nursery_teardown: nursery exit with one daemon child, from the end of the block until the
//   scope returned. No floor.
// - error_to_reaped_8: a nursery with 8 `runInActor` children sleeping for an hour, all running;
//   the block then raises. Timed from just before the raise until `openNursery` completed with that
//   error, when every child has been cancelled and reaped. No floor (target: under 50 ms).
// - error_to_reaped_14: the same for a tree of 14 actors, depth 3: 2 supervisors, each running 2
//   sub-supervisors, each running 2 sleeping leaves. Every supervisor is a `runInActor` main task
//   with a nursery of its own, and reports its subtree's readiness (and pids) to its parent once
//   its children are up, so the root raises only when all 14 run. No floor (target: under 50 ms).
// - exec_self_noop (information): posix_spawn of this executable, which exits at the top of
//   main(), + waitpid: what exec and dynamic linking of a tractor binary cost before any runtime
//   code runs. Floor: posix_spawn of /bin/true.
// - context_stream_rtt: one context open with a daemon actor whose context function echoes every
//   stream item; the root sends an int64 and waits for it to come back, sequentially. Floor: the
//   socketpair ping-pong of portal_run_rtt, in blocks interleaved with this figure's own.
// - context_stream_rtt_typed: the same through a typed dialogue (`TickDialogue`: Ticks of
//   bench/bench.capnp both ways) with the same daemon, both contexts open at once; blocks of
//   floor, dynamic and typed round trips alternate. Shows the ratio to context_stream_rtt.
// - stream_throughput_8b, stream_throughput_1k (items/s and MB/s of payload; p50 of the runs): a
//   context function in a daemon actor streams N items to the root, which reads them as fast as
//   it can (`receive()` in a loop); int64 items (8 bytes) and 1 KiB data items. Timed from before
//   `openContext` until the root saw the end of the stream. The root's stream allows overruns, so
//   a slow reader stalls the sender instead of failing it. Floor: a helper process writes N items
//   to a socketpair, one `write` of the item's size each, while the root reads with 64 KiB reads
//   until it has every byte; one floor run before each runtime run.
// - stream_throughput_8b_typed, stream_throughput_1k_typed: the same with typed items (Tick, 8
//   bytes; Blob, a number and 1 KiB of data), each run right after the dynamic run that follows
//   a floor run. Show the ratio to the dynamic figure.
// - peer_run_rtt_uds, peer_run_rtt_tcp: two sibling actors, "server" and "client", started by the
//   root; the client finds the server by name (`findActor`, through the root, which is the
//   registrar) and calls `Portal::run(echo, i)` on it sequentially over their own connection: a
//   Unix socket, or TCP on 127.0.0.1 (a second root, run with `Transport::TCP`). The client
//   times each round trip. Floor: the socketpair ping-pong, in blocks interleaved with these.
// - peer_stream_8b_uds/_tcp, peer_stream_1k_uds/_tcp: stream_throughput_8b and _1k between the
//   same siblings (the client reads, the server produces). Floor: the socketpair stream floor,
//   one run before each.
// - find_actor_uds, find_actor_tcp (information): `findActor("server")` in the client once it is
//   connected to the server: a registrar query through the parent plus the peer table lookup.
// - connect_to_uds, connect_to_tcp (information): `connectTo(address)` from the client to the
//   server: a new connection and its handshake, what a first `findActor` adds to find_actor.
//
// Each floor is measured in the same run, interleaved with its figure (one floor sample before
// each spawn run; alternating blocks of 1,000 round trips; one throughput floor run before each
// pair of stream runs), so that both see the same load and CPU placement. The ping-pong and stream
// helpers are forked in main() before `tractor::main()` creates the KJ event loop and never
// touch KJ. Every helper process is reaped; the runtime reaps the actors; after each
// error_to_reaped run every pid of the tree is checked to be gone (no process left, no zombie).

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>
#include "bench/bench.capnp.h"
#include "tractor/supervise/main.h"

extern char** environ;

namespace tractorbench {
// Types that function templates below hold in coroutine frames: outside the anonymous namespace,
// since g++ 12 rejects such a frame (-Wsubobject-linkage) when they are inside it.

template <typename Item>
class StreamItems;
// The stream figures' items of one kind, `size` payload bytes each: `make(i)` builds item i of a
// run, `check(item, i)` verifies it where it arrived. Dynamic items are int64 Values (8 bytes) or
// Data Values; typed ones are Ticks and Blobs (bench/bench.capnp). A large item is a copy of one
// prepared item, as the dynamic figures have always sent it (`clone()`).

template <>
class StreamItems<tractor::Value> {
public:
  explicit StreamItems(int64_t size): size(size) {
    if (size == 8) return;
    auto bytes = kj::heapArray<kj::byte>(size);
    memset(bytes.begin(), 0, bytes.size());
    blob = tractor::Value::of(bytes);
  }
  tractor::Value make(int64_t index) const {
    return size == 8 ? tractor::Value::of(index) : blob.clone();
  }
  void check(const tractor::Value& item, int64_t index) const {
    if (size == 8) {
      KJ_REQUIRE(item.as<int64_t>() == index, "wrong stream item", index);
    } else {
      KJ_REQUIRE(item.reader().getData().size() == size_t(size), "wrong stream item size");
    }
  }

private:
  int64_t size;
  tractor::Value blob;
};

template <>
class StreamItems<tractor::Typed<benchschema::Tick>> {
public:
  explicit StreamItems(int64_t size) { KJ_REQUIRE(size == 8, "a Tick carries 8 bytes", size); }
  tractor::Typed<benchschema::Tick> make(int64_t index) const {
    tractor::Typed<benchschema::Tick> tick;
    tick.builder().setSeq(index);
    return tick;
  }
  void check(const tractor::Typed<benchschema::Tick>& item, int64_t index) const {
    KJ_REQUIRE(item.reader().getSeq() == uint64_t(index), "wrong stream item", index);
  }
};

template <>
class StreamItems<tractor::Typed<benchschema::Blob>> {
public:
  explicit StreamItems(int64_t size): size(size) { blob.builder().initData(size); }
  tractor::Typed<benchschema::Blob> make(int64_t index) const {
    tractor::Typed<benchschema::Blob> item(blob.reader());
    item.builder().setSeq(index);
    return item;
  }
  void check(const tractor::Typed<benchschema::Blob>& item, int64_t index) const {
    auto reader = item.reader();
    KJ_REQUIRE(reader.getSeq() == uint64_t(index) && reader.getData().size() == size_t(size),
               "wrong stream item", index);
  }

private:
  int64_t size;
  tractor::Typed<benchschema::Blob> blob;
};

}  // namespace tractorbench

namespace {

using tractorbench::StreamItems;

// =======================================================================================
// Functions the actors run

int64_t trivial() { return 42; }
TRACTOR_EXPOSE(bench, trivial);

int64_t echo(int64_t value) { return value; }
TRACTOR_EXPOSE(bench, echo);

constexpr kj::Duration FOREVER = 3600 * kj::SECONDS;

tractor::Task<void> sleepForever() {
  co_await tractor::Actor::current().timer().afterDelay(FOREVER);
}
TRACTOR_EXPOSE(bench, sleepForever);
// A leaf of the error_to_reaped trees: running until cancelled.

using TickDialogue = tractor::DialogueSpec<tractor::Value, benchschema::Tick, benchschema::Tick>;
// The typed 8-byte figures: Ticks both ways; the started value and the result stay dynamic.
using BlobDialogue = tractor::DialogueSpec<tractor::Value, tractor::Value, benchschema::Blob>;
// stream_throughput_1k_typed: Blobs from the callee.

template <typename Callee>
tractor::Task<void> echoItems(Callee& ctx) {
  // context_stream_rtt*: sends every stream item straight back, until the root closes its side.
  co_await ctx.started(tractor::Value());
  co_await ctx.openStream([](auto& stream) -> tractor::Task<void> {
    for (;;) {
      auto item = co_await stream.receive();
      KJ_IF_MAYBE(value, item) {
        co_await stream.send(kj::mv(*value));
      } else {
        break;
      }
    }
  });
}

tractor::Task<void> echoStream(tractor::Context& ctx) { return echoItems(ctx); }
TRACTOR_CONTEXT(bench, echoStream);

tractor::Task<void> echoTicks(tractor::CalleeContext<TickDialogue>& ctx) { return echoItems(ctx); }
TRACTOR_CONTEXT(bench, echoTicks);

template <typename Item, typename Callee>
tractor::Task<void> produceItems(Callee& ctx, int64_t count, int64_t size) {
  // stream_throughput_*: sends `count` items of `size` bytes as fast as the stream takes them.
  co_await ctx.started(tractor::Value());
  StreamItems<Item> items(size);
  co_await ctx.openStream([&](auto& stream) -> tractor::Task<void> {
    for (int64_t i = 0; i < count; i++) co_await stream.send(items.make(i));
  });
}

tractor::Task<void> produceStream(tractor::Context& ctx, int64_t count, int64_t size) {
  return produceItems<tractor::Value>(ctx, count, size);
}
TRACTOR_CONTEXT(bench, produceStream);

tractor::Task<void> produceTicks(tractor::CalleeContext<TickDialogue>& ctx, int64_t count,
                                 int64_t size) {
  return produceItems<tractor::Typed<benchschema::Tick>>(ctx, count, size);
}
TRACTOR_CONTEXT(bench, produceTicks);

tractor::Task<void> produceBlobs(tractor::CalleeContext<BlobDialogue>& ctx, int64_t count,
                                 int64_t size) {
  return produceItems<tractor::Typed<benchschema::Blob>>(ctx, count, size);
}
TRACTOR_CONTEXT(bench, produceBlobs);

template <typename Fn>
struct Dialogue;
// The caller's side of the context function type Fn: the context its block gets, the stream in
// it and the items the callee sends.
template <typename R, typename... Params>
struct Dialogue<R (*)(tractor::Context&, Params...)> {
  using Caller = tractor::Context;
  using Stream = tractor::MsgStream;
  using Item = tractor::Value;
};
template <typename R, typename Spec, typename... Params>
struct Dialogue<R (*)(tractor::CalleeContext<Spec>&, Params...)> {
  using Caller = tractor::CallerContext<Spec>;
  using Stream = typename Caller::Stream;
  using Item = tractor::SlotType<typename Spec::CalleeItemType>;
};

class SubtreeReadiness {
  // What one supervisor (or the root) waits for while its children build their subtrees: one
  // `subtreeReady()` report from each of them. At most one exists per process at a time; it is
  // reachable from `subtreeReady()` while it lives.
public:
  explicit SubtreeReadiness(size_t expected): pending(expected) {
    KJ_REQUIRE(current == nullptr, "a subtree is already being built in this process");
    auto paf = kj::newPromiseAndFulfiller<void>();
    done = paf.promise.fork();
    fulfiller = kj::mv(paf.fulfiller);
    current = this;
  }
  ~SubtreeReadiness() noexcept(false) { current = nullptr; }
  KJ_DISALLOW_COPY(SubtreeReadiness);

  kj::Promise<void> allReady() { return done.addBranch(); }
  std::vector<int64_t>& pids() { return reported; }
  // Every pid of the subtrees reported so far.

  static void report(std::vector<int64_t> pids) {
    KJ_REQUIRE(current != nullptr && current->pending > 0, "unexpected subtree readiness report");
    auto& self = *current;
    self.reported.insert(self.reported.end(), pids.begin(), pids.end());
    if (--self.pending == 0) self.fulfiller->fulfill();
  }

private:
  size_t pending;
  std::vector<int64_t> reported;
  kj::ForkedPromise<void> done = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  static SubtreeReadiness* current;
};

SubtreeReadiness* SubtreeReadiness::current = nullptr;

void subtreeReady(std::vector<int64_t> pids) { SubtreeReadiness::report(kj::mv(pids)); }
TRACTOR_EXPOSE(bench, subtreeReady);
// Called by a child supervisor on its parent once its whole subtree runs, with the pids in it.

constexpr int FAN_OUT = 2;
// Children per supervisor in the error_to_reaped_14 tree.

kj::Promise<kj::Array<tractor::Portal>> spawnLeaves(tractor::ActorNursery& nursery, int count) {
  auto spawns = kj::heapArrayBuilder<kj::Promise<tractor::Portal>>(count);
  for (int i = 0; i < count; i++) spawns.add(nursery.runInActor(sleepForever));
  return kj::joinPromises(spawns.finish());
}
// `count` sleeping leaves started at once; resolves once every one of them runs.

tractor::Task<void> superviseSubtree(int64_t depth);

kj::Promise<kj::Array<tractor::Portal>> spawnSupervisors(tractor::ActorNursery& nursery, int count,
                                                         int64_t depth) {
  auto spawns = kj::heapArrayBuilder<kj::Promise<tractor::Portal>>(count);
  for (int i = 0; i < count; i++) spawns.add(nursery.runInActor(superviseSubtree, depth));
  return kj::joinPromises(spawns.finish());
}
// `count` supervisors of subtrees `depth` levels deep, started at once.

tractor::Task<void> superviseSubtree(int64_t depth) {
  // A supervisor `depth` levels above the leaves (1: its children are leaves). Starts FAN_OUT
  // children in a nursery of its own; once all of them (and their subtrees) run, reports its own
  // pid and every pid below it to its parent; then sleeps until cancelled.
  co_await tractor::openNursery([depth](tractor::ActorNursery& n) -> tractor::Task<void> {
    std::vector<int64_t> pids;
    pids.push_back(getpid());
    if (depth <= 1) {
      kj::Array<tractor::Portal> leaves = co_await spawnLeaves(n, FAN_OUT);
      for (auto& leaf: leaves) pids.push_back(leaf.actorId().pid);
    } else {
      SubtreeReadiness readiness(FAN_OUT);
      co_await spawnSupervisors(n, FAN_OUT, depth - 1);
      co_await readiness.allReady();
      pids.insert(pids.end(), readiness.pids().begin(), readiness.pids().end());
    }
    kj::Maybe<tractor::Portal> parent = tractor::Actor::current().parent();
    KJ_IF_MAYBE(p, parent) {
      co_await p->run(subtreeReady, kj::mv(pids));
    }
    co_await tractor::Actor::current().timer().afterDelay(FOREVER);
  });
}
TRACTOR_EXPOSE(bench, superviseSubtree);

// =======================================================================================
// Configuration and samples

constexpr const char* NOOP_ENV = "TRACTOR_BENCH_NOOP";
// Set in the environment of an `exec_self_noop` spawn: main() returns at once.

struct Config {
  int spawnRuns = 50;
  int spawnEightRuns = 20;
  int rttWarmup = 1000;
  int rttCalls = 20000;
  int rttBlock = 1000;
  // Floor and runtime round trips alternate in blocks of this many.
  int teardownRuns = 50;
  int errorRuns = 20;
  int scaleActors = 1000;
  // 0 skips the thousand-actor figures (--quick).
  int streamRuns = 5;
  int64_t smallItems = 500000;
  int64_t largeItems = 100000;
  // Items per stream_throughput run: 8-byte items, 1 KiB items.
  int findCalls = 5000;
  int connects = 200;
  // find_actor lookups and connect_to connections per transport.
  bool jsonOnly = false;
};

using Clock = std::chrono::steady_clock;
using Samples = std::vector<double>;

struct Measurements {
  // Every sample, in microseconds.
  Samples spawnTrue;
  Samples spawnTrueEight;
  Samples spawnSelfNoop;
  Samples pingPong;
  Samples spawnOne;
  Samples spawnEight;
  Samples portalRtt;
  Samples teardown;
  Samples errorToReapedEight;
  Samples errorToReapedTree;
  Samples contextRtt;
  Samples contextPingPong;
  Samples contextTypedRtt;
  // context_stream_rtt, its own interleaved ping-pong floor and context_stream_rtt_typed (whose
  // blocks alternate with both).
  Samples streamSmall;
  Samples streamLarge;
  Samples socketSmall;
  Samples socketLarge;
  Samples typedStreamSmall;
  Samples typedStreamLarge;
  // Throughput runs, in items per second: the runtime's stream, the raw socket floor and the
  // typed stream (each run right after the dynamic one), for 8-byte and 1 KiB items.
  Samples scaleSpawn;
  Samples scaleReap;
  // One sample each: all `scaleActors` daemons started and answering; all cancelled and reaped.
  Samples idleRss;
  Samples idlePss;
  Samples idlePrivate;
  // Per idle actor, in KiB (from /proc/<pid>/smaps_rollup, 32 actors running).
  struct Peers {
    // Between two sibling actors that found each other through the registrar, on one transport.
    Samples rtt;
    Samples pingPong;
    // peer_run_rtt and its own interleaved ping-pong floor.
    Samples streamSmall;
    Samples streamLarge;
    Samples socketSmall;
    Samples socketLarge;
    // Items per second, as for stream_throughput_*.
    Samples find;
    Samples connect;
  };
  Peers peers[2];
  // [UDS], [TCP]
};

constexpr int UDS = 0;
constexpr int TCP = 1;
// Indexes of Measurements::peers.

Config config;
Measurements measured;

double microsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "tractor-bench: %s: %s\n", what, strerror(errno));
  exit(2);
}

// =======================================================================================
// Floors: plain POSIX calls, no event loop involved
//
// They are interleaved with the runtime's figures so that both see the same machine state (other
// load, CPU placement of the two ends of a round trip). The ping-pong and stream helpers are
// forked in main() before the KJ event loop exists; the spawn floors use posix_spawn (vfork +
// exec), which, like the runtime's own spawns, is safe under a running loop. Blocking on the
// floor's I/O stalls the root's event loop, which has nothing else to do at those moments.

pid_t spawnProgram(const char* path, char** env) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  pid_t pid;
  int error = posix_spawn(&pid, path, nullptr, nullptr, argv, env);
  if (error != 0) {
    errno = error;
    die("posix_spawn");
  }
  return pid;
}
// posix_spawn()s `path` with no arguments; dies on failure.

void reap(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "tractor-bench: helper %d ended with wait status %d\n", pid, status);
    exit(2);
  }
}
// Waits for `pid`, which must exit with status 0.

constexpr int MAX_BATCH = 8;

double spawnBatch(const char* path, char** env, int batch) {
  KJ_REQUIRE(batch <= MAX_BATCH);
  pid_t pids[MAX_BATCH];
  auto start = Clock::now();
  for (int i = 0; i < batch; i++) pids[i] = spawnProgram(path, env);
  for (int i = 0; i < batch; i++) reap(pids[i]);
  return microsSince(start);
}
// Spawns `batch` copies of `path` at once, waits for all of them; returns the time taken.

std::vector<char*> noopEnvironment;
std::string noopMarker;
// The environment of an `exec_self_noop` spawn: ours plus NOOP_ENV.

void prepareNoopEnvironment() {
  for (char** e = environ; *e != nullptr; e++) noopEnvironment.push_back(*e);
  noopMarker = std::string(NOOP_ENV) + "=1";
  noopEnvironment.push_back(noopMarker.data());
  noopEnvironment.push_back(nullptr);
}

double spawnTrue(int batch) { return spawnBatch("/bin/true", environ, batch); }
double spawnSelfNoop() { return spawnBatch("/proc/self/exe", noopEnvironment.data(), 1); }

void fullWrite(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    data += n;
    size -= n;
  }
}

bool fullRead(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = read(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (n == 0) return false;
    data += n;
    size -= n;
  }
  return true;
}
// Reads exactly `size` bytes; false on end of file.

struct ForkedHelper {
  // A forked process at the other end of a blocking Unix socketpair, serving a floor
  // measurement. It never touches KJ; it exits when we close our end, and is then reaped.
  pid_t pid = -1;
  int fd = -1;
  // Our end (close-on-exec, so that no actor inherits it).

  template <typename Body>
  void start(Body&& body, const ForkedHelper* other = nullptr) {
    // Forks the helper, which runs `body(itsEnd)` and exits. Call before the KJ event loop
    // exists. `other`'s end is closed in the helper (fork keeps close-on-exec fds).
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) die("socketpair");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      close(fds[0]);
      if (other != nullptr && other->fd >= 0) close(other->fd);
      body(fds[1]);
      _exit(0);
    }
    close(fds[1]);
    pid = child;
    fd = fds[0];
  }

  void stop() {
    if (pid < 0) return;
    close(fd);
    reap(pid);
    pid = -1;
    fd = -1;
  }
};

ForkedHelper pingPong;
// Echoes 8-byte messages: the floor of every round trip.

void startPingPongHelper() {
  pingPong.start([](int fd) {
    char buffer[8];
    while (fullRead(fd, buffer, sizeof(buffer))) fullWrite(fd, buffer, sizeof(buffer));
  });
}

void pingPongBlock(int roundTrips, Samples* record) {
  char buffer[8];
  for (int i = 0; i < roundTrips; i++) {
    int64_t value = i;
    memcpy(buffer, &value, sizeof(value));
    auto start = Clock::now();
    fullWrite(pingPong.fd, buffer, sizeof(buffer));
    if (!fullRead(pingPong.fd, buffer, sizeof(buffer))) {
      errno = EPIPE;
      die("ping-pong helper closed early");
    }
    double elapsed = microsSince(start);
    if (record != nullptr) record->push_back(elapsed);
  }
}
// `roundTrips` sequential round trips of 8 bytes with the helper; their times go to `record`
// (unless null).

ForkedHelper streamHelper;
// On request, writes a number of items of a given size, one `write` per item: the raw floor of
// stream throughput.

struct StreamRequest {
  int64_t count;
  int64_t size;
};

constexpr size_t MAX_ITEM_SIZE = 1024;
constexpr size_t FLOOR_READ_SIZE = 65536;

void startStreamHelper() {
  streamHelper.start(
      [](int fd) {
        char item[MAX_ITEM_SIZE];
        memset(item, 'x', sizeof(item));
        StreamRequest request;
        while (fullRead(fd, reinterpret_cast<char*>(&request), sizeof(request))) {
          if (request.size <= 0 || size_t(request.size) > sizeof(item)) _exit(3);
          for (int64_t i = 0; i < request.count; i++) fullWrite(fd, item, request.size);
        }
      },
      &pingPong);
}

double socketStreamRun(int64_t count, int64_t size) {
  static char buffer[FLOOR_READ_SIZE];
  StreamRequest request = {count, size};
  uint64_t expected = uint64_t(count) * uint64_t(size);
  uint64_t received = 0;
  auto start = Clock::now();
  fullWrite(streamHelper.fd, reinterpret_cast<const char*>(&request), sizeof(request));
  while (received < expected) {
    ssize_t n = read(streamHelper.fd, buffer, std::min<uint64_t>(sizeof(buffer),
                                                                 expected - received));
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (n == 0) {
      errno = EPIPE;
      die("stream helper closed early");
    }
    received += n;
  }
  return count / (microsSince(start) / 1e6);
}
// One floor run: `count` items of `size` bytes from the helper, read as fast as possible; returns
// items per second.

// =======================================================================================
// The runtime's figures (the root actor), each interleaved with its floor

kj::Promise<kj::Array<int64_t>> spawnAndCollect(tractor::ActorNursery& nursery, int count) {
  auto chains = kj::heapArrayBuilder<kj::Promise<int64_t>>(count);
  for (int i = 0; i < count; i++) {
    chains.add(nursery.runInActor(trivial).then(
        [](tractor::Portal&& portal) { return portal.waitForResult<int64_t>(); }));
  }
  return kj::joinPromises(chains.finish());
}
// `count` concurrent runInActor(trivial) + waitForResult chains, joined. A plain function: the
// array is built outside any coroutine frame.

void expectAnswers(kj::ArrayPtr<const int64_t> answers) {
  for (auto answer: answers) KJ_REQUIRE(answer == 42, "wrong result from trivial()", answer);
}

tractor::Task<void> measureSpawnOne() {
  for (int run = -1; run < config.spawnRuns; run++) {  // run -1 warms up, unrecorded
    double floor = spawnTrue(1);
    double noop = spawnSelfNoop();
    co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
      auto start = Clock::now();
      tractor::Portal portal = co_await n.runInActor(trivial);
      int64_t answer = co_await portal.waitForResult<int64_t>();
      double elapsed = microsSince(start);
      KJ_REQUIRE(answer == 42, "wrong result from trivial()", answer);
      if (run >= 0) measured.spawnOne.push_back(elapsed);
    });
    if (run >= 0) {
      measured.spawnTrue.push_back(floor);
      measured.spawnSelfNoop.push_back(noop);
    }
  }
}

tractor::Task<void> measureSpawnEight() {
  for (int run = -1; run < config.spawnEightRuns; run++) {
    double floor = spawnTrue(8);
    co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
      auto start = Clock::now();
      kj::Array<int64_t> answers = co_await spawnAndCollect(n, 8);
      double elapsed = microsSince(start);
      expectAnswers(answers);
      if (run >= 0) measured.spawnEight.push_back(elapsed);
    });
    if (run >= 0) measured.spawnTrueEight.push_back(floor);
  }
}

tractor::Task<void> alternateWithFloor(
    Samples* floor, kj::Function<kj::Promise<void>(int roundTrips, bool record)> runtime) {
  // The round-trip figures: a warm-up of the floor and of `runtime`, then blocks of
  // config.rttBlock floor round trips (recorded in `floor`) and `runtime` ones (told to record)
  // alternating, config.rttCalls of each.
  floor->reserve(floor->size() + config.rttCalls);
  pingPongBlock(config.rttWarmup, nullptr);
  co_await runtime(config.rttWarmup, false);
  for (int done = 0; done < config.rttCalls;) {
    int block = std::min(config.rttBlock, config.rttCalls - done);
    pingPongBlock(block, floor);
    co_await runtime(block, true);
    done += block;
  }
}

tractor::Task<void> measurePortalRtt() {
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal daemon = co_await n.startActor("echo", tractor::enable("bench"));
    int64_t next = 0;
    co_await alternateWithFloor(
        &measured.pingPong, [&](int calls, bool record) -> tractor::Task<void> {
          for (int i = 0; i < calls; i++) {
            int64_t value = next++;
            auto start = Clock::now();
            int64_t answer = co_await daemon.run(echo, value);
            double elapsed = microsSince(start);
            KJ_REQUIRE(answer == value, "wrong result from echo()", answer, value);
            if (record) measured.portalRtt.push_back(elapsed);
          }
        });
  });
}

template <typename Item, typename Stream>
tractor::Task<void> contextRttBlock(Stream& stream, int roundTrips, int64_t* next,
                                    Samples* record) {
  // `roundTrips` sequential round trips of one 8-byte item through an echoing context, each
  // timed from before the item is built until the answer was checked.
  StreamItems<Item> items(8);
  for (int i = 0; i < roundTrips; i++) {
    int64_t index = (*next)++;
    auto start = Clock::now();
    co_await stream.send(items.make(index));
    kj::Maybe<Item> answer = co_await stream.receive();
    KJ_IF_MAYBE(a, answer) {
      items.check(*a, index);
    } else {
      KJ_FAIL_REQUIRE("the echoing context ended its stream early");
    }
    double elapsed = microsSince(start);
    if (record != nullptr) record->push_back(elapsed);
  }
}

template <typename Fn>
tractor::Task<void> withEchoStream(
    tractor::Portal daemon, Fn echoFn,
    kj::Function<kj::Promise<void>(typename Dialogue<Fn>::Stream&)> body) {
  // Opens the echoing context `echoFn` with `daemon` and runs `body` with its open stream.
  using Caller = typename Dialogue<Fn>::Caller;
  co_await daemon.openContext(echoFn, [&body](Caller& ctx, tractor::Value) -> tractor::Task<void> {
    co_await ctx.openStream(kj::mv(body));
    co_await ctx.waitForResult();
  });
}

tractor::Task<void> measureContextRtt() {
  // context_stream_rtt and context_stream_rtt_typed: a dynamic and a typed echoing context open
  // at once with one daemon; blocks of floor, dynamic and typed round trips alternate.
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal daemon = co_await n.startActor("echo", tractor::enable("bench"));
    co_await withEchoStream(daemon, echoStream, [&](tractor::MsgStream& dynamic) {
      return withEchoStream(daemon, echoTicks, [&](auto& typed) -> tractor::Task<void> {
        int64_t next = 0;
        co_await alternateWithFloor(
            &measured.contextPingPong, [&](int roundTrips, bool record) -> tractor::Task<void> {
              co_await contextRttBlock<tractor::Value>(
                  dynamic, roundTrips, &next, record ? &measured.contextRtt : nullptr);
              co_await contextRttBlock<tractor::Typed<benchschema::Tick>>(
                  typed, roundTrips, &next, record ? &measured.contextTypedRtt : nullptr);
            });
      });
    });
  });
}

template <typename Item, typename Stream>
tractor::Task<int64_t> receiveAll(Stream& stream, int64_t size) {
  // Reads `stream` to its end as fast as it can; returns how many items came.
  StreamItems<Item> items(size);
  int64_t received = 0;
  for (;;) {
    auto item = co_await stream.receive();
    KJ_IF_MAYBE(value, item) {
      items.check(*value, received++);
    } else {
      break;
    }
  }
  co_return received;
}

template <typename Fn>
tractor::Task<double> streamRun(tractor::Portal daemon, Fn produce, int64_t count, int64_t size) {
  // One runtime run: `count` items of `size` bytes from the daemon's context function `produce`
  // (produceStream or a typed one); returns items per second.
  using D = Dialogue<Fn>;
  Clock::time_point start = Clock::now();
  Clock::time_point end;
  int64_t received = 0;
  co_await daemon.openContext(
      tractor::StreamOptions().withOverruns(), produce, count, size,
      [&](typename D::Caller& ctx, tractor::Value) -> tractor::Task<void> {
        co_await ctx.openStream(tractor::StreamOptions().withOverruns(),
                                [&](typename D::Stream& stream) -> tractor::Task<void> {
                                  received = co_await receiveAll<typename D::Item>(stream, size);
                                  end = Clock::now();
                                });
      });
  KJ_REQUIRE(received == count, "the stream lost items", received, count);
  co_return count / (std::chrono::duration<double>(end - start).count());
}

using StreamRuns = kj::Function<kj::Promise<void>(int64_t count, bool record)>;

tractor::Task<void> alternateWithStreamFloor(int64_t count, int64_t size, Samples* floor,
                                             StreamRuns runtime) {
  // The throughput figures: a warm-up of a tenth of `count` items of `size` bytes (floor and
  // `runtime`), then config.streamRuns runs of `count`, each floor run (recorded in `floor`)
  // followed by `runtime` (told to record).
  socketStreamRun(count / 10, size);
  co_await runtime(count / 10, false);
  for (int run = 0; run < config.streamRuns; run++) {
    floor->push_back(socketStreamRun(count, size));
    co_await runtime(count, true);
  }
}

template <typename TypedFn>
StreamRuns dynamicAndTyped(tractor::Portal daemon, TypedFn produceTyped, int64_t size,
                           Samples* dynamic, Samples* typed) {
  // A run of produceStream then one of `produceTyped`, from `daemon`.
  return [=](int64_t count, bool record) -> tractor::Task<void> {
    double rate = co_await streamRun(daemon, produceStream, count, size);
    double typedRate = co_await streamRun(daemon, produceTyped, count, size);
    if (record) {
      dynamic->push_back(rate);
      typed->push_back(typedRate);
    }
  };
}

tractor::Task<void> measureStreamThroughput() {
  // stream_throughput_* and their typed counterparts, after the same floor run.
  co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal daemon = co_await n.startActor("producer", tractor::enable("bench"));
    co_await alternateWithStreamFloor(
        config.smallItems, 8, &measured.socketSmall,
        dynamicAndTyped(daemon, produceTicks, 8, &measured.streamSmall,
                        &measured.typedStreamSmall));
    co_await alternateWithStreamFloor(
        config.largeItems, 1024, &measured.socketLarge,
        dynamicAndTyped(daemon, produceBlobs, 1024, &measured.streamLarge,
                        &measured.typedStreamLarge));
  });
}

// ---- peers found through the registrar ---------------------------------------------------------

tractor::Task<tractor::Portal> findPeer(kj::String name) {
  kj::Maybe<tractor::Portal> found = co_await tractor::findActor(name);
  KJ_IF_MAYBE(portal, found) {
    co_return *portal;
  }
  KJ_FAIL_REQUIRE("no actor is registered under this name", name);
}

tractor::Task<std::vector<double>> peerRttBlock(kj::String peerName, int64_t first,
                                                int64_t count) {
  // In the client: `count` sequential `Portal::run(echo)` round trips with the sibling
  // `peerName`, found through the registrar; the time of each, in µs.
  tractor::Portal peer = co_await findPeer(kj::mv(peerName));
  std::vector<double> samples;
  samples.reserve(count);
  for (int64_t i = 0; i < count; i++) {
    int64_t value = first + i;
    auto start = Clock::now();
    int64_t answer = co_await peer.run(echo, value);
    double elapsed = microsSince(start);
    KJ_REQUIRE(answer == value, "wrong result from echo()", answer, value);
    samples.push_back(elapsed);
  }
  co_return samples;
}
TRACTOR_EXPOSE(bench, peerRttBlock);

tractor::Task<double> peerStreamRun(kj::String peerName, int64_t count, int64_t size) {
  // In the client: one stream_throughput run from the sibling `peerName`; items per second.
  tractor::Portal peer = co_await findPeer(kj::mv(peerName));
  double rate = co_await streamRun(peer, produceStream, count, size);
  co_return rate;
}
TRACTOR_EXPOSE(bench, peerStreamRun);

tractor::Task<std::vector<double>> timeFindActor(kj::String peerName, int64_t count) {
  // In the client: `count` lookups of `peerName`, each timed (µs).
  std::vector<double> samples;
  samples.reserve(count);
  for (int64_t i = 0; i < count; i++) {
    auto start = Clock::now();
    kj::Maybe<tractor::Portal> found = co_await tractor::findActor(peerName);
    double elapsed = microsSince(start);
    KJ_REQUIRE(found != nullptr, "findActor() found nothing", peerName);
    samples.push_back(elapsed);
  }
  co_return samples;
}
TRACTOR_EXPOSE(bench, timeFindActor);

tractor::Task<std::vector<double>> timeConnectTo(kj::String peerName, int64_t count) {
  // In the client: `count` new connections to `peerName`'s address, each timed (µs). They stay
  // open until the client ends.
  kj::Maybe<tractor::Address> where = co_await tractor::queryActor(peerName);
  KJ_IF_MAYBE(address, where) {
    std::vector<double> samples;
    samples.reserve(count);
    for (int64_t i = 0; i < count; i++) {
      auto start = Clock::now();
      tractor::Portal peer = co_await tractor::connectTo(*address);
      double elapsed = microsSince(start);
      KJ_REQUIRE(peer.actorId().name == peerName, "another actor answered", peer.actorId().name);
      samples.push_back(elapsed);
    }
    co_return samples;
  }
  KJ_FAIL_REQUIRE("no actor is registered under this name", peerName);
}
TRACTOR_EXPOSE(bench, timeConnectTo);

void append(Samples& to, const std::vector<double>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

StreamRuns peerStreamRuns(tractor::Portal client, int64_t size, Samples* rates) {
  // A peer_stream run of `client` reading from its sibling "server".
  return [=](int64_t count, bool record) mutable -> tractor::Task<void> {
    double rate = co_await client.run(peerStreamRun, "server", count, size);
    if (record) rates->push_back(rate);
  };
}

tractor::Task<void> measurePeers(int transport) {
  // The peer figures on the transport of the running root (UDS or TCP).
  co_await tractor::openNursery([transport](tractor::ActorNursery& n) -> tractor::Task<void> {
    auto& m = measured.peers[transport];
    co_await n.startActor("server", tractor::enable("bench"));
    tractor::Portal client = co_await n.startActor("client", tractor::enable("bench"));

    // Round trips: the client connects to the server in its warm-up block.
    int64_t next = 0;
    co_await alternateWithFloor(&m.pingPong, [&](int calls, bool record) -> tractor::Task<void> {
      std::vector<double> samples = co_await client.run(peerRttBlock, "server", next, calls);
      if (record) append(m.rtt, samples);
      next += calls;
    });
    co_await alternateWithStreamFloor(config.smallItems, 8, &m.socketSmall,
                                      peerStreamRuns(client, 8, &m.streamSmall));
    co_await alternateWithStreamFloor(config.largeItems, 1024, &m.socketLarge,
                                      peerStreamRuns(client, 1024, &m.streamLarge));

    // Discovery.
    std::vector<double> finds = co_await client.run(timeFindActor, "server", config.findCalls);
    append(m.find, finds);
    std::vector<double> connects = co_await client.run(timeConnectTo, "server", config.connects);
    append(m.connect, connects);
  });
}

tractor::Task<void> measureTeardown() {
  for (int run = -1; run < config.teardownRuns; run++) {
    Clock::time_point blockEnd;
    co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
      tractor::Portal daemon = co_await n.startActor("daemon", tractor::enable("bench"));
      int64_t answer = co_await daemon.run(echo, 7);
      KJ_REQUIRE(answer == 7, "wrong result from echo()", answer);
      blockEnd = Clock::now();
    });
    if (run >= 0) measured.teardown.push_back(microsSince(blockEnd));
  }
}

constexpr const char* RAISED = "error_to_reaped: raised on purpose";

void checkAllGone(const std::vector<int64_t>& pids, size_t expected) {
  if (pids.size() != expected) {
    fprintf(stderr, "tractor-bench: the tree reported %zu actors, expected %zu\n", pids.size(),
            expected);
    exit(2);
  }
  for (auto pid: pids) {
    // Fails with ESRCH only once the process is reaped: a zombie still counts as left over.
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) {
      fprintf(stderr, "tractor-bench: actor process %lld is left after its nursery raised\n",
              static_cast<long long>(pid));
      exit(2);
    }
  }
}
// Every process of the tree is gone once the nursery that raised has completed.

kj::Promise<Clock::time_point> whenRaised(kj::Promise<void> scope) {
  return scope.then(
      []() -> Clock::time_point {
        KJ_FAIL_REQUIRE("the nursery did not raise");
      },
      [](kj::Exception&& e) -> Clock::time_point {
        auto end = Clock::now();
        KJ_REQUIRE(strstr(e.getDescription().cStr(), RAISED) != nullptr,
                   "the nursery raised another error", e.getDescription());
        return end;
      });
}
// The moment `scope` (an openNursery) completed with the error RAISED.

tractor::Task<void> measureErrorToReapedEight() {
  for (int run = -1; run < config.errorRuns; run++) {
    Clock::time_point raiseAt;
    std::vector<int64_t> pids;
    Clock::time_point reapedAt = co_await whenRaised(
        tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
          kj::Array<tractor::Portal> leaves = co_await spawnLeaves(n, 8);
          for (auto& leaf: leaves) pids.push_back(leaf.actorId().pid);
          raiseAt = Clock::now();
          KJ_FAIL_REQUIRE(RAISED);
        }));
    double elapsed = std::chrono::duration<double, std::micro>(reapedAt - raiseAt).count();
    checkAllGone(pids, 8);
    if (run >= 0) measured.errorToReapedEight.push_back(elapsed);
  }
}

tractor::Task<void> measureErrorToReapedTree() {
  for (int run = -1; run < config.errorRuns; run++) {
    Clock::time_point raiseAt;
    std::vector<int64_t> pids;
    Clock::time_point reapedAt = co_await whenRaised(
        tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
          // The root's children are supervisors 2 levels above the leaves: 2 + 4 + 8 actors.
          SubtreeReadiness readiness(FAN_OUT);
          co_await spawnSupervisors(n, FAN_OUT, 2);
          co_await readiness.allReady();
          pids = kj::mv(readiness.pids());
          raiseAt = Clock::now();
          KJ_FAIL_REQUIRE(RAISED);
        }));
    double elapsed = std::chrono::duration<double, std::micro>(reapedAt - raiseAt).count();
    checkAllGone(pids, 14);
    if (run >= 0) measured.errorToReapedTree.push_back(elapsed);
  }
}

constexpr int IDLE_ACTORS = 32;

void readMemory(pid_t pid) {
  // Rss, Pss and private memory of one process, in KiB.
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
  FILE* f = fopen(path, "r");
  KJ_REQUIRE(f != nullptr, "cannot read", path);
  char line[256];
  double rss = 0, pss = 0, privateKib = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    double kib;
    if (sscanf(line, "Rss: %lf kB", &kib) == 1) rss = kib;
    if (sscanf(line, "Pss: %lf kB", &kib) == 1) pss = kib;
    if (sscanf(line, "Private_Clean: %lf kB", &kib) == 1) privateKib += kib;
    if (sscanf(line, "Private_Dirty: %lf kB", &kib) == 1) privateKib += kib;
  }
  fclose(f);
  measured.idleRss.push_back(rss);
  measured.idlePss.push_back(pss);
  measured.idlePrivate.push_back(privateKib);
}

tractor::Task<void> measureIdleMemory() {
  // 32 daemon actors, each having answered one call, then idle.
  co_await tractor::openNursery([](tractor::ActorNursery& nursery) -> tractor::Task<void> {
    kj::Vector<kj::Promise<tractor::Portal>> starting;
    for (int i = 0; i < IDLE_ACTORS; i++) {
      starting.add(nursery.startActor(kj::str("idle", i), tractor::enable("bench")));
    }
    auto actors = co_await kj::joinPromises(starting.releaseAsArray());
    for (auto& actor: actors) KJ_ASSERT(co_await actor.run(echo, 7) == 7);
    for (auto& actor: actors) readMemory(static_cast<pid_t>(actor.actorId().pid));
  });
}

tractor::Task<void> measureScale() {
  // A thousand daemon actors: from the first spawn until every one has answered a call, and from
  // the end of the block until the nursery has cancelled and reaped them all.
  if (config.scaleActors == 0) co_return;
  Clock::time_point start = Clock::now();
  Clock::time_point blockEnd;
  co_await tractor::openNursery([&](tractor::ActorNursery& nursery) -> tractor::Task<void> {
    kj::Vector<kj::Promise<tractor::Portal>> starting;
    for (int i = 0; i < config.scaleActors; i++) {
      starting.add(nursery.startActor(kj::str("scale", i), tractor::enable("bench")));
    }
    auto actors = co_await kj::joinPromises(starting.releaseAsArray());
    kj::Vector<kj::Promise<int64_t>> calls;
    for (auto& actor: actors) calls.add(actor.run(echo, 1));
    auto answers = co_await kj::joinPromises(calls.releaseAsArray());
    KJ_ASSERT(answers.size() == size_t(config.scaleActors));
    measured.scaleSpawn.push_back(microsSince(start));
    blockEnd = Clock::now();
  });
  measured.scaleReap.push_back(microsSince(blockEnd));
}

tractor::Task<void> rootMain() {
  co_await measureScale();
  co_await measureIdleMemory();
  co_await measureSpawnOne();
  co_await measureSpawnEight();
  co_await measurePortalRtt();
  co_await measureContextRtt();
  co_await measureStreamThroughput();
  co_await measureTeardown();
  co_await measureErrorToReapedEight();
  co_await measureErrorToReapedTree();
  co_await measurePeers(UDS);
}

tractor::Task<void> tcpRootMain() {
  // The second root, whose tree listens on TCP (127.0.0.1).
  co_await measurePeers(TCP);
}

// =======================================================================================
// Report

struct Stats {
  size_t n = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

double percentile(const Samples& sorted, double q) {
  // Nearest rank: the smallest sample with at least q of the samples at or below it.
  size_t rank = static_cast<size_t>(q * sorted.size() + 0.999999);
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

Stats statsOf(Samples samples) {
  Stats stats;
  stats.n = samples.size();
  if (samples.empty()) return stats;
  std::sort(samples.begin(), samples.end());
  stats.p50 = percentile(samples, 0.50);
  stats.p90 = percentile(samples, 0.90);
  stats.p99 = percentile(samples, 0.99);
  return stats;
}

struct Figure {
  const char* name;
  const Samples* samples;
  const char* floorName;
  // nullptr when the figure has no floor.
  const Samples* floorSamples;
  const char* note;
  const char* target;
  // Printed after the row of the table; nullptr when there is none.
  const char* baseName = nullptr;
  const Samples* baseSamples = nullptr;
  // The figure this one is compared with (p50 over its p50), when there is one: the dynamic
  // counterpart of a typed figure.
};

double ratio(double value, double base) { return base > 0 ? value / base : 0.0; }

void printJson(const Figure& figure) {
  Stats s = statsOf(*figure.samples);
  printf("{\"figure\":\"%s\",\"unit\":\"us\",\"n\":%zu,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f",
         figure.name, s.n, s.p50, s.p90, s.p99);
  if (figure.floorName != nullptr) {
    Stats f = statsOf(*figure.floorSamples);
    printf(",\"floor\":\"%s\",\"floor_n\":%zu,\"floor_p50\":%.2f,\"floor_p90\":%.2f,"
           "\"floor_p99\":%.2f,\"ratio_p50\":%.2f",
           figure.floorName, f.n, f.p50, f.p90, f.p99, ratio(s.p50, f.p50));
  }
  if (figure.baseName != nullptr) {
    Stats b = statsOf(*figure.baseSamples);
    printf(",\"vs\":\"%s\",\"vs_p50\":%.2f,\"ratio_vs_p50\":%.2f", figure.baseName, b.p50,
           ratio(s.p50, b.p50));
  }
  if (figure.note != nullptr) printf(",\"note\":\"%s\"", figure.note);
  printf("}\n");
}

void printVersus(const char* baseName, const Samples* baseSamples, double p50,
                 const char* format) {
  // Table column: "vs <base>: <ratio>x" for a figure compared with another.
  if (baseName == nullptr) return;
  printf("   vs %s: ", baseName);
  printf(format, ratio(p50, statsOf(*baseSamples).p50));
}

void printTable(kj::ArrayPtr<const Figure> figures) {
  printf("\n%-26s %10s %10s %10s   %-24s %10s %8s\n", "figure (us)", "p50", "p90", "p99", "floor",
         "floor p50", "ratio");
  for (auto& figure: figures) {
    Stats s = statsOf(*figure.samples);
    printf("%-26s %10.1f %10.1f %10.1f", figure.name, s.p50, s.p90, s.p99);
    if (figure.floorName != nullptr) {
      Stats f = statsOf(*figure.floorSamples);
      printf("   %-24s %10.1f %7.2fx", figure.floorName, f.p50, s.p50 / f.p50);
    } else {
      printf("   %-24s %10s %8s", "-", "-", "-");
      if (figure.target != nullptr) printf("   target: %s", figure.target);
    }
    printVersus(figure.baseName, figure.baseSamples, s.p50, "%.2fx");
    printf("\n");
  }
}

struct Throughput {
  const char* name;
  const Samples* samples;
  const char* floorName;
  const Samples* floorSamples;
  int64_t itemSize;
  // Payload bytes per item.
  const char* target;
  // nullptr when there is none.
  const char* baseName = nullptr;
  const Samples* baseSamples = nullptr;
  // As for Figure: the ratio is this figure's items/s over the base's.
};

void printThroughputJson(const Throughput& figure) {
  Stats s = statsOf(*figure.samples);
  Stats f = statsOf(*figure.floorSamples);
  double mb = figure.itemSize / 1e6;
  printf("{\"figure\":\"%s\",\"unit\":\"items/s\",\"item_bytes\":%lld,\"n\":%zu,"
         "\"p50\":%.0f,\"mb_per_s_p50\":%.2f,\"floor\":\"%s\",\"floor_n\":%zu,"
         "\"floor_p50\":%.0f,\"floor_mb_per_s_p50\":%.2f,\"ratio_p50\":%.3f",
         figure.name, static_cast<long long>(figure.itemSize), s.n, s.p50, s.p50 * mb,
         figure.floorName, f.n, f.p50, f.p50 * mb, ratio(s.p50, f.p50));
  if (figure.baseName != nullptr) {
    Stats b = statsOf(*figure.baseSamples);
    printf(",\"vs\":\"%s\",\"vs_p50\":%.0f,\"ratio_vs_p50\":%.3f", figure.baseName, b.p50,
           ratio(s.p50, b.p50));
  }
  printf(",\"note\":\"p50 of the runs");
  if (figure.target != nullptr) printf("; target: %s", figure.target);
  printf("\"}\n");
}

void printThroughputTable(kj::ArrayPtr<const Throughput> figures) {
  printf("\n%-26s %12s %9s   %-24s %12s %9s %8s\n", "throughput (p50)", "items/s", "MB/s",
         "floor", "items/s", "MB/s", "ratio");
  for (auto& figure: figures) {
    Stats s = statsOf(*figure.samples);
    Stats f = statsOf(*figure.floorSamples);
    double mb = figure.itemSize / 1e6;
    printf("%-26s %12.0f %9.1f   %-24s %12.0f %9.1f %7.3fx", figure.name, s.p50, s.p50 * mb,
           figure.floorName, f.p50, f.p50 * mb, s.p50 / f.p50);
    if (figure.target != nullptr) printf("   target: %s", figure.target);
    printVersus(figure.baseName, figure.baseSamples, s.p50, "%.3fx");
    printf("\n");
  }
}

void report() {
  const Figure figures[] = {
      {"spawn_first_result_1", &measured.spawnOne, "posix_spawn_true", &measured.spawnTrue,
       nullptr, nullptr},
      {"spawn_first_result_8", &measured.spawnEight, "posix_spawn_true_x8",
       &measured.spawnTrueEight, nullptr, nullptr},
      {"portal_run_rtt", &measured.portalRtt, "socketpair_pingpong", &measured.pingPong, nullptr,
       nullptr},
      {"nursery_teardown", &measured.teardown, nullptr, nullptr, "information, no floor", nullptr},
      {"error_to_reaped_8", &measured.errorToReapedEight, nullptr, nullptr,
       "no floor; target: under 50 ms", "under 50 ms"},
      {"error_to_reaped_14", &measured.errorToReapedTree, nullptr, nullptr,
       "no floor; target: under 50 ms", "under 50 ms"},
      {"exec_self_noop", &measured.spawnSelfNoop, "posix_spawn_true", &measured.spawnTrue,
       "information: exec of this binary exiting at the top of main", nullptr},
      {"context_stream_rtt", &measured.contextRtt, "socketpair_pingpong",
       &measured.contextPingPong, "target: p50 within 3x the floor", nullptr},
      {"context_stream_rtt_typed", &measured.contextTypedRtt, "socketpair_pingpong",
       &measured.contextPingPong, "Tick items; blocks alternate with context_stream_rtt's",
       nullptr, "context_stream_rtt", &measured.contextRtt},
      {"peer_run_rtt_uds", &measured.peers[UDS].rtt, "socketpair_pingpong",
       &measured.peers[UDS].pingPong, "siblings found through the registrar, over UDS", nullptr},
      {"peer_run_rtt_tcp", &measured.peers[TCP].rtt, "socketpair_pingpong",
       &measured.peers[TCP].pingPong, "siblings found through the registrar, over TCP 127.0.0.1",
       nullptr},
      {"find_actor_uds", &measured.peers[UDS].find, nullptr, nullptr,
       "information: findActor of a registered, connected sibling", nullptr},
      {"find_actor_tcp", &measured.peers[TCP].find, nullptr, nullptr,
       "information: findActor of a registered, connected sibling", nullptr},
      {"connect_to_uds", &measured.peers[UDS].connect, nullptr, nullptr,
       "information: connectTo a sibling: new connection and handshake", nullptr},
      {"connect_to_tcp", &measured.peers[TCP].connect, nullptr, nullptr,
       "information: connectTo a sibling: new connection and handshake", nullptr},
      {"scale_1000_spawn", &measured.scaleSpawn, nullptr, nullptr,
       "one sample; target: under 3 s", "under 3 s"},
      {"scale_1000_reap", &measured.scaleReap, nullptr, nullptr,
       "one sample; target: under 1 s", "under 1 s"},
  };
  auto shown = kj::arrayPtr(figures, config.scaleActors == 0 ? kj::size(figures) - 2
                                                             : kj::size(figures));
  const Throughput throughputs[] = {
      {"stream_throughput_8b", &measured.streamSmall, "socketpair_stream_8b",
       &measured.socketSmall, 8, ">= 1,000,000 items/s"},
      {"stream_throughput_8b_typed", &measured.typedStreamSmall, "socketpair_stream_8b",
       &measured.socketSmall, 8, nullptr, "stream_throughput_8b", &measured.streamSmall},
      {"stream_throughput_1k", &measured.streamLarge, "socketpair_stream_1k",
       &measured.socketLarge, 1024, "at least half the floor"},
      {"stream_throughput_1k_typed", &measured.typedStreamLarge, "socketpair_stream_1k",
       &measured.socketLarge, 1024, nullptr, "stream_throughput_1k", &measured.streamLarge},
      {"peer_stream_8b_uds", &measured.peers[UDS].streamSmall, "socketpair_stream_8b",
       &measured.peers[UDS].socketSmall, 8, "none (information)"},
      {"peer_stream_1k_uds", &measured.peers[UDS].streamLarge, "socketpair_stream_1k",
       &measured.peers[UDS].socketLarge, 1024, "none (information)"},
      {"peer_stream_8b_tcp", &measured.peers[TCP].streamSmall, "socketpair_stream_8b",
       &measured.peers[TCP].socketSmall, 8, "none (information)"},
      {"peer_stream_1k_tcp", &measured.peers[TCP].streamLarge, "socketpair_stream_1k",
       &measured.peers[TCP].socketLarge, 1024, "none (information)"},
  };
  for (auto& figure: shown) printJson(figure);
  for (auto& figure: throughputs) printThroughputJson(figure);
  Stats rss = statsOf(measured.idleRss);
  Stats pss = statsOf(measured.idlePss);
  Stats privateKib = statsOf(measured.idlePrivate);
  printf("{\"figure\":\"idle_actor_memory\",\"unit\":\"KiB\",\"n\":%zu,\"rss_p50\":%.0f,"
         "\"rss_p99\":%.0f,\"pss_p50\":%.0f,\"pss_p99\":%.0f,\"private_p50\":%.0f,"
         "\"private_p99\":%.0f,\"note\":\"%d idle actors running; target: <= 4 MiB RSS, "
         "<= 400 KiB Pss\"}\n",
         rss.n, rss.p50, rss.p99, pss.p50, pss.p99, privateKib.p50, privateKib.p99, IDLE_ACTORS);
  if (!config.jsonOnly) {
    printTable(shown);
    printThroughputTable(throughputs);
    printf("\n%-22s %10s %10s %10s   (KiB per actor, %d idle actors; target: RSS <= 4096, "
           "Pss <= 400)\n", "idle actor memory", "RSS p50", "Pss p50", "private",
           IDLE_ACTORS);
    printf("%-22s %10.0f %10.0f %10.0f\n", "", rss.p50, pss.p50, privateKib.p50);
  }
  fflush(stdout);
}

bool parseArguments(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      config.spawnRuns = 5;
      config.spawnEightRuns = 3;
      config.rttWarmup = 100;
      config.rttCalls = 500;
      config.rttBlock = 100;
      config.teardownRuns = 5;
      config.errorRuns = 3;
      config.scaleActors = 0;
      config.streamRuns = 2;
      config.smallItems = 5000;
      config.largeItems = 2000;
      config.findCalls = 200;
      config.connects = 20;
    } else if (strcmp(argv[i], "--json-only") == 0) {
      config.jsonOnly = true;
    } else {
      fprintf(stderr, "usage: %s [--quick] [--json-only]\n", argv[0]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // A spawned actor is this same executable: it must become a child runtime before anything else.
  if (tractor::isChildProcess()) return tractor::main(argc, argv, rootMain);
  if (getenv(NOOP_ENV) != nullptr) return 0;
  if (!parseArguments(argc, argv)) return 2;

  prepareNoopEnvironment();
  startPingPongHelper();
  startStreamHelper();
  // The root serves `bench` too: the error_to_reaped_14 supervisors report readiness to it.
  int code = tractor::main(argc, argv, rootMain, tractor::RootOptions().enable("bench"));
  // The TCP peer figures need a tree listening on TCP: a second root, after the first has ended.
  if (code == 0) {
    code = tractor::main(argc, argv, tcpRootMain,
                         tractor::RootOptions().withTransport(tractor::Transport::TCP));
  }
  streamHelper.stop();
  pingPong.stop();
  if (code != 0) {
    fprintf(stderr, "tractor-bench: the runtime figures failed (exit code %d)\n", code);
    return code;
  }
  report();
  return 0;
}
