// Two hosts on one machine (issue 6, "Several hosts"): two network namespaces joined by a veth
// pair, a registrar on host A and an actor tree on host B, talking over TCP across the link.
//
// - Host A (10.199.7.1) is this test binary re-executed as the scenario `netnsHostA` (see
//   death-test.h): it joins namespace A and runs a root actor "host-a" that becomes the registrar
//   at tcp:10.199.7.1:7777 and serves the module "netns". It prints "ready ..." once it listens,
//   and one line for every task of its own that is cancelled (with the monotonic time), which is
//   how the test learns what host A noticed even when the link is down.
// - Host B (10.199.7.2) is this test process: while the tree runs, its thread is in namespace B
//   (setns), so the root "host-b" and every actor it spawns listen on 10.199.7.2 and reach host A
//   only through the veth pair. The root joins host A's registrar.
//
// The first test checks discovery in both directions, calls, streaming, error relay and
// cancellation across the link; the second cuts the link (`ip link set veth-b down`) in the
// middle of a stream, a call and a call chain, and checks that both sides notice within
// LINK_LOSS_DEADLINE, that the tasks on either side serving the other are cancelled, and that
// everything still comes down: no process, namespace or socket left.
//
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`. Where the test lacks either,
// it passes with a MESSAGE starting "SKIPPED" that says why. Namespaces are named
// tractor-netns-<pid>-<n>-{a,b}; they are removed at the end of each test, whatever happened, and
// ones left by a test process that died are removed by the next run.

#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>
#include "tractor/kj-runtime/actor/connection-internal.h"
#include "tractor/supervise/main.h"
#include "tests/support/death-test.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::Context;
using tractor::MsgStream;
using tractor::Portal;
using tractor::StreamOptions;
using tractor::Task;
using tractor::Value;
using tractor::test::contains;
using tractor::test::errorOf;
using tractor::test::Gauge;
using tractor::test::raised;
using tractor::test::shown;
using Clock = std::chrono::steady_clock;

constexpr const char* HOST_A_IP = "10.199.7.1";
constexpr const char* HOST_B_IP = "10.199.7.2";
constexpr int REGISTRY_PORT = 7777;
// Host A's registrar. The namespaces are private to one test, so a fixed port cannot collide.
constexpr const char* SUBNET_BITS = "/24";

constexpr kj::Duration HANG_DEADLINE = 90 * kj::SECONDS;
// Catches hangs of host B's tree only.
constexpr kj::Duration WAIT_DEADLINE = 10 * kj::SECONDS;
// For a handshake that waits for something the runtime must do on its own (a cancellation).
constexpr kj::Duration LINK_LOSS_DEADLINE =
    3 * tractor::TCP_USER_TIMEOUT_MS * kj::MILLISECONDS;
// How long after the link is cut each side may take to notice: three times the runtime's limit
// (connection.h: a TCP peer that stops answering is noticed within about 5 s, by keepalive when
// idle or TCP_USER_TIMEOUT with data in flight).
constexpr auto READY_DEADLINE = std::chrono::seconds(15);
// How long host A may take to listen.
constexpr auto STOP_DEADLINE = std::chrono::seconds(10);
// How long host A may take to end after SIGTERM.

constexpr int64_t STREAM_ITEMS = 10000;
constexpr int64_t PING_PONGS = 200;
constexpr int64_t TICK_MS = 5;
// Host A's ticker in the link test sends an item every TICK_MS.

constexpr const char* SCENARIO_ENV = "TRACTOR_TEST_SCENARIO";
// How a re-executed test binary learns which scenario to run (as in death-test.cpp).
constexpr const char* NETNS_ENV = "TRACTOR_NETNS_TEST_NS";
constexpr const char* REGISTRY_ENV = "TRACTOR_NETNS_TEST_REGISTRY";
// Host A's namespace and registry address, for the scenario.

int64_t monotonicMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             Clock::now().time_since_epoch())
      .count();
}
// steady_clock is CLOCK_MONOTONIC: comparable across the processes of one machine.

double millisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

void say(kj::StringPtr line) {
  // One line on standard output, written at once (host A's report to the test).
  auto text = kj::str(line, '\n');
  const char* p = text.begin();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = write(STDOUT_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= n;
  }
}

kj::String registryAddress() { return kj::str("tcp:", HOST_A_IP, ':', REGISTRY_PORT); }

// ---- commands and namespaces -----------------------------------------------------------------

kj::Maybe<std::string> findIp() {
  // iproute2's `ip`, wherever Debian or another distribution puts it.
  for (const char* dir: {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string path = std::string(dir) + "/ip";
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return nullptr;
}

struct CommandResult {
  int status = -1;
  // The wait status; -1 when the program could not be started.
  std::string output;
  // Standard output and standard error together.

  bool ok() const { return status == 0; }
};

CommandResult runCommand(const std::vector<std::string>& args) {
  // Runs args[0] (a path) with the rest as arguments, to its end.
  CommandResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    result.output = std::string("pipe2: ") + strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<char*> argv;
  for (auto& arg: args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int error = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (error != 0) {
    close(fds[0]);
    result.output = args[0] + ": " + strerror(error);
    return result;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    result.output.append(buf, n);
  }
  close(fds[0]);
  while (waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {}
  return result;
}

std::string describeCommand(const std::vector<std::string>& args,
                            const CommandResult& result) {
  std::string text = "`";
  for (size_t i = 0; i < args.size(); i++) text += (i == 0 ? "" : " ") + args[i];
  text += "` failed (" + std::string(tractor::test::describeStatus(result.status).cStr()) + ")";
  if (!result.output.empty()) text += ": " + result.output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

