// The root's orphan reaper. See reaper.h.

#include "tractor/spawn/reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tractor/kj-runtime/async/log.h"
#include "tractor/spawn/process.h"

namespace tractor {

namespace {

kj::Vector<pid_t> childrenOfThisProcess() {
  // /proc/<pid>/task/<tid>/children lists the children of one thread; the runtime's are all
  // children of the main thread.
  kj::Vector<pid_t> pids;
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%ld/children",
           static_cast<long>(syscall(SYS_gettid)));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pids;
  kj::Vector<char> text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) text.addAll(kj::arrayPtr(buf, n));
  close(fd);
  text.add('\0');
  char* p = text.begin();
  for (;;) {
    char* end;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    pids.add(static_cast<pid_t>(pid));
    p = end;
  }
  return pids;
}

}  // namespace

OrphanReaper::OrphanReaper(kj::UnixEventPort& eventPort)
    : eventPort(eventPort), task(nullptr) {
  KJ_SYSCALL(prctl(PR_SET_CHILD_SUBREAPER, 1));
  task = watch().eagerlyEvaluate([](kj::Exception&& e) {
    KJ_LOG(ERROR, "orphan reaper failed", e);
  });
}

OrphanReaper::~OrphanReaper() noexcept(false) { sweep(true); }

kj::Promise<void> OrphanReaper::watch() {
  return eventPort.onSignal(SIGCHLD).then([this](siginfo_t) {
    sweep();
    return watch();
  });
}

void OrphanReaper::started(pid_t pid, kj::StringPtr socketPath) {
  tree.upsert(pid, kj::str(socketPath), [](kj::String& old, kj::String&& path) {
    old = kj::mv(path);
  });
  // It may have been adopted (and even have died) before its report arrived.
  sweep();
}

void OrphanReaper::reaped(pid_t pid) { tree.erase(pid); }

void OrphanReaper::sweep(bool wait) {
  for (pid_t pid: childrenOfThisProcess()) {
    if (tree.find(pid) == nullptr || ChildProcess::owns(pid)) continue;
    int status;
    if (wait) kill(pid, SIGKILL);
    pid_t r;
    do {
      r = waitpid(pid, &status, wait ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) {
      TRACTOR_LOG(WARNING, "reaped orphaned actor process ", pid, " (its parent died first)");
      KJ_IF_MAYBE(path, tree.find(pid)) {
        if (path->size() > 0) unlink(path->cStr());
      }
      tree.erase(pid);
    } else if (r == 0) {
      // Adopted and still running: its subtree is gone, so it goes too (its exit brings the next
      // SIGCHLD, and the next sweep reaps it).
      TRACTOR_LOG(WARNING, "killing orphaned actor process ", pid, " (its parent died first)");
      kill(pid, SIGKILL);
    }
  }
}

}  // namespace tractor
