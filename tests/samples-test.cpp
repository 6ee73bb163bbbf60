// Every sample runs and prints what it should, and leaves nothing behind. The daemon sample is a
// pair of programs: `daemon` runs in the background while `client` runs against it twice.

#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <vector>
#include "tests/support/death-test.h"
#include "tests/support/leak-audit.h"

namespace {

struct Run {
  int status;
  std::string out;
};

struct Started {
  pid_t pid;
  int out;
  // The read end of the pipe the program's standard output goes to.
};

Started startProgram(const std::string& path, const std::vector<std::string>& args) {
  // Starts `path` with `args`, its standard output piped to us.
  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (auto& arg: args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int error = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  if (error != 0) close(pipeFds[0]);
  KJ_REQUIRE(error == 0, "cannot run sample", path, strerror(error));
  return {pid, pipeFds[0]};
}

Run runProgram(const std::string& path, const std::vector<std::string>& args = {}) {
  // Runs `path` with `args` to its end; returns its wait status and output.
  auto program = startProgram(path, args);
  Run run;
  char buf[4096];
  ssize_t n;
  while ((n = read(program.out, buf, sizeof(buf))) > 0) run.out.append(buf, n);
  close(program.out);
  KJ_SYSCALL(waitpid(program.pid, &run.status, 0));
  return run;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    result.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return result;
}

void checkOutput(const Run& run, const std::string& name) {
  // The program exited with 0 and its output matches samples/<name>.expect line by line.
  CHECK(WIFEXITED(run.status));
  CHECK(WEXITSTATUS(run.status) == 0);
  std::ifstream expectFile(std::string(TRACTOR_SOURCE_DIR) + "/samples/" + name + ".expect");
  std::vector<std::string> patterns;
  for (std::string line; std::getline(expectFile, line);) patterns.push_back(line);
  auto got = lines(run.out);
  INFO("output:\n" << run.out);
  REQUIRE(got.size() == patterns.size());
  for (size_t i = 0; i < got.size(); i++) {
    INFO("line " << i << ": " << got[i] << " against " << patterns[i]);
    CHECK(std::regex_search(got[i], std::regex(patterns[i])));
  }
}

void checkSample(const std::string& name) {
  tractor::test::LeakAudit audit;
  checkOutput(runProgram(std::string(TRACTOR_SAMPLES_DIR) + "/" + name), name);
  // The sample's orphans, if any, were re-parented to this (subreaper) process.
  audit.check();
}

constexpr auto LISTEN_DEADLINE = std::chrono::seconds(10);
// How long the daemon may take to listen at its registry address.
constexpr auto STOP_DEADLINE = std::chrono::seconds(10);
// How long it may take to end after SIGTERM.

bool answersAt(const std::string& path) {
  // Whether something accepts connections on the unix socket at `path`. (A connection that
  // closes before its handshake is dropped by the listener without further ado.)
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_REQUIRE(fd >= 0, "socket() failed", strerror(errno));
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(addr.sun_path), "socket path too long", path);
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool answered = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return answered;
}

class BackgroundProgram {
  // A program running while the test does other things, its standard output piped to us. The
  // destructor kills and reaps it if the test did not stop it, so a failed check leaves nothing.
public:
  BackgroundProgram(const std::string& path, const std::vector<std::string>& args)
      : program(startProgram(path, args)) {}
  ~BackgroundProgram() {
    if (!reaped) {
      kill(program.pid, SIGKILL);
      waitpid(program.pid, nullptr, 0);
    }
    close(program.out);
  }
  KJ_DISALLOW_COPY(BackgroundProgram);

  bool running() {
    // False once the program has ended (it is then reaped).
    if (reaped) return false;
    int status;
    pid_t done = waitpid(program.pid, &status, WNOHANG);
    if (done == 0) return true;
    reaped = true;
    endStatus = status;
    return false;
  }

