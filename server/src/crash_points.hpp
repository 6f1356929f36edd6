// Crash points: a test hook that kills the server at a named point of a write,
// to prove that every point is safe (tests/e2e/crash_points_e2e_test.cpp).
//
// Compiled only when the build has FIELDSYNC_TEST_HOOKS (CMake option of the same
// name, on in scripts/test.sh). Then the environment variable
//   FIELDSYNC_CRASH_AT=<name>[:<nth>]
// read once, at the first point reached, makes the process die by SIGKILL the
// nth time (default 1) it reaches the point <name>: no destructor, no rollback, no
// response, exactly like a crash or `kill -9`. It prints one line on stderr first.
// Points (docs/faults.md): after_log_insert, mid_batch, before_commit,
// after_commit_before_response.
//
// In any other build FIELDSYNC_CRASH_POINT(name) is an empty statement: no code,
// no string, no reading of the environment (kCrashPointsCompiled says which).
#pragma once

#ifdef FIELDSYNC_TEST_HOOKS

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

namespace fieldsync::server::test_hooks {

inline constexpr bool kCrashPointsCompiled = true;
inline constexpr const char* kCrashEnv = "FIELDSYNC_CRASH_AT";

struct CrashSpec {
  std::string name;  // empty = no crash point armed
  long nth = 1;
};

// The armed point, parsed once (thread-safe static initialisation).
inline const CrashSpec& crash_spec() {
  static const CrashSpec spec = [] {
    CrashSpec s;
    const char* env = std::getenv(kCrashEnv);
    if (env == nullptr || *env == '\0') return s;
    std::string text = env;
    if (const auto colon = text.find(':'); colon != std::string::npos) {
      s.nth = std::strtol(text.c_str() + colon + 1, nullptr, 10);
      if (s.nth < 1) s.nth = 1;
      text.resize(colon);
    }
    s.name = text;
    return s;
  }();
  return spec;
}

inline void crash_point(const char* name) {
  static std::atomic<long> seen{0};  // times the armed point was reached
  const CrashSpec& spec = crash_spec();
  if (spec.name.empty() || spec.name != name) return;
  if (seen.fetch_add(1) + 1 != spec.nth) return;
  char line[160];
  const int n = std::snprintf(line, sizeof line,
                              "fieldsync-server: crash point %s reached (%s): killing myself\n",
                              name, kCrashEnv);
  if (n > 0) (void)!::write(2, line, static_cast<std::size_t>(n));
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

}  // namespace fieldsync::server::test_hooks

#define FIELDSYNC_CRASH_POINT(name) ::fieldsync::server::test_hooks::crash_point(name)

#else

namespace fieldsync::server::test_hooks {
inline constexpr bool kCrashPointsCompiled = false;
}  // namespace fieldsync::server::test_hooks

#define FIELDSYNC_CRASH_POINT(name) static_cast<void>(0)

#endif
