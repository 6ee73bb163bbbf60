// The forkserver spawn backend. See forkserver.h.
//
// How an actor comes to be the root's child without exec and without raw clone() (which would
// leave glibc's per-thread state pointing at the wrong task): the server forks an intermediate
// process, which forks the actor and exits at once. The actor, orphaned, is re-parented to the
// nearest child subreaper among its ancestors: the root (see OrphanReaper). It waits until that
// has happened (its first parent's pidfd turns readable once that process has exited, which is
// after the re-parenting), then runs the child runtime. The server reaps the intermediate
// process and replies with the actor's pid only then, so the root can take ownership at once.

#include "tractor/spawn/forkserver.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tractor/kj-runtime/net/limits.h"
#include "tractor/spawn/child.h"

namespace tractor {

namespace {

ForkServer* currentServer = nullptr;

struct FdMessage {
  // One control message: a short text and room for one fd passed with SCM_RIGHTS.
  struct iovec iov;
  char space[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;

  FdMessage(void* text, size_t size) {
    iov = {text, size};
    memset(space, 0, sizeof(space));
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space;
    msg.msg_controllen = sizeof(space);
  }
  KJ_DISALLOW_COPY(FdMessage);
};

[[noreturn]] void runActor(int control, int socket, const char* name, pid_t rootPid,
                           pid_t firstParent) {
  // In the forked actor: wait to be adopted by the root, then become a child actor. The pidfd
  // is opened before the check, so that it cannot refer to a recycled pid; if the first parent
  // is already gone, the adoption has happened.
  int parentFd = static_cast<int>(syscall(SYS_pidfd_open, firstParent, 0));
  if (parentFd >= 0) {
    if (getppid() != rootPid) {
      struct pollfd pfd = {parentFd, POLLIN, 0};
      while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
      }
    }
    close(parentFd);
  }
  if (getppid() != rootPid) _exit(1);  // the root is gone (or is no subreaper)
  close(control);
  if (socket != CHILD_SOCKET_FD) {
    dup2(socket, CHILD_SOCKET_FD);
    close(socket);
  }
  char number[32];
  snprintf(number, sizeof(number), "%d", CHILD_SOCKET_FD);
  setenv(CHILD_FD_ENV, number, 1);
  snprintf(number, sizeof(number), "%d", rootPid);
  setenv(PARENT_PID_ENV, number, 1);
  setenv(ACTOR_NAME_ENV, name, 1);
  // This process's copy of the root's limits, taken when the root forked the server (the root
  // sets them before that).
  setenv(MESSAGE_LIMITS_ENV, messageLimits().toString().cStr(), 1);
  // Nothing may unwind out of here: this process is a copy of the root's, and the stack below
  // is the root's.
  int code = 1;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { code = childMain(); })) {
    KJ_LOG(ERROR, "actor failed", *e);
  }
  fflush(nullptr);
  _exit(code);
}

