// Child processes through pidfds. See process.h.

#include "tractor/spawn/process.h"

#include <errno.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace tractor {

namespace {

int openPidfd(pid_t pid) {
  int fd;
  // pidfds are always close-on-exec.
  KJ_SYSCALL(fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0)), pid);
  return fd;
}

int waitStatusOf(const siginfo_t& info) {
  // Rebuilds the classic wait status from waitid's siginfo.
  switch (info.si_code) {
    case CLD_EXITED: return (info.si_status & 0xff) << 8;
    case CLD_KILLED: return info.si_status & 0x7f;
    case CLD_DUMPED: return (info.si_status & 0x7f) | 0x80;
    default: return 0;
  }
}

kj::Vector<ChildProcess*>& registry() {
  // Every ChildProcess alive in this process (a process runs one actor, on one thread).
  static kj::Vector<ChildProcess*> instance;
  return instance;
}

}  // namespace

ChildProcess::ChildProcess(kj::UnixEventPort& eventPort, pid_t pid)
    : pid_(pid), pidfd(openPidfd(pid)),
      observer(eventPort, pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {
  registry().add(this);
}

ChildProcess::~ChildProcess() noexcept(false) {
  auto& all = registry();
  for (auto i: kj::indices(all)) {
    if (all[i] == this) {
      all[i] = all.back();
      all.removeLast();
      break;
    }
  }
  if (status == nullptr) {
    KJ_LOG(WARNING, "child still running at its owner's teardown: killing it", pid_);
    syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    auto idtype = static_cast<idtype_t>(P_PIDFD);
    while (waitid(idtype, pidfd.get(), &info, WEXITED) < 0 && errno == EINTR) {
    }
    reaped(waitStatusOf(info));
  }
}

void ChildProcess::removeAfterExit(kj::String path) {
  if (status != nullptr) {
    unlink(path.cStr());
  } else {
    socketPath = kj::mv(path);
  }
}

void ChildProcess::reaped(int waitStatus) {
  status = waitStatus;
  KJ_IF_MAYBE(path, socketPath) {
    unlink(path->cStr());
    socketPath = nullptr;
  }
}

bool ChildProcess::tryReap() {
  if (status != nullptr) return true;
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  int r;
  KJ_SYSCALL(r = waitid(static_cast<idtype_t>(P_PIDFD), pidfd.get(), &info, WEXITED | WNOHANG),
             pid_);
  if (info.si_pid == 0) return false;
  reaped(waitStatusOf(info));
  return true;
}

kj::Promise<void> ChildProcess::onExit() {
  KJ_IF_MAYBE(e, exited) {
    return e->addBranch();
  }
  auto loop = kj::evalNow([this]() -> kj::Promise<void> {
    if (tryReap()) return kj::READY_NOW;
    // The pidfd becomes readable when the child exits.
    return observer.whenBecomesReadable().then([this]() {
      KJ_ASSERT(tryReap(), "pidfd readable but the child is not reapable", pid_);
    });
  });
  auto& fork = exited.emplace(loop.fork());
  return fork.addBranch();
}

void ChildProcess::signalAll(int signo) {
  for (auto child: registry()) child->signal(signo);
}

kj::Promise<void> ChildProcess::allExited() {
  auto exits = KJ_MAP(child, registry()) { return child->onExit(); };
  return kj::joinPromises(kj::mv(exits));
}

bool ChildProcess::owns(pid_t pid) {
  for (auto child: registry()) {
    // Once reaped, the pid is no longer ours: it may already belong to someone else.
    if (child->pid_ == pid && child->status == nullptr) return true;
  }
  return false;
}

size_t ChildProcess::liveCount() {
  size_t n = 0;
  for (auto child: registry()) n += child->hasExited() ? 0 : 1;
  return n;
}

kj::String ChildProcess::describeExit() const {
  KJ_IF_MAYBE(s, status) {
    if (WIFEXITED(*s)) return kj::str("exited with status ", WEXITSTATUS(*s));
    if (WIFSIGNALED(*s)) {
      return kj::str("killed by signal ", WTERMSIG(*s), " (", strsignal(WTERMSIG(*s)), ")");
    }
    return kj::str("ended with wait status ", *s);
  }
  return kj::str("still running");
}

void ChildProcess::signal(int signo) {
  if (status != nullptr) return;
  if (syscall(SYS_pidfd_send_signal, pidfd.get(), signo, nullptr, 0) < 0 && errno != ESRCH) {
    KJ_FAIL_SYSCALL("pidfd_send_signal", errno, pid_, signo);
  }
}

}  // namespace tractor
