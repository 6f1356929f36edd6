# Binding tests: the C ABI driven from C99, its export list, and the Java API
# through JNI - the C and Java ones against a real fieldsync-server started by
# fieldsync_with_server. Included by tests/CMakeLists.txt.
if(NOT TARGET fieldsync_c)
  message(STATUS "fieldsync: bindings are off (FIELDSYNC_BINDINGS): no binding tests")
  return()
endif()

set(_bindings_dir ${CMAKE_CURRENT_LIST_DIR})
set(_bindings_form ${_bindings_dir}/bindings-form.json)

# The C test: strict C99, warnings as errors whatever FIELDSYNC_WERROR says.
add_executable(fieldsync_c_api_test ${_bindings_dir}/c_api_test.c)
target_link_libraries(fieldsync_c_api_test PRIVATE fieldsync_c Threads::Threads)
set_target_properties(fieldsync_c_api_test PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
  C_EXTENSIONS OFF)
target_compile_options(fieldsync_c_api_test PRIVATE -Wall -Wextra -Wpedantic -Werror)

# The launcher runs a test program with a real server around it (POSIX only, like
# the ServerProcess fixture it uses). Cross builds use the one of a native build.
if(NOT CMAKE_CROSSCOMPILING)
  add_executable(fieldsync_with_server ${_bindings_dir}/with_server.cpp
    ${CMAKE_CURRENT_SOURCE_DIR}/support/server_process.cpp)
  target_include_directories(fieldsync_with_server PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(fieldsync_with_server PRIVATE fieldsync::protocol fieldsync_warnings)
  target_compile_definitions(fieldsync_with_server PRIVATE
    FIELDSYNC_BINARY_DIR="${PROJECT_BINARY_DIR}")
endif()

# Only the C ABI leaves the shared libraries (ELF builds, where nm reads them; in
# cross builds the toolchain's nm runs on the host).
# Every function the header declares is exported, and nothing else.
if(CMAKE_NM AND NOT APPLE AND NOT WIN32)
  file(STRINGS ${PROJECT_SOURCE_DIR}/mobile-bindings/include/fieldsync.h _c_api_decls
    REGEX "^FIELDSYNC_API ")
  list(LENGTH _c_api_decls _c_api_count)
  add_test(NAME "bindings: libfieldsync exports exactly the ${_c_api_count} functions of fieldsync.h"
    COMMAND bash ${_bindings_dir}/check_exports.sh ${CMAKE_NM} $<TARGET_FILE:fieldsync_c>
            "^fieldsync_" ${_c_api_count})
  set_tests_properties("bindings: libfieldsync exports exactly the ${_c_api_count} functions of fieldsync.h"
    PROPERTIES LABELS bindings)
  if(TARGET fieldsync_jni)
    add_test(NAME "bindings: libfieldsync_jni exports only JNI_OnLoad"
      COMMAND bash ${_bindings_dir}/check_exports.sh ${CMAKE_NM} $<TARGET_FILE:fieldsync_jni>
              "^JNI_OnLoad$" 1)
    set_tests_properties("bindings: libfieldsync_jni exports only JNI_OnLoad"
      PROPERTIES LABELS bindings)
  endif()
endif()

set(_c_test_name
  "bindings: C ABI against a real server (offline save, sync, conflict, review, rejected, hook, cancel)")

# Cross builds: the C test runs under the emulator against a server running
# natively on the host's loopback, from a native build of this tree.
set(FIELDSYNC_HOST_BUILD_DIR "" CACHE PATH
  "Cross builds: a native build directory with fieldsync-server and fieldsync_with_server built")
if(CMAKE_CROSSCOMPILING)
  if(FIELDSYNC_HOST_BUILD_DIR)
    add_test(NAME "${_c_test_name}"
      COMMAND ${FIELDSYNC_HOST_BUILD_DIR}/tests/fieldsync_with_server ${_bindings_form} --
              ${CMAKE_CROSSCOMPILING_EMULATOR} $<TARGET_FILE:fieldsync_c_api_test>)
    set_tests_properties("${_c_test_name}" PROPERTIES
      ENVIRONMENT "FIELDSYNC_BINARY_DIR=${FIELDSYNC_HOST_BUILD_DIR}" TIMEOUT 600 LABELS bindings)
  else()
    message(STATUS "fieldsync: cross build without FIELDSYNC_HOST_BUILD_DIR - the C ABI test "
                   "is not registered (scripts/arm64-test.sh sets it)")
  endif()
  return()
endif()
if(NOT FIELDSYNC_SERVER)
  message(STATUS "fieldsync: FIELDSYNC_SERVER is OFF - the binding tests against a real "
                 "server are not registered")
  return()
endif()

set(_bindings_env "FIELDSYNC_BINARY_DIR=${PROJECT_BINARY_DIR}")
add_test(NAME "${_c_test_name}"
  COMMAND fieldsync_with_server ${_bindings_form} -- $<TARGET_FILE:fieldsync_c_api_test>)
set_tests_properties("${_c_test_name}"
  PROPERTIES ENVIRONMENT "${_bindings_env}" TIMEOUT 300 LABELS bindings)

# Java: compile the API and the test with the JDK, then run the test against the
# JNI library and a real server.
if(NOT TARGET fieldsync_jni)
  message(STATUS "fieldsync: SKIPPING the Java binding test: no JNI headers (see the warning above)")
  return()
endif()
find_package(Java 17 COMPONENTS Development Runtime)
if(NOT Java_FOUND)
  message(STATUS "fieldsync: SKIPPING the Java binding test: no JDK 17 (javac, java) found")
  return()
endif()

file(GLOB _java_api CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/mobile-bindings/android/src/main/java/id/fieldsync/*.java)
set(_java_classes ${CMAKE_CURRENT_BINARY_DIR}/bindings-java-classes)
add_test(NAME "bindings: javac compiles the Java API and its test (-Werror)"
  COMMAND ${Java_JAVAC_EXECUTABLE} -Xlint:all -Werror -encoding UTF-8 -d ${_java_classes}
          ${_java_api} ${_bindings_dir}/java/StoreTest.java)
set_tests_properties("bindings: javac compiles the Java API and its test (-Werror)"
  PROPERTIES FIXTURES_SETUP fieldsync_java_classes TIMEOUT 300 LABELS bindings)

set(_java_env ${_bindings_env})
if(FIELDSYNC_SANITIZE)
  # The JVM is not instrumented: the ASan runtime must be loaded first (with
  # libstdc++, so that ASan finds the real __cxa_throw at start-up), and the
  # JVM's own SIGSEGV use and never-freed memory must not count as errors.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE _libasan OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so
    OUTPUT_VARIABLE _libstdcxx OUTPUT_STRIP_TRAILING_WHITESPACE)
  file(REAL_PATH "${_libstdcxx}" _libstdcxx)
  list(APPEND _java_env "LD_PRELOAD=${_libasan}:${_libstdcxx}"
    "ASAN_OPTIONS=detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:use_sigaltstack=0")
endif()
add_test(NAME "bindings: Java API through JNI against a real server"
  COMMAND fieldsync_with_server ${_bindings_form} --
          ${Java_JAVA_EXECUTABLE} -Xcheck:jni -ea
          -Djava.library.path=$<TARGET_FILE_DIR:fieldsync_jni>
          -cp ${_java_classes} id.fieldsync.tests.StoreTest)
set_tests_properties("bindings: Java API through JNI against a real server"
  PROPERTIES FIXTURES_REQUIRED fieldsync_java_classes ENVIRONMENT "${_java_env}"
  TIMEOUT 300 LABELS bindings
  # -Xcheck:jni reports JNI misuse as warnings; here they fail the test.
  FAIL_REGULAR_EXPRESSION "WARNING in native method|FATAL ERROR in native method")
