// Spawning: identity, process titles, log levels, pidfd-owned child processes.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "tractor/supervise/main.h"
#include "tractor/spawn/forkserver.h"
#include "tractor/spawn/process.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;
using tractor::test::contains;

kj::String readFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY);
  KJ_REQUIRE(fd >= 0, "cannot open", path);
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  // /proc/self/cmdline separates arguments with NULs.
  for (ssize_t i = 0; i < n; i++) {
    if (buf[i] == '\0') buf[i] = ' ';
  }
  return kj::heapString(buf, n < 0 ? 0 : n);
}

kj::String comm() { return readFile("/proc/self/comm"); }
TRACTOR_EXPOSE(spawn_test, comm);

kj::String cmdline() { return readFile("/proc/self/cmdline"); }
TRACTOR_EXPOSE(spawn_test, cmdline);

kj::String level() { return kj::str(tractor::logLevelName(tractor::logLevel())); }
TRACTOR_EXPOSE(spawn_test, level);

kj::String identity() {
  auto& actor = tractor::Actor::current();
  return kj::str(actor.id().name, '@', actor.id().pid, ' ', actor.isRoot());
}
TRACTOR_EXPOSE(spawn_test, identity);

int64_t parentPid() { return getppid(); }
TRACTOR_EXPOSE(spawn_test, parentPid);

bool isOwnListener(int fd) {
  // The socket this actor listens on for peers (bound to its own address).
  struct sockaddr_un bound;
  socklen_t length = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&bound), &length) < 0) return false;
  if (bound.sun_family != AF_UNIX) return false;
  KJ_IF_MAYBE(own, tractor::Actor::current().address()) {
    return own->path == bound.sun_path;
  }
  return false;
}

int64_t openFds() {
  // Counts this process's fds that are sockets other than the parent connection and the actor's
  // own listening socket: none of the parent's fds may leak into a child.
  int64_t count = 0;
  for (int fd = 4; fd < 256; fd++) {
    if (fcntl(fd, F_GETFD) < 0) continue;
    char path[64], target[256];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n > 0 && strncmp(target, "socket:", 7) == 0 && !isOwnListener(fd)) count++;
  }
  return count;
}
TRACTOR_EXPOSE(spawn_test, openFds);

class WithoutSpawnMethodEnv {
  // The environment's TRACTOR_SPAWN_METHOD wins over RootOptions; tests of the option set it
  // aside for their duration.
public:
  WithoutSpawnMethodEnv() {
    const char* value = getenv("TRACTOR_SPAWN_METHOD");
    if (value != nullptr) saved = kj::str(value);
    unsetenv("TRACTOR_SPAWN_METHOD");
  }
  ~WithoutSpawnMethodEnv() {
    KJ_IF_MAYBE(v, saved) {
      setenv("TRACTOR_SPAWN_METHOD", v->cStr(), 1);
    }
  }

private:
  kj::Maybe<kj::String> saved;
};

template <typename Func>
void inRoot(Func&& body) {
  tractor::test::LeakAudit audit;
  tractor::runAsRoot(kj::fwd<Func>(body));
  audit.check();
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("options assigned from their own chain keep what they held") {
    tractor::RootOptions root;
    root = kj::mv(root).enable("a");
    root = kj::mv(root).enable("b").withName("named");
    REQUIRE(root.enableModules.size() == 2);
    CHECK(root.enableModules[0] == "a");
    CHECK(root.enableModules[1] == "b");
    CHECK(root.name == "named");
    auto actor = tractor::enable("x");
    actor = kj::mv(actor).enable("y").withLogLevel("debug");
    REQUIRE(actor.enableModules.size() == 2);
    CHECK(actor.enableModules[1] == "y");
    CHECK(KJ_ASSERT_NONNULL(actor.logLevel) == "debug");
  }

  TEST_CASE("no runtime outside an actor") {
    CHECK(tractor::Actor::tryCurrent() == nullptr);
    auto e = kj::runCatchingExceptions([]() { tractor::Actor::current(); });
    KJ_IF_MAYBE(ex, e) {
      CHECK(contains(ex->getDescription(), tractor::NO_RUNTIME));
    } else {
      FAIL("Actor::current() did not raise");
    }
  }

  TEST_CASE("bad actor names are refused") {
    CHECK_THROWS(tractor::validateActorName(""));
    CHECK_THROWS(tractor::validateActorName("has space"));
    CHECK_THROWS(tractor::validateActorName("slash/name"));
    CHECK_NOTHROW(tractor::validateActorName("worker-1.a_b"));
  }

  TEST_CASE("log lines name the actor and honour the level") {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    int savedStderr = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    auto before = tractor::logLevel();
    tractor::setLogLevel(tractor::LogLevel::INFO);
    tractor::setLogActor("tester@42");
    TRACTOR_LOG(INFO, "shown ", 1);
    TRACTOR_LOG(DEBUG, "hidden");
    {
      // KJ's own log lines go through the sink and so carry the actor as well.
      tractor::LogSink sink;
      KJ_LOG(WARNING, "from kj");
    }
    tractor::setLogLevel(before);
    dup2(savedStderr, STDERR_FILENO);
    close(savedStderr);
    close(fds[1]);
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    buf[n < 0 ? 0 : n] = '\0';
    kj::StringPtr out(buf);
    CHECK(contains(out, "[info] tester@42 spawn-test.cpp:"));
    CHECK(contains(out, "shown 1"));
    CHECK(!contains(out, "hidden"));
    CHECK(contains(out, "[warning] tester@42 spawn-test.cpp:"));
    CHECK(contains(out, "from kj"));
  }

  TEST_CASE("uuids are version 4 and distinct") {
    auto a = tractor::newUuid();
    auto b = tractor::newUuid();
    CHECK(a.size() == 36);
    CHECK(a[14] == '4');
    CHECK(a != b);
  }
}

