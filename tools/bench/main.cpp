// fieldsync-bench: benchmarks of the device store and the sync path. One
// subcommand per benchmark; each is registered here.
#include "bench.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fieldsync-bench: benchmarks (last output line: one JSON object)"};
  app.require_subcommand(1);
  fieldsync::bench::register_local(app);
  try {
    app.parse(argc, argv);  // runs the chosen benchmark
  } catch (const CLI::Error& e) {
    return app.exit(e);
  }
  return 0;
}
