# Tests of tools/faultproxy: the pure fault plan and shaping model, and the real
# fieldsync-faultproxy binary in front of a test server (tests/faultproxy/).
if(TARGET fieldsync-faultproxy)
  fieldsync_add_test_dir(fieldsync_faultproxy_tests faultproxy fieldsync_faultproxy_lib)
  target_compile_definitions(fieldsync_faultproxy_tests PRIVATE
    FIELDSYNC_FAULTPROXY_BIN="$<TARGET_FILE:fieldsync-faultproxy>")
  add_dependencies(fieldsync_faultproxy_tests fieldsync-faultproxy)
endif()