TEST_SUITE("multiproc") {
  TEST_CASE("the root knows itself and its children know their parent") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        auto& root = tractor::Actor::current();
        CHECK(root.isRoot());
        CHECK(root.id().name == "root");
        CHECK(root.parent() == nullptr);
        Portal p = co_await n.startActor("kid", tractor::enable("spawn_test"));
        CHECK(co_await p.run(identity) == kj::str("kid@", p.actorId().pid, " false"));
        CHECK(co_await p.run(parentPid) == getpid());
      });
    });
  }

  TEST_CASE("process titles show the actor name") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("titled", tractor::enable("spawn_test"));
        CHECK(co_await p.run(comm) == "titled\n");
        auto line = co_await p.run(cmdline);
        // An exec'd actor has room for the whole title; a forked one (forkserver backend) only
        // as much as the root's own command line had.
        kj::StringPtr title = "tractor[titled] child of root@";
        size_t room = tractor::ForkServer::current() == nullptr
                          ? title.size()
                          : readFile("/proc/self/cmdline").size();
        CHECK(line.startsWith(kj::heapString(title.slice(0, kj::min(room, title.size())))));
      });
    });
  }

  TEST_CASE("log level is inherited and can be set per actor") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal inherits = co_await n.startActor("inherits", tractor::enable("spawn_test"));
        CHECK(co_await inherits.run(level) == tractor::logLevelName(tractor::logLevel()));
        Portal chatty = co_await n.startActor(
            "chatty", tractor::enable("spawn_test").withLogLevel("trace"));
        CHECK(co_await chatty.run(level) == "trace");
      });
    });
  }

  TEST_CASE("children get no stray sockets from their parent") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal first = co_await n.startActor("first", tractor::enable("spawn_test"));
        // The second child is spawned while the first one's connection is open in the parent.
        Portal second = co_await n.startActor("second", tractor::enable("spawn_test"));
        CHECK(co_await second.run(openFds) == 0);
        CHECK(co_await first.run(openFds) == 0);
      });
    });
  }

  TEST_CASE("the forkserver backend forks actors that are the root's own children") {
    tractor::test::LeakAudit audit;
    WithoutSpawnMethodEnv withoutEnv;
    int64_t serverPid = 0;
    tractor::RootOptions options;
    options.spawnMethod = kj::str("forkserver");
    tractor::runAsRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        KJ_IF_MAYBE(server, tractor::ForkServer::current()) {
          serverPid = server->pid();
        }
        Portal p = co_await n.startActor("forked", tractor::enable("spawn_test"));
        CHECK(co_await p.run(parentPid) == getpid());
        CHECK(co_await p.run(identity) == kj::str("forked@", p.actorId().pid, " false"));
        // A grandchild comes from the exec backend (only the root has a server).
        Portal job = co_await n.runInActor(parentPid);
        CHECK(co_await job.waitForResult<int64_t>() == getpid());
      });
    }, kj::mv(options));
    CHECK(serverPid > 0);
    // The root reaped its server on the way out.
    CHECK(kill(static_cast<pid_t>(serverPid), 0) != 0);
    audit.check();
  }

  TEST_CASE("the forkserver's death takes no actor with it and later spawns fail clearly") {
    tractor::test::LeakAudit audit;
    WithoutSpawnMethodEnv withoutEnv;
    tractor::RootOptions options;
    options.spawnMethod = kj::str("forkserver");
    kj::String failure;
    tractor::runAsRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("survivor", tractor::enable("spawn_test"));
        auto& server = KJ_ASSERT_NONNULL(tractor::ForkServer::current());
        kill(server.pid(), SIGKILL);
        // The actor is the root's child, not the server's: it goes on serving.
        CHECK(co_await p.run(parentPid) == getpid());
        failure = co_await n.startActor("unborn", tractor::enable("spawn_test"))
                      .then([](Portal&&) { return kj::str("started"); },
                            [](kj::Exception&& e) { return kj::str(e.getDescription()); });
      });
    }, kj::mv(options));
    CHECK(contains(failure, "forkserver"));
    audit.check();
  }

  TEST_CASE("an unknown spawn method is a clear error") {
    WithoutSpawnMethodEnv withoutEnv;
    tractor::RootOptions options;
    options.spawnMethod = kj::str("teleport");
    auto e = kj::runCatchingExceptions([&]() {
      tractor::runAsRoot([]() -> kj::Promise<void> { return kj::READY_NOW; }, kj::mv(options));
    });
    KJ_IF_MAYBE(ex, e) {
      CHECK(contains(ex->getDescription(), "teleport"));
    } else {
      FAIL("an unknown spawn method was accepted");
    }
  }

  TEST_CASE("a child process is owned through its pidfd") {
    tractor::test::LeakAudit audit;
    auto io = kj::setupAsyncIo();
    pid_t pid;
    char sleepPath[] = "/bin/sleep";
    char seconds[] = "30";
    char* argv[] = {sleepPath, seconds, nullptr};
    REQUIRE(posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, environ) == 0);
    tractor::ChildProcess child(io.unixEventPort, pid);
    CHECK(!child.hasExited());
    CHECK(child.describeExit() == "still running");
    child.signal(SIGTERM);
    child.onExit().wait(io.waitScope);
    // A second wait resolves at once; signals after the reap are no-ops.
    child.onExit().wait(io.waitScope);
    child.signal(SIGKILL);
    CHECK(child.hasExited());
    CHECK(contains(child.describeExit(), "killed by signal 15"));
  }
}
