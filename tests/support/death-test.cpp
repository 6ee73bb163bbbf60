// Death tests. See death-test.h.

#include "tests/support/death-test.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tractor {
namespace test {

namespace {

constexpr const char* SCENARIO_ENV = "TRACTOR_TEST_SCENARIO";

kj::HashMap<kj::String, Scenario>& scenarios() {
  static kj::HashMap<kj::String, Scenario> instance;
  return instance;
}

}  // namespace

ScenarioRegistration::ScenarioRegistration(const char* name, Scenario scenario) {
  scenarios().insert(kj::str(name), scenario);
}

kj::Maybe<int> runRequestedScenario(int argc, char** argv) {
  const char* name = getenv(SCENARIO_ENV);
  if (name == nullptr) return nullptr;
  auto key = kj::str(name);
  unsetenv(SCENARIO_ENV);
  KJ_IF_MAYBE(scenario, scenarios().find(key)) {
    return (*scenario)(argc, argv);
  }
  KJ_FAIL_REQUIRE("unknown scenario", key);
}

ScenarioProcess::ScenarioProcess(kj::StringPtr name) {
  KJ_REQUIRE(scenarios().find(name) != nullptr, "unknown scenario", name);
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  auto var = kj::str(SCENARIO_ENV, '=', name);
  kj::Vector<char*> env;
  for (char** e = environ; *e != nullptr; e++) env.add(*e);
  env.add(var.begin());
  env.add(nullptr);
  char arg0[] = "tractor-scenario";
  char* argv[] = {arg0, nullptr};
  int error = posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv, env.begin());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  out = fds[0];
  if (error != 0) {
    close(out);
    KJ_FAIL_SYSCALL("posix_spawn", error, name);
  }
}

ScenarioProcess::~ScenarioProcess() noexcept(false) {
  if (!reaped) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close(out);
}

kj::String ScenarioProcess::readLine() {
  for (;;) {
    KJ_IF_MAYBE(nl, pending.findFirst('\n')) {
      auto line = kj::heapString(pending.slice(0, *nl));
      pending = kj::heapString(pending.slice(*nl + 1));
      return line;
    }
    char buf[512];
    ssize_t n;
    KJ_SYSCALL(n = read(out, buf, sizeof(buf)));
    KJ_REQUIRE(n > 0, "the scenario ended its output", pending);
    pending = kj::str(pending, kj::arrayPtr(buf, n));
  }
}

void ScenarioProcess::signal(int signo) {
  KJ_REQUIRE(!reaped, "the scenario was already reaped");
  KJ_SYSCALL(kill(pid_, signo));
}

int ScenarioProcess::wait() {
  int status;
  KJ_SYSCALL(waitpid(pid_, &status, 0));
  reaped = true;
  return status;
}

kj::String describeStatus(int status) {
  if (WIFEXITED(status)) return kj::str("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return kj::str("signal ", WTERMSIG(status));
  return kj::str("status ", status);
}

}  // namespace test
}  // namespace tractor
