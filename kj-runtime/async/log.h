// Logging: every line names the actor it comes from (`name@pid`).
//
// Levels, most to least severe: error, warning, info, runtime, debug, trace. The level is set
// tree-wide by `TRACTOR_LOGLEVEL` (read in the root, handed to every child in its spawn spec) or
// per actor by `ActorOptions::logLevel`. KJ's own `KJ_LOG` lines go through the same sink, so
// they are prefixed with the actor's name too.
//
//     TRACTOR_LOG(INFO, "spawned", child.id.toString());

#pragma once

#include <kj/async.h>
#include <kj/string.h>
#include <kj/exception.h>

namespace tractor {

enum class LogLevel { ERROR, WARNING, INFO, RUNTIME, DEBUG, TRACE };

kj::Maybe<LogLevel> parseLogLevel(kj::StringPtr name);
// Case-insensitive; null for an unknown name.
kj::StringPtr logLevelName(LogLevel level);

void setLogLevel(LogLevel level);
LogLevel logLevel();
bool logEnabled(LogLevel level);

void setLogActor(kj::StringPtr nameAtPid);
// The `name@pid` every line of this process carries.

void logLine(LogLevel level, const char* file, int line, kj::StringPtr text);

class LogSink final: public kj::ExceptionCallback {
  // Routes KJ's own log messages through `logLine`, so `KJ_LOG` output names the actor too.
  // Install one per thread that runs an actor (the runtime does this).
public:
  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override;
};

class TaskErrorLog final: public kj::TaskSet::ErrorHandler {
  // The error handler of a kj::TaskSet whose tasks may fail without harm (fire-and-forget
  // messages, connections that never said hello): each failure is logged at `debug`, as
  // "<what>: <description>". `what` must outlive the handler (a string literal).
public:
  explicit TaskErrorLog(kj::StringPtr what): what(what) {}
  void taskFailed(kj::Exception&& e) override;

private:
  kj::StringPtr what;
};

}  // namespace tractor

#define TRACTOR_LOG(level, ...)                                                            \
  do {                                                                                     \
    if (::tractor::logEnabled(::tractor::LogLevel::level)) {                               \
      ::tractor::logLine(::tractor::LogLevel::level, __FILE__, __LINE__,                   \
                         ::kj::str(__VA_ARGS__));                                          \
    }                                                                                      \
  } while (false)
