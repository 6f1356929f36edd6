// fieldsync-bench: benchmarks of the device store and the sync path. One
// subcommand per benchmark; each is registered here.
#include "bench.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fieldsync-bench: benchmarks (last output line: one JSON object)"};
  app.require_subcommand(1);
  fieldsync::bench::register_local(app);
#ifdef FIELDSYNC_HAVE_CHAOS
  fieldsync::bench::register_chaos(app);
#endif
#ifdef FIELDSYNC_BENCH_SYNC
  fieldsync::bench::register_sync(app);
#endif
  try {
    app.parse(argc, argv);  // runs the chosen benchmark
  } catch (const CLI::Error& e) {
    return app.exit(e);
  }
  return 0;
}