constexpr const char* NETNS_PREFIX = "tractor-netns-";

void removeStaleNamespaces(const std::string& ip) {
  // Namespaces named after a test process that no longer exists (one that was killed before it
  // could clean up) are removed.
  auto listed = runCommand({ip, "netns", "list"});
  if (!listed.ok()) return;
  size_t start = 0;
  while (start < listed.output.size()) {
    size_t end = listed.output.find('\n', start);
    if (end == std::string::npos) end = listed.output.size();
    std::string line = listed.output.substr(start, end - start);
    start = end + 1;
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind(NETNS_PREFIX, 0) != 0) continue;
    long owner = strtol(name.c_str() + strlen(NETNS_PREFIX), nullptr, 10);
    if (owner <= 0 || owner == getpid()) continue;
    if (kill(static_cast<pid_t>(owner), 0) < 0 && errno == ESRCH) {
      runCommand({ip, "netns", "del", name});
    }
  }
}

class InNamespace {
  // While it lives, this thread is in the named network namespace: the sockets it makes and the
  // processes it spawns belong there. The destructor brings the thread home.
public:
  explicit InNamespace(const std::string& name) {
    KJ_SYSCALL(home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    std::string path = "/run/netns/" + name;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    int error = fd < 0 ? errno : 0;
    if (fd >= 0 && setns(fd, CLONE_NEWNET) < 0) error = errno;
    if (fd >= 0) close(fd);
    if (error != 0) {
      close(home);
      KJ_FAIL_SYSCALL("setns", error, path);
    }
  }
  ~InNamespace() {
    if (setns(home, CLONE_NEWNET) < 0) {
      // The rest of the suite would run in the wrong namespace: stop here.
      fprintf(stderr, "netns-test: cannot return to the original network namespace: %s\n",
              strerror(errno));
      abort();
    }
    close(home);
  }
  KJ_DISALLOW_COPY(InNamespace);

private:
  int home = -1;
};

bool joinNamespace(const char* name) {
  // For a whole process (the host A scenario): joins the named network namespace for good.
  std::string path = std::string("/run/netns/") + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool joined = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return joined;
}

class TwoHosts {
  // Namespaces A and B joined by a veth pair (veth-a in A with HOST_A_IP, veth-b in B with
  // HOST_B_IP), both ends and both loopbacks up. The destructor removes both namespaces, which
  // removes the veth pair with them.
public:
  TwoHosts() {
    static int made = 0;
    std::string base = std::string(NETNS_PREFIX) + std::to_string(getpid()) + "-" +
                       std::to_string(++made);
    a = base + "-a";
    b = base + "-b";
  }
  ~TwoHosts() { remove(); }
  KJ_DISALLOW_COPY(TwoHosts);

