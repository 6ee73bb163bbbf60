// The leak audit. See leak-audit.h.

#include "tests/support/leak-audit.h"

#include <dirent.h>
#include <doctest/doctest.h>
#include <kj/debug.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tractor {
namespace test {

namespace {

struct ProcInfo {
  pid_t pid;
  pid_t ppid;
  char state;
  kj::String comm;
};

kj::Maybe<ProcInfo> readStat(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (f == nullptr) return nullptr;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  // "pid (comm) S ppid ..." -- comm may contain spaces and parentheses: use the last ')'.
  char* open = strchr(buf, '(');
  char* close = strrchr(buf, ')');
  if (open == nullptr || close == nullptr || close[1] == '\0') return nullptr;
  ProcInfo info;
  info.pid = pid;
  info.comm = kj::heapString(open + 1, close - open - 1);
  info.state = close[2];
  info.ppid = static_cast<pid_t>(atol(close + 4));
  return kj::mv(info);
}

kj::Array<kj::String> listDir(kj::StringPtr path) {
  kj::Vector<kj::String> names;
  DIR* dir = opendir(path.cStr());
  if (dir == nullptr) return names.releaseAsArray();
  while (struct dirent* entry = readdir(dir)) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    names.add(kj::str(entry->d_name));
  }
  closedir(dir);
  return names.releaseAsArray();
}

kj::Vector<ProcInfo> children() {
  // Every process whose parent is this one, found by scanning /proc: deliberately not the
  // runtime's own child listing (spawn/reaper.cpp reads /proc/self/task/<tid>/children), so
  // that the audit does not trust the code it audits.
  kj::Vector<ProcInfo> result;
  pid_t self = getpid();
  for (auto& name: listDir("/proc")) {
    char* end;
    long pid = strtol(name.cStr(), &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    KJ_IF_MAYBE(info, readStat(static_cast<pid_t>(pid))) {
      if (info->ppid == self) result.add(kj::mv(*info));
    }
  }
  return result;
}

}  // namespace

kj::Array<kj::String> findLeakedProcesses() {
  return KJ_MAP(p, children()) {
    return kj::str("pid ", p.pid, " (", p.comm, ") ", p.state == 'Z' ? "zombie" : "alive",
                   " state ", p.state);
  };
}

void killAndReapLeaks() {
  for (auto& p: children()) {
    kill(p.pid, SIGKILL);
    waitpid(p.pid, nullptr, 0);
  }
}

kj::String runtimeSocketDir() {
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] != '\0') return kj::str(xdg, "/tractor");
  return kj::str("/tmp/tractor-", getuid());
}

LeakAudit::LeakAudit(): socketsBefore(listDir(runtimeSocketDir())) {}

LeakAudit::~LeakAudit() noexcept(false) {
  if (!checked) check();
}

kj::Array<kj::String> LeakAudit::findLeaks() {
  kj::Vector<kj::String> leaks;
  for (auto& p: findLeakedProcesses()) leaks.add(kj::str("process left behind: ", p));
  for (auto& name: listDir(runtimeSocketDir())) {
    bool known = false;
    for (auto& before: socketsBefore) known = known || before == name;
    if (!known) leaks.add(kj::str("socket file left behind: ", runtimeSocketDir(), '/', name));
  }
  return leaks.releaseAsArray();
}

void LeakAudit::check() {
  checked = true;
  auto leaks = findLeaks();
  for (auto& leak: leaks) {
    FAIL_CHECK(doctest::String(leak.cStr()));
  }
  killAndReapLeaks();
}

}  // namespace test
}  // namespace tractor
