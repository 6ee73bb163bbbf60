// Death tests: scenarios that run in a fresh re-executed copy of the test binary, so that a test
// can check how a whole program ends (exit status, signal, what it left behind). doctest has none.
//
//     TRACTOR_SCENARIO(sigintTree) {   // runs as `main` of the fresh process
//       return tractor::main(argc, argv, ...);
//     }
//     ScenarioProcess p("sigintTree");
//     p.readLine();                     // synchronise on the scenario's own output
//     p.signal(SIGINT);
//     CHECK(exitCode(p.wait()) == 130);

#pragma once

#include <kj/string.h>
#include <sys/types.h>

namespace tractor {
namespace test {

using Scenario = int (*)(int argc, char** argv);

class ScenarioRegistration {
  // A static object registering one scenario by name (see TRACTOR_SCENARIO).
public:
  ScenarioRegistration(const char* name, Scenario scenario);
};

kj::Maybe<int> runRequestedScenario(int argc, char** argv);
// In the test binary's main: when this process was started as a scenario, runs it and returns
// its exit code; null otherwise.

class ScenarioProcess {
  // One scenario running in its own process, its standard output piped to us. The destructor
  // kills and reaps it if the test did not wait for it.
public:
  explicit ScenarioProcess(kj::StringPtr name);
  ~ScenarioProcess() noexcept(false);
  KJ_DISALLOW_COPY(ScenarioProcess);

  pid_t pid() const { return pid_; }

  kj::String readLine();
  // The next line the scenario printed (without the newline); raises at end of output.

  void signal(int signo);

  int wait();
  // Waits for the process to end; returns its wait status.

private:
  pid_t pid_;
  int out;
  kj::String pending;
  bool reaped = false;
};

kj::String describeStatus(int status);
// "exit 0", "exit 130", "signal 9".

}  // namespace test
}  // namespace tractor

#define TRACTOR_SCENARIO(name)                                                            \
  static int name##Scenario(int argc, char** argv);                                       \
  static const ::tractor::test::ScenarioRegistration name##Registration(#name,            \
                                                                        &name##Scenario); \
  static int name##Scenario(int argc, char** argv)