  kj::Maybe<std::string> setUp() {
    // Builds the two hosts; returns why it cannot on this machine, or null once they are up.
    if (geteuid() != 0) {
      return std::string("not running as root: creating network namespaces and veth pairs "
                         "needs CAP_SYS_ADMIN and CAP_NET_ADMIN");
    }
    KJ_IF_MAYBE(path, findIp()) {
      ip = *path;
    } else {
      return std::string("iproute2's `ip` command is not installed (Debian package iproute2)");
    }
    removeStaleNamespaces(ip);
    std::vector<std::vector<std::string>> steps;
    steps.push_back({ip, "netns", "add", a});
    steps.push_back({ip, "netns", "add", b});
    steps.push_back({ip, "-n", a, "link", "add", "veth-a", "type", "veth", "peer", "name",
                     "veth-b", "netns", b});
    steps.push_back({ip, "-n", a, "addr", "add", std::string(HOST_A_IP) + SUBNET_BITS, "dev",
                     "veth-a"});
    steps.push_back({ip, "-n", b, "addr", "add", std::string(HOST_B_IP) + SUBNET_BITS, "dev",
                     "veth-b"});
    steps.push_back({ip, "-n", a, "link", "set", "lo", "up"});
    steps.push_back({ip, "-n", b, "link", "set", "lo", "up"});
    steps.push_back({ip, "-n", a, "link", "set", "veth-a", "up"});
    steps.push_back({ip, "-n", b, "link", "set", "veth-b", "up"});
    for (size_t i = 0; i < steps.size(); i++) {
      auto result = runCommand(steps[i]);
      if (!result.ok()) return describeCommand(steps[i], result);
    }
    // Joining B is what the test does with its own thread: find out now whether it may.
    auto joined = kj::runCatchingExceptions([&]() { InNamespace probe(b); });
    KJ_IF_MAYBE(e, joined) {
      return std::string("cannot enter the namespace: ") + e->getDescription().cStr();
    }
    return nullptr;
  }

  void cutLink() {
    // `ip link set veth-b down` in B: B loses its route to A, and A's end loses its carrier.
    std::vector<std::string> args = {ip, "-n", b, "link", "set", "veth-b", "down"};
    auto result = runCommand(args);
    KJ_REQUIRE(result.ok(), describeCommand(args, result));
  }

  bool remove() {
    // Deletes both namespaces (and the veth pair); true once neither exists.
    if (ip.empty()) return true;
    bool gone = true;
    for (auto* name: {&b, &a}) {
      if (access(("/run/netns/" + *name).c_str(), F_OK) != 0) continue;
      auto result = runCommand({ip, "netns", "del", *name});
      if (!result.ok()) gone = false;
    }
    return gone;
  }

  std::string a;
  std::string b;

private:
  std::string ip;
};

// ---- host A, a separate process --------------------------------------------------------------

class HostProcess {
  // The test binary re-executed as a scenario, with `env` added to its environment and its
  // standard output piped to us. The destructor kills and reaps it if the test did not stop it.
public:
  HostProcess(const char* scenario, const std::vector<std::string>& env) {
    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<std::string> added = env;
    added.push_back(std::string(SCENARIO_ENV) + "=" + scenario);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; e++) envp.push_back(*e);
    for (auto& e: added) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    char arg0[] = "tractor-scenario";
    char* argv[] = {arg0, nullptr};
    int error = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out = fds[0];
    if (error != 0) {
      close(out);
      KJ_FAIL_SYSCALL("posix_spawn", error, scenario);
    }
  }
  ~HostProcess() {
    if (!reaped) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(out);
  }
  KJ_DISALLOW_COPY(HostProcess);

  kj::Maybe<std::string> readLine(Clock::time_point until) {
    // The next line the process printed; null if none came before `until` or the output ended.
    for (;;) {
      size_t nl = pending.find('\n');
      if (nl != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        return line;
      }
      if (!fill(until)) return nullptr;
    }
  }

  kj::Maybe<int> stop(int signo, Clock::time_point until) {
    // Sends `signo`, collects the rest of the output (see `rest()`) and waits for the end, until
    // `until`; returns the wait status, or null if the process did not end in time.
    if (!reaped) kill(pid, signo);
    while (fill(until)) {}
    while (!reaped && Clock::now() < until) {
      int status;
      pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        reaped = true;
        exitStatus = status;
      } else {
        usleep(1000);
      }
    }
    if (!reaped) return nullptr;
    return exitStatus;
  }

  const std::string& rest() const { return pending; }
  // Output not read as lines yet.

private:
  pid_t pid = -1;
  int out = -1;
  bool reaped = false;
  int exitStatus = 0;
  std::string pending;

  bool fill(Clock::time_point until) {
    // Reads what is there (waiting until `until`); false at the end of output or the deadline.
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return false;
      struct pollfd pfd = {out, POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      char buf[4096];
      ssize_t n = read(out, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      pending.append(buf, n);
      return true;
    }
  }
};

// ---- the module both hosts serve: "netns" ----------------------------------------------------

