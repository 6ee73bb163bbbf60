// The exec spawn backend. See exec-spawn.h.

#include "tractor/spawn/exec-spawn.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include "tractor/kj-runtime/net/limits.h"
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char** environ;

#if defined(__SANITIZE_ADDRESS__)
#define TRACTOR_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRACTOR_ADDRESS_SANITIZER 1
#endif
#endif

namespace tractor {

namespace {

class SpawnAttributes {
  // posix_spawn attributes and file actions, destroyed on every path.
public:
  SpawnAttributes() {
    KJ_SYSCALL_HANDLE_ERRORS(posix_spawnattr_init(&attr)) { KJ_FAIL_SYSCALL("spawnattr", error); }
    KJ_SYSCALL_HANDLE_ERRORS(posix_spawn_file_actions_init(&actions)) {
      KJ_FAIL_SYSCALL("file_actions", error);
    }
  }
  ~SpawnAttributes() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
};

void check(int error, const char* what) {
  // posix_spawn* functions return the error instead of setting errno.
  if (error != 0) KJ_FAIL_SYSCALL(what, error);
}

}  // namespace

SpawnedChild execSpawn(kj::LowLevelAsyncIoProvider& lowLevel, kj::UnixEventPort& eventPort,
                       kj::StringPtr actorName) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds));
  kj::AutoCloseFd parentEnd(fds[0]);
  kj::AutoCloseFd childEnd(fds[1]);
  if (childEnd.get() == CHILD_SOCKET_FD) {
    // dup2(3, 3) is a no-op that would leave close-on-exec set: move the fd out of the way.
    int moved;
    KJ_SYSCALL(moved = fcntl(childEnd.get(), F_DUPFD_CLOEXEC, CHILD_SOCKET_FD + 1));
    childEnd = kj::AutoCloseFd(moved);
  }
  // The child's end must block: the child wraps it itself, and exec'd code expects a plain fd.
  int flags;
  KJ_SYSCALL(flags = fcntl(childEnd.get(), F_GETFL));
  KJ_SYSCALL(fcntl(childEnd.get(), F_SETFL, flags & ~O_NONBLOCK));

  SpawnAttributes spawn;
  check(posix_spawn_file_actions_adddup2(&spawn.actions, childEnd.get(), CHILD_SOCKET_FD),
        "adddup2");
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  check(posix_spawnattr_setsigmask(&spawn.attr, &empty), "setsigmask");
  check(posix_spawnattr_setsigdefault(&spawn.attr, &defaults), "setsigdefault");
  check(posix_spawnattr_setflags(&spawn.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
        "setflags");

  auto fdVar = kj::str(CHILD_FD_ENV, '=', CHILD_SOCKET_FD);
  auto ppidVar = kj::str(PARENT_PID_ENV, '=', getpid());
  auto nameVar = kj::str(ACTOR_NAME_ENV, '=', actorName);
  auto limitsVar = kj::str(MESSAGE_LIMITS_ENV, '=', messageLimits().toString());
  auto limitsPrefix = kj::str(MESSAGE_LIMITS_ENV, '=');
  kj::Vector<char*> env;
  for (char** e = environ; *e != nullptr; e++) {
    if (strncmp(*e, "TRACTOR_CHILD_FD=", 17) == 0 || strncmp(*e, "TRACTOR_PARENT_PID=", 19) == 0 ||
        strncmp(*e, "TRACTOR_ACTOR_NAME=", 19) == 0 ||
        strncmp(*e, limitsPrefix.cStr(), limitsPrefix.size()) == 0) {
      continue;
    }
    env.add(*e);
  }
  env.add(fdVar.begin());
  env.add(ppidVar.begin());
  env.add(nameVar.begin());
  env.add(limitsVar.begin());
#if TRACTOR_ADDRESS_SANITIZER
  // LeakSanitizer checks a process at exit from a tracer process it clones; an actor killed
  // during that check (its parent died) would orphan the tracer into the tree. Actors skip the
  // check; the root (the test binary) keeps it.
  char noLeakCheck[] = "ASAN_OPTIONS=detect_leaks=0";
  if (getenv("ASAN_OPTIONS") == nullptr) env.add(noLeakCheck);
#endif
  env.add(nullptr);

  // argv[0] is the title `ps` shows until the child sets its own; the padding gives the child
  // room to write a longer title there.
  auto argv0 = kj::str("tractor[", actorName, "]", kj::repeat(' ', 48));
  char* argv[] = {argv0.begin(), nullptr};

  pid_t pid;
  check(posix_spawn(&pid, "/proc/self/exe", &spawn.actions, &spawn.attr, argv, env.begin()),
        "posix_spawn");
  childEnd = nullptr;

  SpawnedChild result;
  result.process = kj::heap<ChildProcess>(eventPort, pid);
  result.connection = lowLevel.wrapSocketFd(
      kj::mv(parentEnd), kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                             kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  return result;
}

}  // namespace tractor