  kj::Maybe<int> stop(int signo, std::chrono::milliseconds deadline) {
    // Sends `signo`, then collects the output until the program closed it and waits for its
    // end, for at most `deadline`; returns its wait status, or null if it did not end in time
    // (it is then killed).
    if (running()) {
      KJ_SYSCALL(kill(program.pid, signo));
    }
    auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      struct pollfd pfd = {program.out, POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      KJ_REQUIRE(ready >= 0, "poll() failed", strerror(errno));
      if (ready == 0) break;
      char buf[4096];
      ssize_t n = read(program.out, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, n);
    }
    while (running() && std::chrono::steady_clock::now() < until) usleep(1000);
    if (!reaped) return nullptr;
    return endStatus;
  }

  const std::string& output() const { return out; }
  // What the program printed (complete after `stop()`).

private:
  Started program;
  bool reaped = false;
  int endStatus = 0;
  std::string out;
};

bool waitUntilListening(const std::string& path, BackgroundProgram& program) {
  // Waits until something listens at the unix socket `path`; false if `program` ended first or
  // LISTEN_DEADLINE passed.
  auto until = std::chrono::steady_clock::now() + LISTEN_DEADLINE;
  while (std::chrono::steady_clock::now() < until) {
    if (answersAt(path)) return true;
    if (!program.running()) return false;
    usleep(5000);
  }
  return false;
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("sample single_func prints the pid of the actor that ran the function") {
    checkSample("single_func");
  }
  TEST_CASE("sample rpc_daemon serves calls and is cancelled") { checkSample("rpc_daemon"); }
  TEST_CASE("sample we_are_processes contains its zombies") { checkSample("we_are_processes"); }
  TEST_CASE("sample worker_pool computes primes in a pool of actors") {
    checkSample("worker_pool");
  }
  TEST_CASE("sample ping_pong streams both ways through a context") { checkSample("ping_pong"); }
  TEST_CASE("sample failing_jobs reports every job that failed in one error group") {
    checkSample("failing_jobs");
  }
  TEST_CASE("sample fan_out broadcasts one stream to three local consumers") {
    checkSample("fan_out");
  }
  TEST_CASE("sample typed_protocol runs a typed dialogue and a service of its own schema") {
    checkSample("typed_protocol");
  }

  TEST_CASE("sample daemon serves two separate client runs and ends on SIGTERM") {
    // The two-program sample: the daemon becomes the registrar at a fresh registry address (in
    // the runtime directory, where the leak audit looks for socket files left behind); the
    // client, a separate program, finds it there by name, twice; SIGTERM ends the daemon with
    // exit code 0.
    tractor::test::LeakAudit audit;
    std::string socketPath = std::string(tractor::test::runtimeSocketDir().cStr()) +
                             "/samples-test-registry-" + std::to_string(getpid()) + ".sock";
    std::string registry = "unix:" + socketPath;
    {
      BackgroundProgram daemon(std::string(TRACTOR_SAMPLES_DIR) + "/daemon", {registry});
      bool listening = waitUntilListening(socketPath, daemon);
      REQUIRE_MESSAGE(listening, "the daemon does not listen at " << registry);
      for (int i = 0; i < 2; i++) {
        INFO("client run " << i + 1);
        checkOutput(runProgram(std::string(TRACTOR_SAMPLES_DIR) + "/client", {registry}),
                    "client");
        CHECK(daemon.running());
      }
      auto status = daemon.stop(SIGTERM, STOP_DEADLINE);
      INFO("daemon output:\n" << daemon.output());
      KJ_IF_MAYBE(s, status) {
        CHECK(tractor::test::describeStatus(*s) == "exit 0");
      } else {
        FAIL_CHECK("the daemon did not end within 10 s of SIGTERM");
      }
      Run daemonRun{status.orDefault(-1), daemon.output()};
      checkOutput(daemonRun, "daemon");
    }
    CHECK_MESSAGE(access(socketPath.c_str(), F_OK) != 0, "left behind: " << socketPath);
    audit.check();
  }
}