Gauge tasksStarted;
// Probed tasks that started in this process.
Gauge tasksCut;
// Probed tasks whose frames were destroyed before they finished: cancelled.
Gauge ticksSeen;
// In host B's root: ticker items received.
bool reportCuts = false;
// Host A: print a line for every probed task cut (the test reads it even when the link is down).

struct TaskProbe {
  // Lives in a task's frame and counts it in `tasksStarted`, and in `tasksCut` unless the task
  // marked itself done.
  kj::StringPtr what;
  bool done = false;
  explicit TaskProbe(kj::StringPtr what): what(what) { tasksStarted.add(); }
  ~TaskProbe() {
    if (done) return;
    tasksCut.add();
    if (reportCuts) say(kj::str("cut ", what, " at ", monotonicMicros()));
  }
  KJ_DISALLOW_COPY(TaskProbe);
};

void resetState() {
  tasksStarted.reset();
  tasksCut.reset();
  ticksSeen.reset();
}

int64_t add(int64_t a, int64_t b) { return a + b; }
TRACTOR_EXPOSE(netns, add);

kj::String listenAddress() {
  // Where this actor listens, as printed.
  KJ_IF_MAYBE(address, tractor::Actor::current().address()) {
    return address->toString();
  }
  return kj::str("nowhere");
}
TRACTOR_EXPOSE(netns, listenAddress);

void fail(kj::String why) { throw std::runtime_error(why.cStr()); }
TRACTOR_EXPOSE(netns, fail);

Task<Portal> findOrFail(kj::String name) {
  // The actor registered under `name`, connected; raises if there is none.
  kj::Maybe<Portal> found = co_await tractor::findActor(name);
  KJ_IF_MAYBE(p, found) {
    co_return *p;
  }
  KJ_FAIL_REQUIRE("no actor is registered under this name", name);
}

Task<int64_t> addVia(kj::String name, int64_t a, int64_t b) {
  // Finds `name` through the registrar and has it add.
  Portal peer = co_await findOrFail(kj::mv(name));
  int64_t sum = co_await peer.run(add, a, b);
  co_return sum;
}
TRACTOR_EXPOSE(netns, addVia);

Task<void> failVia(kj::String name, kj::String why) {
  // Finds `name` and has it fail: its error is relayed through this actor.
  Portal peer = co_await findOrFail(kj::mv(name));
  co_await peer.run(fail, kj::mv(why));
}
TRACTOR_EXPOSE(netns, failVia);

Task<void> sleepForever() {
  TaskProbe probe("sleepForever");
  co_await kj::Promise<void>(kj::NEVER_DONE);
}
TRACTOR_EXPOSE(netns, sleepForever);

Task<void> sleepVia(kj::String name) {
  // Finds `name` and has it sleep: a call chain whose cancellation must travel on.
  TaskProbe probe("sleepVia");
  Portal peer = co_await findOrFail(kj::mv(name));
  co_await peer.run(sleepForever);
}
TRACTOR_EXPOSE(netns, sleepVia);

Task<void> waitForStarted(int64_t n) { co_await tasksStarted.atLeast(n); }
TRACTOR_EXPOSE(netns, waitForStarted);

Task<void> waitForCut(int64_t n) { co_await tasksCut.atLeast(n); }
TRACTOR_EXPOSE(netns, waitForCut);

Task<int64_t> doubler(Context& ctx) {
  // Answers every item with its double until the caller closes its side; returns the count.
  co_await ctx.started();
  int64_t count = 0;
  co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
    for (;;) {
      kj::Maybe<int64_t> item = co_await stream.receive<int64_t>();
      KJ_IF_MAYBE(x, item) {
        co_await stream.send(*x * 2);
        ++count;
      } else {
        break;
      }
    }
  });
  co_return count;
}
TRACTOR_CONTEXT(netns, doubler);

Task<int64_t> produce(Context& ctx, int64_t count) {
  // Streams 0, 1, ..., count - 1 as fast as the stream takes them; returns the count.
  co_await ctx.started(count);
  co_await ctx.openStream([count](MsgStream& stream) -> Task<void> {
    for (int64_t i = 0; i < count; i++) co_await stream.send(i);
  });
  co_return count;
}
TRACTOR_CONTEXT(netns, produce);

Task<void> sleeper(Context& ctx) {
  // Starts, then waits to be cancelled.
  TaskProbe probe("sleeper");
  co_await ctx.started();
  co_await kj::Promise<void>(kj::NEVER_DONE);
}
TRACTOR_CONTEXT(netns, sleeper);

