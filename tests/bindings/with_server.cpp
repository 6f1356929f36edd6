// Test launcher for the binding tests (C and Java): starts the REAL fieldsync-server
// through the ServerProcess fixture, publishes the test form, creates two officers,
// runs the given program with the connection details in its environment, then stops
// the server. Exit code: the program's (1 when the server could not be started).
//
// Usage: fieldsync_with_server <form.json> -- <program> [args...]
// Environment given to the program: FIELDSYNC_TEST_SERVER_URL, FIELDSYNC_TEST_DIR
// (an empty scratch directory), FIELDSYNC_TEST_FORM_JSON, FIELDSYNC_TEST_USER_A,
// FIELDSYNC_TEST_PASSWORD_A, FIELDSYNC_TEST_USER_B, FIELDSYNC_TEST_PASSWORD_B (both
// officers of scope 14.03.01).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>

#include "support/server_process.hpp"

extern char** environ;

namespace {

int run_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (int err = ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ); err != 0) {
    std::cerr << "with_server: cannot start " << args[0] << ": " << std::strerror(err) << "\n";
    return 1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fieldsync::testing;
  if (argc < 4 || std::string(argv[2]) != "--") {
    std::cerr << "usage: fieldsync_with_server <form.json> -- <program> [args...]\n";
    return 2;
  }
  const std::string form_path = argv[1];
  std::ifstream form_file(form_path);
  std::stringstream form_text;
  form_text << form_file.rdbuf();
  if (!form_file || form_text.str().empty()) {
    std::cerr << "with_server: cannot read " << form_path << "\n";
    return 2;
  }

  ServerOptions options;
  options.users = {{"officer.a", "officer", {"14.03.01"}, {}},
                   {"officer.b", "officer", {"14.03.01"}, {}}};
  options.forms = {form_path};
  ServerProcess server(options);
  if (auto started = server.start(); !started) {
    std::cerr << "with_server: the server did not start: " << started.error().to_string() << "\n"
              << server.log() << "\n";
    return 1;
  }
  TempDir scratch("fieldsync-bindings");
  ::setenv("FIELDSYNC_TEST_SERVER_URL", server.base_url().c_str(), 1);
  ::setenv("FIELDSYNC_TEST_DIR", scratch.path().c_str(), 1);
  ::setenv("FIELDSYNC_TEST_FORM_JSON", form_text.str().c_str(), 1);
  ::setenv("FIELDSYNC_TEST_USER_A", "officer.a", 1);
  ::setenv("FIELDSYNC_TEST_PASSWORD_A", server.password("officer.a").c_str(), 1);
  ::setenv("FIELDSYNC_TEST_USER_B", "officer.b", 1);
  ::setenv("FIELDSYNC_TEST_PASSWORD_B", server.password("officer.b").c_str(), 1);

  const int code = run_child(std::vector<std::string>(argv + 3, argv + argc));
  if (code != 0) {
    std::cerr << "with_server: the test exited with " << code << "; server log:\n"
              << server.log() << "\n";
  }
  (void)server.stop();
  return code;
}