[[noreturn]] void serve(int control, pid_t rootPid) {
  // The server's loop: one request (an actor name plus a socket fd) at a time. Plain blocking
  // system calls only, no exceptions: this process is a copy of the root's, stack included.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != rootPid) _exit(0);
  prctl(PR_SET_NAME, "forkserver", 0, 0, 0);
  for (;;) {
    char name[128];
    FdMessage request(name, sizeof(name) - 1);
    ssize_t n = recvmsg(control, &request.msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // the root closed the control socket: done
    name[n] = '\0';
    int socket = -1;
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&request.msg);
    if (cmsg != nullptr && cmsg->cmsg_type == SCM_RIGHTS) {
      memcpy(&socket, CMSG_DATA(cmsg), sizeof(int));
    }

    int32_t reply = -EINVAL;
    int pipeFds[2];
    if (socket >= 0 && pipe2(pipeFds, O_CLOEXEC) == 0) {
      pid_t intermediate = fork();
      if (intermediate == 0) {
        pid_t self = getpid();
        pid_t actor = fork();
        if (actor == 0) {
          close(pipeFds[0]);
          close(pipeFds[1]);
          runActor(control, socket, name, rootPid, self);
        }
        int32_t result = actor < 0 ? -errno : actor;
        ssize_t w = write(pipeFds[1], &result, sizeof(result));
        _exit(w == sizeof(result) ? 0 : 1);
      }
      close(pipeFds[1]);
      if (intermediate < 0) {
        reply = -errno;
      } else {
        int32_t result;
        reply = read(pipeFds[0], &result, sizeof(result)) == sizeof(result) ? result : -EIO;
        // Reaped only after the actor's pid is known: by then the actor has been re-parented.
        while (waitpid(intermediate, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
      close(pipeFds[0]);
    }
    if (socket >= 0) close(socket);
    if (write(control, &reply, sizeof(reply)) != sizeof(reply)) _exit(1);
  }
}

}  // namespace

bool forkServerRequested(kj::Maybe<kj::StringPtr> configured) {
  const char* method = getenv(SPAWN_METHOD_ENV);
  KJ_IF_MAYBE(c, configured) {
    if (method == nullptr) method = c->cStr();
  }
  if (method == nullptr || strcmp(method, "exec") == 0) return false;
  if (strcmp(method, "forkserver") != 0) {
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("unknown spawn method '", method, "' (TRACTOR_SPAWN_METHOD or "
                "RootOptions::spawnMethod): use exec or forkserver")));
  }
  return true;
}

kj::Own<ForkServer> ForkServer::start() {
  KJ_REQUIRE(currentServer == nullptr, "a forkserver already runs for this process");
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
  pid_t rootPid = getpid();
  fflush(nullptr);
  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    close(fds[0]);
    serve(fds[1], rootPid);
  }
  close(fds[1]);
  auto server = kj::heap<ForkServer>(pid, fds[0]);
  currentServer = server.get();
  return server;
}

ForkServer::~ForkServer() noexcept(false) {
  currentServer = nullptr;
  close(control);
  while (waitpid(serverPid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

kj::Maybe<ForkServer&> ForkServer::current() {
  if (currentServer == nullptr) return nullptr;
  return *currentServer;
}

pid_t ForkServer::spawn(kj::StringPtr actorName, int childSocket) {
  KJ_REQUIRE(actorName.size() < 127, "actor name too long for the forkserver", actorName);
  FdMessage request(const_cast<char*>(actorName.begin()), actorName.size());
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&request.msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &childSocket, sizeof(int));
  auto gone = [&]() {
    return kj::str("the forkserver (pid ", serverPid, ") is gone: cannot spawn actor '",
                   actorName, "'");
  };
  KJ_SYSCALL_HANDLE_ERRORS(sendmsg(control, &request.msg, MSG_NOSIGNAL)) {
    case EPIPE:
    case ECONNRESET:
      KJ_FAIL_REQUIRE(gone());
    default:
      KJ_FAIL_SYSCALL("sendmsg to the forkserver", error, actorName);
  }
  int32_t reply;
  ssize_t n;
  KJ_SYSCALL_HANDLE_ERRORS(n = read(control, &reply, sizeof(reply))) {
    case ECONNRESET:
      n = 0;
      break;
    default:
      KJ_FAIL_SYSCALL("read from the forkserver", error, actorName);
  }
  KJ_REQUIRE(n == sizeof(reply), gone());
  if (reply < 0) KJ_FAIL_SYSCALL("forkserver fork", -reply, actorName);
  return reply;
}

SpawnedChild forkServerSpawn(ForkServer& server, kj::LowLevelAsyncIoProvider& lowLevel,
                             kj::UnixEventPort& eventPort, kj::StringPtr actorName) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  kj::AutoCloseFd parentEnd(fds[0]);
  kj::AutoCloseFd childEnd(fds[1]);
  pid_t pid = server.spawn(actorName, childEnd.get());
  childEnd = nullptr;
  SpawnedChild result;
  result.process = kj::heap<ChildProcess>(eventPort, pid);
  result.connection = lowLevel.wrapSocketFd(kj::mv(parentEnd),
                                            kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  return result;
}

}  // namespace tractor