Task<void> ticker(Context& ctx, int64_t periodMs) {
  // Streams 0, 1, 2, ... one item every `periodMs`, until cancelled.
  TaskProbe probe("ticker");
  co_await ctx.started();
  co_await ctx.openStream([periodMs](MsgStream& stream) -> Task<void> {
    for (int64_t i = 0;; i++) {
      co_await stream.send(i);
      co_await tractor::Actor::current().timer().afterDelay(periodMs * kj::MILLISECONDS);
    }
  });
}
TRACTOR_CONTEXT(netns, ticker);

// ---- host A's main -----------------------------------------------------------------------------

Task<void> hostAMain() {
  // Reports where host A listens and whether it is the registrar, then serves until SIGTERM.
  auto& actor = tractor::Actor::current();
  say(kj::str("ready ", listenAddress(), actor.isRegistrar() ? " registrar" : " joined"));
  co_await kj::Promise<void>(kj::NEVER_DONE);
}

}  // namespace

TRACTOR_SCENARIO(netnsHostA) {
  // Host A: joins the namespace named in NETNS_ENV and runs the registrar at REGISTRY_ENV.
  const char* ns = getenv(NETNS_ENV);
  const char* registry = getenv(REGISTRY_ENV);
  if (ns == nullptr || registry == nullptr) {
    say("error: the namespace or the registry address is missing");
    return 2;
  }
  if (!joinNamespace(ns)) {
    say(kj::str("error: cannot join network namespace ", ns, ": ", strerror(errno)));
    return 2;
  }
  reportCuts = true;
  return tractor::main(argc, argv, hostAMain,
                       tractor::RootOptions()
                           .withName("host-a")
                           .enable("netns")
                           .withTransport(tractor::Transport::TCP)
                           .withRegistry(registry));
}

namespace {

// ---- running the two hosts ---------------------------------------------------------------------

kj::Promise<void> deadline(kj::Promise<void> promise) {
  return tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE, kj::mv(promise));
}

tractor::RootOptions hostBOptions() {
  return tractor::RootOptions()
      .withName("host-b")
      .withTransport(tractor::Transport::TCP)
      .bindTo(kj::str("tcp:", HOST_B_IP, ":0"))
      .withRegistry(registryAddress());
}

class TwoHostRun {
  // One test's setting: the two hosts, host A running. `skipped()` says why there is none.
public:
  TwoHostRun() {
    KJ_IF_MAYBE(why, hosts.setUp()) {
      skipReason = *why;
      return;
    }
    std::vector<std::string> env;
    env.push_back(std::string(NETNS_ENV) + "=" + hosts.a);
    env.push_back(std::string(REGISTRY_ENV) + "=" + registryAddress().cStr());
    hostA = kj::heap<HostProcess>("netnsHostA", env);
  }

  kj::Maybe<std::string> skipped() const {
    if (skipReason.empty()) return nullptr;
    return skipReason;
  }

  bool waitUntilHostAReady() {
    // Reads host A's "ready" line; checks that it is the registrar at the registry address.
    KJ_IF_MAYBE(line, host().readLine(Clock::now() + READY_DEADLINE)) {
      std::string expected = std::string("ready ") + registryAddress().cStr() + " registrar";
      CHECK(*line == expected);
      return *line == expected;
    }
    FAIL_CHECK("host A did not report that it listens");
    return false;
  }

  template <typename Func>
  kj::Maybe<kj::Exception> runHostB(Func&& block) {
    // Runs `block(nursery)` in a root actor on host B (this thread in namespace B) under
    // HANG_DEADLINE; returns what it raised.
    InNamespace inB(hosts.b);
    return kj::runCatchingExceptions([&]() {
      tractor::runAsRoot(
          [&]() -> kj::Promise<void> {
            return tractor::failAfter(tractor::Actor::current().timer(), HANG_DEADLINE,
                                      tractor::openNursery(kj::fwd<Func>(block)));
          },
          hostBOptions());
    });
  }

  HostProcess& host() { return *hostA; }

  void stopHostA() {
    // SIGTERM: host A cancels its tree and exits with 128 + 15.
    auto status = host().stop(SIGTERM, Clock::now() + STOP_DEADLINE);
    INFO("host A's remaining output: " << host().rest());
    KJ_IF_MAYBE(s, status) {
      CHECK(tractor::test::describeStatus(*s) == "exit 143");
    } else {
      FAIL_CHECK("host A did not end within 10 s of SIGTERM");
    }
  }

  void cutLink() { hosts.cutLink(); }

