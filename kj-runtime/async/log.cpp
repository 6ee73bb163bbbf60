// Logging. See log.h.

#include "tractor/kj-runtime/async/log.h"

#include <kj/debug.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

namespace tractor {

namespace {

struct LogState {
  LogLevel level = LogLevel::WARNING;
  char actor[96] = "";
};
LogState state;

const char* baseName(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

}  // namespace

kj::Maybe<LogLevel> parseLogLevel(kj::StringPtr name) {
  static const LogLevel ALL[] = {LogLevel::ERROR, LogLevel::WARNING, LogLevel::INFO,
                                 LogLevel::RUNTIME, LogLevel::DEBUG, LogLevel::TRACE};
  for (auto level: ALL) {
    if (strcasecmp(name.cStr(), logLevelName(level).cStr()) == 0) return level;
  }
  return nullptr;
}

kj::StringPtr logLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::ERROR: return "error";
    case LogLevel::WARNING: return "warning";
    case LogLevel::INFO: return "info";
    case LogLevel::RUNTIME: return "runtime";
    case LogLevel::DEBUG: return "debug";
    case LogLevel::TRACE: return "trace";
  }
  KJ_UNREACHABLE;
}

void setLogLevel(LogLevel level) {
  state.level = level;
  // KJ's own DBG/INFO lines follow ours.
  kj::_::Debug::setLogLevel(level >= LogLevel::DEBUG ? kj::LogSeverity::DBG
                            : level >= LogLevel::INFO ? kj::LogSeverity::INFO
                                                      : kj::LogSeverity::WARNING);
}

LogLevel logLevel() { return state.level; }

bool logEnabled(LogLevel level) { return level <= state.level; }

void setLogActor(kj::StringPtr nameAtPid) {
  snprintf(state.actor, sizeof(state.actor), "%s", nameAtPid.cStr());
}

void logLine(LogLevel level, const char* file, int line, kj::StringPtr text) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  char when[48];
  size_t len = strftime(when, sizeof(when), "%H:%M:%S", &tm);
  snprintf(when + len, sizeof(when) - len, ".%03ld", ts.tv_nsec / 1000000);
  const char* actor = state.actor[0] == '\0' ? "?" : state.actor;
  auto out = kj::str(when, " [", logLevelName(level), "] ", actor, " ", baseName(file), ':', line,
                     ": ", text, '\n');
  // One write per line, so lines from several actors on one terminal do not interleave.
  auto bytes = out.asBytes();
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(STDERR_FILENO, bytes.begin() + done, bytes.size() - done);
    if (n <= 0) break;
    done += n;
  }
}

void TaskErrorLog::taskFailed(kj::Exception&& e) {
  TRACTOR_LOG(DEBUG, what, ": ", e.getDescription());
}

void LogSink::logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                         kj::String&& text) {
  (void)contextDepth;
  LogLevel level;
  switch (severity) {
    case kj::LogSeverity::INFO: level = LogLevel::INFO; break;
    case kj::LogSeverity::WARNING: level = LogLevel::WARNING; break;
    case kj::LogSeverity::ERROR: level = LogLevel::ERROR; break;
    case kj::LogSeverity::FATAL: level = LogLevel::ERROR; break;
    case kj::LogSeverity::DBG: level = LogLevel::DEBUG; break;
    default: level = LogLevel::INFO; break;
  }
  if (level == LogLevel::INFO && strstr(file, "capnp/") != nullptr) {
    // Cap'n Proto's own notes on its connections ("returning failure over rpc" as each one is
    // torn down, ...) are the runtime's business, not the user's: shown from `debug` on.
    level = LogLevel::DEBUG;
  }
  if (!logEnabled(level)) return;
  // KJ ends its text with a newline; ours adds one.
  size_t size = text.size();
  while (size > 0 && text[size - 1] == '\n') size--;
  logLine(level, file, line, kj::heapString(text.slice(0, size)));
}

}  // namespace tractor
