// Every sample runs and prints what it should, and leaves nothing behind.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fstream>
#include <regex>
#include <string>
#include <vector>
#include "tests/leak-audit.h"

namespace {

struct Run {
  int status;
  std::string out;
};

Run runProgram(const std::string& path) {
  int pipeFds[2];
  KJ_SYSCALL(pipe2(pipeFds, O_CLOEXEC));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
  char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
  pid_t pid;
  int error = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  KJ_REQUIRE(error == 0, "cannot run sample", path, strerror(error));
  Run run;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipeFds[0], buf, sizeof(buf))) > 0) run.out.append(buf, n);
  close(pipeFds[0]);
  KJ_SYSCALL(waitpid(pid, &run.status, 0));
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

void checkSample(const std::string& name) {
  tractor::test::LeakAudit audit;
  auto run = runProgram(std::string(TRACTOR_SAMPLES_DIR) + "/" + name);
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
  // The sample's orphans, if any, were re-parented to this (subreaper) process.
  audit.check();
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
  TEST_CASE("sample fan_out broadcasts one stream to three local consumers") {
    checkSample("fan_out");
  }
}
