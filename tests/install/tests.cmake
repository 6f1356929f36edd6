# Proves the installed package works for a separate project:
# cmake --install into a temp prefix, then find_package(fieldsync) from a
# consumer project that saves a record through fieldsync::core.
add_test(NAME "install: find_package(fieldsync) from a separate project"
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_install_test.sh
          ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_LIST_DIR}/consumer ${CMAKE_CXX_COMPILER})
set_tests_properties("install: find_package(fieldsync) from a separate project"
  PROPERTIES TIMEOUT 300 LABELS install)