  void tearDown() {
    // Host A gone, then both namespaces; checks that nothing of them is left.
    hostA = nullptr;
    CHECK_MESSAGE(hosts.remove(), "the network namespaces could not be removed");
    CHECK(access(("/run/netns/" + hosts.a).c_str(), F_OK) != 0);
    CHECK(access(("/run/netns/" + hosts.b).c_str(), F_OK) != 0);
  }

private:
  TwoHosts hosts;
  std::string skipReason;
  kj::Own<HostProcess> hostA;
  // Declared after `hosts`: destroyed (killed) before the namespaces are removed.
};

void skip(const std::string& why) {
  MESSAGE("SKIPPED (network namespaces unavailable): " << why);
  fprintf(stderr, "netns-test: SKIPPED: %s\n", why.c_str());
}

struct Watched {
  // A piece of work crossing the link when it is cut: how it ended, and when.
  kj::Maybe<kj::Exception> error;
  kj::Maybe<Clock::time_point> endedAt;
};

Task<void> watch(kj::Promise<void> work, Watched* watched) {
  watched->error = co_await errorOf(kj::mv(work));
  watched->endedAt = Clock::now();
}

kj::String millis(double ms) {
  // "1234.5"
  char text[32];
  snprintf(text, sizeof(text), "%.1f", ms);
  return kj::str(text);
}

kj::String noticed(const Watched& watched, Clock::time_point cutAt) {
  // "after 1234.5 ms (<error type>)" or "not noticed".
  KJ_IF_MAYBE(at, watched.endedAt) {
    kj::String how = kj::str("no error");
    KJ_IF_MAYBE(e, watched.error) {
      how = tractor::errorTypeName(*e);
    }
    return kj::str("after ", millis(millisBetween(cutAt, *at)), " ms (", how, ")");
  }
  return kj::str("not noticed");
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("netns a tree on host B finds, calls, streams with and cancels actors on host A") {
    tractor::test::LeakAudit audit;
    // Declared after the audit: host A and the namespaces are gone before it checks.
    TwoHostRun run;
    KJ_IF_MAYBE(why, run.skipped()) {
      skip(*why);
      return;
    }
    resetState();
    REQUIRE(run.waitUntilHostAReady());

    kj::String rootAddress, workerAddress, hostAAddress, queried, workerQueried;
    size_t entries = 0;
    int64_t sum = 0, fromHostA = 0, fromWorker = 0, doubled = 0, answered = 0, produced = 0;
    int64_t received = 0;
    kj::Maybe<kj::Exception> direct, relayed, cancelledContext;
    bool inOrder = true;
    auto error = run.runHostB([&](ActorNursery& n) -> Task<void> {
      KJ_IF_MAYBE(own, tractor::Actor::current().address()) {
        rootAddress = own->toString();
      }
      // Discovery: host A's registrar knows host A by name; the root joined it.
      kj::Maybe<tractor::Address> where = co_await tractor::queryActor("host-a");
      KJ_IF_MAYBE(w, where) {
        queried = w->toString();
      }
      kj::Array<tractor::Registration> all = co_await tractor::queryActors("host-a");
      entries = all.size();
      Portal hostA = co_await findOrFail(kj::str("host-a"));
      hostAAddress = co_await hostA.run(listenAddress);
      sum = co_await hostA.run(add, 2, 3);

      // A child on host B: it registers with host A's registrar (through its parent), host A
      // finds it by name and calls it, and it finds host A by name and calls it.
      Portal worker = co_await n.startActor("worker-b", tractor::enable("netns"));
      workerAddress = co_await worker.run(listenAddress);
      kj::Maybe<tractor::Address> workerWhere = co_await tractor::queryActor("worker-b");
      KJ_IF_MAYBE(w, workerWhere) {
        workerQueried = w->toString();
      }
      fromHostA = co_await hostA.run(addVia, "worker-b", 20, 22);
      fromWorker = co_await worker.run(addVia, "host-a", 1, 2);

      // Streaming: a ping-pong, then a one-way stream under flow control.
      co_await hostA.openContext(doubler, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          for (int64_t i = 0; i < PING_PONGS; i++) {
            co_await stream.send(i);
            kj::Maybe<int64_t> back = co_await stream.receive<int64_t>();
            KJ_IF_MAYBE(b, back) {
              if (*b == 2 * i) ++doubled;
            }
          }
        });
        answered = co_await ctx.waitForResult<int64_t>();
      });
      co_await hostA.openContext(produce, STREAM_ITEMS, [&](Context& ctx, Value) -> Task<void> {
        co_await ctx.openStream([&](MsgStream& stream) -> Task<void> {
          for (;;) {
            kj::Maybe<int64_t> item = co_await stream.receive<int64_t>();
            KJ_IF_MAYBE(i, item) {
              if (*i != received) inOrder = false;
              ++received;
            } else {
              break;
            }
          }
        });
        produced = co_await ctx.waitForResult<int64_t>();
      });

      // Errors: raised on host A; raised on host A and relayed by the worker on host B.
      direct = co_await errorOf(hostA.run(fail, "boom on host A"));
      relayed = co_await errorOf(worker.run(failVia, "host-a", "relayed boom"));

      // Cancellation across the link, three ways. (1) A dropped Portal::run.
      {
        kj::Maybe<kj::Promise<void>> call = hostA.run(sleepForever).eagerlyEvaluate(nullptr);
        co_await deadline(hostA.run(waitForStarted, 1));
        call = nullptr;
        co_await deadline(hostA.run(waitForCut, 1));
      }
      // (2) A context the caller cancels: absorbed at its scope.
      cancelledContext = co_await errorOf(
          hostA.openContext(sleeper, [](Context& ctx, Value) -> Task<void> {
            co_await ctx.cancel();
          }));
      co_await deadline(hostA.run(waitForCut, 2));
      // (3) A chain B -> A -> B: dropping the root's call cancels host A's task, which cancels
      // the call it made back into the worker on host B.
      {
        kj::Maybe<kj::Promise<void>> chain =
            hostA.run(sleepVia, "worker-b").eagerlyEvaluate(nullptr);
        co_await deadline(worker.run(waitForStarted, 1));
        chain = nullptr;
        co_await deadline(hostA.run(waitForCut, 3));
        co_await deadline(worker.run(waitForCut, 1));
      }
    });
    CHECK_CLEAN(error);
    run.stopHostA();
    run.tearDown();
    audit.check();

    std::string hostB = std::string("tcp:") + HOST_B_IP + ":";
    CHECK_MESSAGE(std::string(rootAddress.cStr()).rfind(hostB, 0) == 0, rootAddress.cStr());
    CHECK_MESSAGE(std::string(workerAddress.cStr()).rfind(hostB, 0) == 0, workerAddress.cStr());
    CHECK(workerQueried == workerAddress);
    CHECK(queried == registryAddress());
    CHECK(hostAAddress == registryAddress());
    CHECK(entries == 1);
    CHECK(sum == 5);
    CHECK(fromHostA == 42);
    CHECK(fromWorker == 3);
    CHECK(doubled == PING_PONGS);
    CHECK(answered == PING_PONGS);
    CHECK(received == STREAM_ITEMS);
    CHECK(produced == STREAM_ITEMS);
    CHECK(inOrder);
    KJ_IF_MAYBE(e, direct) {
      KJ_IF_MAYBE(remote, tractor::RemoteActorError::from(*e)) {
        CHECK(remote->src.name == "host-a");
        CHECK(remote->srcType == "std::runtime_error");
        CHECK(contains(remote->message, "boom on host A"));
      } else {
        FAIL_CHECK("not a remote error: " << e->getDescription().cStr());
      }
    } else {
      FAIL_CHECK("fail() on host A raised nothing");
    }
    KJ_IF_MAYBE(e, relayed) {
      KJ_IF_MAYBE(remote, tractor::RemoteActorError::from(*e)) {
        CHECK(remote->src.name == "host-a");
        CHECK(remote->srcType == "std::runtime_error");
        CHECK(contains(remote->message, "relayed boom"));
        CHECK(remote->isInception());
        CHECK(remote->relayUid().name == "worker-b");
      } else {
        FAIL_CHECK("not a remote error: " << e->getDescription().cStr());
      }
    } else {
      FAIL_CHECK("failVia() raised nothing");
    }
    CHECK_CLEAN(cancelledContext);
  }

  TEST_CASE("netns a cut link is noticed on both sides and cancels the tasks across it") {
    tractor::test::LeakAudit audit;
    // Declared after the audit: host A and the namespaces are gone before it checks.
    TwoHostRun run;
    KJ_IF_MAYBE(why, run.skipped()) {
      skip(*why);
      return;
    }
    resetState();
    REQUIRE(run.waitUntilHostAReady());

    Watched stream, call, chain, workerTask;
    Clock::time_point cutAt;
    Clock::time_point blockEnd;
    bool allNoticed = false;
    auto error = run.runHostB([&](ActorNursery& n) -> Task<void> {
      Portal hostA = co_await findOrFail(kj::str("host-a"));
      Portal worker = co_await n.startActor("worker-b", tractor::enable("netns"));
      // Three pieces of work cross the link: host A streaming to the root, host A sleeping for
      // the root, and host A calling the worker, which sleeps for it.
      kj::Vector<kj::Promise<void>> crossing;
      crossing.add(kj::Promise<void>(watch(
          hostA.openContext(ticker, TICK_MS,
                            [](Context& ctx, Value) -> Task<void> {
                              co_await ctx.openStream([](MsgStream& s) -> Task<void> {
                                for (;;) {
                                  kj::Maybe<Value> item = co_await s.receive();
                                  if (item == nullptr) break;
                                  ticksSeen.add();
                                }
                              });
                            }),
          &stream)).eagerlyEvaluate(nullptr));
      crossing.add(kj::Promise<void>(watch(hostA.run(sleepForever), &call))
                       .eagerlyEvaluate(nullptr));
      crossing.add(kj::Promise<void>(watch(hostA.run(sleepVia, "worker-b"), &chain))
                       .eagerlyEvaluate(nullptr));
      co_await deadline(ticksSeen.atLeast(3));
      co_await deadline(hostA.run(waitForStarted, 3));
      co_await deadline(worker.run(waitForStarted, 1));
      // The worker's task for host A must end by itself: the worker notices the loss.
      crossing.add(kj::Promise<void>(watch(worker.run(waitForCut, 1), &workerTask))
                       .eagerlyEvaluate(nullptr));

      cutAt = Clock::now();
      run.cutLink();
      allNoticed = co_await tractor::moveOnAfter(tractor::Actor::current().timer(),
                                                 LINK_LOSS_DEADLINE,
                                                 kj::joinPromises(crossing.releaseAsArray()));
      blockEnd = Clock::now();
    });
    double teardownMs = millisBetween(blockEnd, Clock::now());
    CHECK_CLEAN(error);

    // Host A's side: its tasks serving host B, cut once it noticed (read before SIGTERM, which
    // would cut them anyway).
    std::vector<std::string> cutOnA;
    std::vector<double> cutOnAMs;
    auto cutAtMicros = std::chrono::duration_cast<std::chrono::microseconds>(
                           cutAt.time_since_epoch())
                           .count();
    while (cutOnA.size() < 3) {
      KJ_IF_MAYBE(line, run.host().readLine(cutAt + std::chrono::microseconds(
                                                         LINK_LOSS_DEADLINE / kj::MICROSECONDS))) {
        char what[64];
        long long at;
        if (sscanf(line->c_str(), "cut %63s at %lld", what, &at) == 2) {
          cutOnA.push_back(what);
          cutOnAMs.push_back((at - cutAtMicros) / 1000.0);
        }
      } else {
        break;
      }
    }
    run.stopHostA();
    run.tearDown();
    audit.check();

    // What each side noticed, and when: the figures the issue asks to report.
    kj::Vector<kj::String> parts;
    parts.add(kj::str("host B's root: stream ", noticed(stream, cutAt)));
    parts.add(kj::str("call ", noticed(call, cutAt)));
    parts.add(kj::str("call chain ", noticed(chain, cutAt)));
    parts.add(kj::str("worker-b's task for host A cut ", noticed(workerTask, cutAt)));
    for (size_t i = 0; i < cutOnA.size(); i++) {
      parts.add(kj::str("host A cut ", cutOnA[i].c_str(), " after ", millis(cutOnAMs[i]), " ms"));
    }
    if (cutOnA.empty()) parts.add(kj::str("host A cut nothing"));
    parts.add(kj::str("host B's teardown after its block ", millis(teardownMs), " ms"));
    auto report = kj::str("link cut: ", kj::strArray(parts, "; "));
    MESSAGE(tractor::test::ds(report));

    CHECK_MESSAGE(allNoticed, "host B did not notice the cut link within "
                                  << LINK_LOSS_DEADLINE / kj::SECONDS << " s");
    // Each piece of work that ended did so for the right reason.
    for (auto* w: {&stream, &call, &chain}) {
      if (w->endedAt != nullptr) CHECK_RAISED(w->error, tractor::TRANSPORT_CLOSED);
    }
    if (workerTask.endedAt != nullptr) CHECK_CLEAN(workerTask.error);
    CHECK_MESSAGE(cutOnA.size() == 3, "host A did not cut its 3 tasks for host B within "
                                          << LINK_LOSS_DEADLINE / kj::SECONDS << " s");
    CHECK(teardownMs < 5000);
  }
}
