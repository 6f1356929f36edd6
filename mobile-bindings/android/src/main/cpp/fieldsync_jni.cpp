// JNI glue of the Android binding: the native methods of id.fieldsync.Store,
// SyncCancellation and FieldsyncException, written over the C ABI (fieldsync.h).
// Natives are bound with RegisterNatives in JNI_OnLoad, so a Java/C++ signature
// mismatch fails at load time, and the library exports only JNI_OnLoad.
#include <jni.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync.h"

namespace {

JavaVM* g_vm = nullptr;

// Classes and members looked up once at load (global refs: valid on any thread).
struct JavaRefs {
  jclass exception = nullptr;  // id.fieldsync.FieldsyncException
  jmethodID exception_ctor = nullptr;
  jclass sync_result = nullptr;
  jmethodID sync_result_ctor = nullptr;
  jmethodID on_progress = nullptr;  // SyncProgressListener.onProgress
  jclass store = nullptr;
  jmethodID invoke_handler = nullptr;  // Store.invokeHandler (static)
  jfieldID outcome_response = nullptr;
  jfieldID outcome_failure_code = nullptr;
  jfieldID outcome_failure_message = nullptr;
  jfieldID response_status = nullptr;
  jfieldID response_header_names = nullptr;
  jfieldID response_header_values = nullptr;
  jfieldID response_body = nullptr;
  jclass string = nullptr;
  jclass illegal_state = nullptr;
  jclass out_of_memory = nullptr;
};
JavaRefs g_refs;

// --- strings: Java's UTF-16 <-> the library's UTF-8 (not JNI's "modified UTF-8",
// which would mangle emoji and NUL) ---------------------------------------------

void append_utf8(std::string& out, std::uint32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// UTF-16 to UTF-8; unpaired surrogates become U+FFFD.
std::string utf16_to_utf8(const jchar* s, jsize n) {
  std::string out;
  out.reserve(static_cast<std::size_t>(n));
  for (jsize i = 0; i < n; ++i) {
    std::uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (static_cast<std::uint32_t>(s[i + 1]) - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    append_utf8(out, c);
  }
  return out;
}

// UTF-8 to UTF-16; malformed sequences become U+FFFD.
std::u16string utf8_to_utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::uint32_t c = 0xFFFD;
    std::size_t len = 1;
    std::size_t need = 0;
    std::uint32_t min = 0;
    if (b0 < 0x80) {
      c = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      need = 1, c = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      need = 2, c = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      need = 3, c = b0 & 0x07, min = 0x10000;
    }
    if (need > 0) {
      bool ok = true;
      for (std::size_t k = 1; ok && k <= need; ++k) {
        if (i + k >= s.size()) {
          ok = false;
          break;
        }
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) {
          ok = false;
          break;
        }
        c = (c << 6) | (b & 0x3F);
      }
      if (ok && c >= min && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF)) {
        len = need + 1;
      } else {
        c = 0xFFFD;
      }
    } else if (b0 >= 0x80) {
      c = 0xFFFD;
    }
    if (c >= 0x10000) {
      c -= 0x10000;
      out += static_cast<char16_t>(0xD800 + (c >> 10));
      out += static_cast<char16_t>(0xDC00 + (c & 0x3FF));
    } else {
      out += static_cast<char16_t>(c);
    }
    i += len;
  }
  return out;
}

// A Java string as UTF-8; nullopt for null. Throws std::bad_alloc when the JVM
// could not give the characters (its OutOfMemoryError is then pending).
std::optional<std::string> from_java(JNIEnv* env, jstring s) {
  if (s == nullptr) {
    return std::nullopt;
  }
  const jsize n = env->GetStringLength(s);
  const jchar* chars = env->GetStringChars(s, nullptr);
  if (chars == nullptr) {
    throw std::bad_alloc();
  }
  std::string out;
  try {
    out = utf16_to_utf8(chars, n);
  } catch (...) {
    env->ReleaseStringChars(s, chars);
    throw;
  }
  env->ReleaseStringChars(s, chars);
  return out;
}

jstring to_java(JNIEnv* env, std::string_view utf8) {
  const std::u16string utf16 = utf8_to_utf16(utf8);
  static_assert(sizeof(jchar) == sizeof(char16_t));
  return env->NewString(reinterpret_cast<const jchar*>(utf16.data()),
                        static_cast<jsize>(utf16.size()));
}

// A `char*` from the C ABI as a Java string, freed either way.
jstring take_string(JNIEnv* env, char* s) {
  if (s == nullptr) {
    return nullptr;
  }
  struct Free {
    void operator()(char* p) const { fieldsync_free(p); }
  };
  std::unique_ptr<char, Free> owned(s);
  return to_java(env, owned.get());
}

// --- errors ----------------------------------------------------------------------

void throw_error(JNIEnv* env, const fieldsync_error& error) {
  if (env->ExceptionCheck()) {
    return;
  }
  jstring field = to_java(env, error.field);
  jstring message = to_java(env, error.message);
  if (field == nullptr || message == nullptr) {
    return;  // OutOfMemoryError pending
  }
  auto* e = static_cast<jthrowable>(
      env->NewObject(g_refs.exception, g_refs.exception_ctor, error.code, field, message));
  if (e != nullptr) {
    env->Throw(e);
  }
}

void throw_closed(JNIEnv* env) {
  env->ThrowNew(g_refs.illegal_state, "the native handle is closed");
}

// Runs `body`, turning a C++ exception into a pending Java error: the one
// try/catch of the glue, so no exception unwinds into the JVM.
template <class R, class F>
R jni_guard(JNIEnv* env, R failed, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    if (!env->ExceptionCheck()) {
      env->ThrowNew(g_refs.out_of_memory, "fieldsync: out of memory");
    }
  } catch (const std::exception& e) {
    if (!env->ExceptionCheck()) {
      env->ThrowNew(g_refs.illegal_state, e.what());
    }
  } catch (...) {
    if (!env->ExceptionCheck()) {
      env->ThrowNew(g_refs.illegal_state, "fieldsync: unknown C++ exception");
    }
  }
  return failed;
}

// --- the store handle -------------------------------------------------------------

struct HandlerCtx {
  jobject handler = nullptr;  // global ref to the HttpHandler
};

struct JniStore {
  fieldsync_store* store = nullptr;
  std::mutex handler_mutex;  // serializes handler swaps
  HandlerCtx* handler = nullptr;
};

JniStore* as_store(JNIEnv* env, jlong handle) {
  auto* s = reinterpret_cast<JniStore*>(static_cast<std::intptr_t>(handle));
  if (s == nullptr) {
    throw_closed(env);
  }
  return s;
}

void delete_handler(JNIEnv* env, HandlerCtx* ctx) {
  if (ctx != nullptr) {
    env->DeleteGlobalRef(ctx->handler);
    delete ctx;
  }
}

JNIEnv* current_env() {
  JNIEnv* env = nullptr;
  if (g_vm == nullptr || g_vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) != JNI_OK) {
    return nullptr;
  }
  return env;
}

// Local references of one handler call, dropped when it returns.
class LocalFrame {
 public:
  LocalFrame(JNIEnv* env, jint capacity) : env_(env), ok_(env->PushLocalFrame(capacity) == 0) {}
  ~LocalFrame() {
    if (ok_) {
      env_->PopLocalFrame(nullptr);
    }
  }
  LocalFrame(const LocalFrame&) = delete;
  LocalFrame& operator=(const LocalFrame&) = delete;
  bool ok() const { return ok_; }

 private:
  JNIEnv* env_;
  bool ok_;
};

// Element i of a String[] as UTF-8 (nullopt for null), without keeping a local ref.
std::optional<std::string> string_at(JNIEnv* env, jobjectArray array, jsize i) {
  auto element = static_cast<jstring>(env->GetObjectArrayElement(array, i));
  auto text = from_java(env, element);
  env->DeleteLocalRef(element);
  return text;
}

// fieldsync_http_fn calling the Java HttpHandler on the syncing thread.
bool http_via_java(JNIEnv* env, const HandlerCtx& ctx, const fieldsync_http_request* request,
                   fieldsync_http_response* response, fieldsync_error* out_error) {
  const auto n = static_cast<jsize>(request->header_count);
  LocalFrame frame(env, 16 + 2 * n);
  if (!frame.ok()) {
    env->ExceptionClear();
    fieldsync_error_set(out_error, FIELDSYNC_ERR_INTERNAL, "JNI: no room for local references");
    return false;
  }
  jobjectArray names = env->NewObjectArray(n, g_refs.string, nullptr);
  jobjectArray values = env->NewObjectArray(n, g_refs.string, nullptr);
  jbyteArray body = env->NewByteArray(static_cast<jsize>(request->body_size));
  jstring method = to_java(env, request->method);
  jstring url = to_java(env, request->url);
  jstring target = to_java(env, request->target);
  if (names == nullptr || values == nullptr || body == nullptr || method == nullptr ||
      url == nullptr || target == nullptr) {
    env->ExceptionClear();
    fieldsync_error_set(out_error, FIELDSYNC_ERR_INTERNAL, "JNI: out of memory");
    return false;
  }
  for (jsize i = 0; i < n; ++i) {
    jstring name = to_java(env, request->header_names[i]);
    jstring value = to_java(env, request->header_values[i]);
    env->SetObjectArrayElement(names, i, name);
    env->SetObjectArrayElement(values, i, value);
    env->DeleteLocalRef(name);
    env->DeleteLocalRef(value);
  }
  if (request->body_size > 0) {
    env->SetByteArrayRegion(body, 0, static_cast<jsize>(request->body_size),
                            reinterpret_cast<const jbyte*>(request->body));
  }
  jobject outcome = env->CallStaticObjectMethod(g_refs.store, g_refs.invoke_handler, ctx.handler,
                                                method, url, target, names, values, body,
                                                static_cast<jlong>(request->timeout_ms));
  if (env->ExceptionCheck() || outcome == nullptr) {
    env->ExceptionClear();
    fieldsync_error_set(out_error, FIELDSYNC_ERR_INTERNAL, "the Java HTTP handler failed");
    return false;
  }
  const jint failure = env->GetIntField(outcome, g_refs.outcome_failure_code);
  if (failure != 0) {
    auto message = from_java(
        env, static_cast<jstring>(env->GetObjectField(outcome, g_refs.outcome_failure_message)));
    fieldsync_error_set(out_error, failure, message ? message->c_str() : "HTTP handler failed");
    return false;
  }
  jobject answer = env->GetObjectField(outcome, g_refs.outcome_response);
  fieldsync_http_response_set_status(response, env->GetIntField(answer, g_refs.response_status));
  auto header_names =
      static_cast<jobjectArray>(env->GetObjectField(answer, g_refs.response_header_names));
  auto header_values =
      static_cast<jobjectArray>(env->GetObjectField(answer, g_refs.response_header_values));
  const jsize count = env->GetArrayLength(header_names);
  for (jsize i = 0; i < count; ++i) {
    auto name = string_at(env, header_names, i);
    auto value = string_at(env, header_values, i);
    if (name) {
      fieldsync_http_response_add_header(response, name->c_str(), value ? value->c_str() : "");
    }
  }
  auto bytes = static_cast<jbyteArray>(env->GetObjectField(answer, g_refs.response_body));
  const jsize size = env->GetArrayLength(bytes);
  std::vector<char> copy(static_cast<std::size_t>(size));
  if (size > 0) {
    env->GetByteArrayRegion(bytes, 0, size, reinterpret_cast<jbyte*>(copy.data()));
  }
  fieldsync_http_response_set_body(response, copy.data(), copy.size());
  return true;
}

extern "C" bool http_handler_trampoline(void* ctx, const fieldsync_http_request* request,
                                        fieldsync_http_response* response,
                                        fieldsync_error* out_error) {
  JNIEnv* env = current_env();
  if (env == nullptr) {
    fieldsync_error_set(out_error, FIELDSYNC_ERR_INTERNAL,
                        "the HTTP handler ran on a thread not attached to the JVM");
    return false;
  }
  try {
    return http_via_java(env, *static_cast<HandlerCtx*>(ctx), request, response, out_error);
  } catch (...) {
    env->ExceptionClear();
    fieldsync_error_set(out_error, FIELDSYNC_ERR_INTERNAL, "the HTTP handler bridge failed");
    return false;
  }
}

struct ProgressCtx {
  JNIEnv* env = nullptr;
  jobject listener = nullptr;
  jthrowable thrown = nullptr;  // the listener's first exception (a local ref)
};

jobject new_sync_result(JNIEnv* env, const fieldsync_sync_progress& p) {
  return env->NewObject(g_refs.sync_result, g_refs.sync_result_ctor, p.round_trips, p.sent,
                        p.applied, p.conflicts, p.rejected, p.received, p.bytes_up, p.bytes_down,
                        p.retries, p.cursor);
}

extern "C" void progress_trampoline(void* ctx, const fieldsync_sync_progress* progress) {
  auto* c = static_cast<ProgressCtx*>(ctx);
  JNIEnv* env = c->env;
  jobject soFar = new_sync_result(env, *progress);
  if (soFar != nullptr) {
    env->CallVoidMethod(c->listener, g_refs.on_progress, soFar);
    env->DeleteLocalRef(soFar);
  }
  if (env->ExceptionCheck()) {
    jthrowable t = env->ExceptionOccurred();
    env->ExceptionClear();
    if (c->thrown == nullptr) {
      c->thrown = t;
    } else {
      env->DeleteLocalRef(t);
    }
  }
}

// --- natives: Store -------------------------------------------------------------

jint JNICALL store_abi_version(JNIEnv*, jclass) {
  return fieldsync_abi_version();
}

jstring JNICALL store_version(JNIEnv* env, jclass) {
  return jni_guard(env, jstring{}, [&] { return to_java(env, fieldsync_version()); });
}

jlong JNICALL store_open(JNIEnv* env, jclass, jstring path, jstring server_url) {
  return jni_guard(env, jlong{0}, [&]() -> jlong {
    auto p = from_java(env, path);
    auto url = from_java(env, server_url);
    auto handle = std::make_unique<JniStore>();
    fieldsync_error error{};
    handle->store =
        fieldsync_store_open(p ? p->c_str() : nullptr, url ? url->c_str() : nullptr, &error);
    if (handle->store == nullptr) {
      throw_error(env, error);
      return 0;
    }
    return static_cast<jlong>(reinterpret_cast<std::intptr_t>(handle.release()));
  });
}

void JNICALL store_close(JNIEnv* env, jclass, jlong handle) {
  auto* s = reinterpret_cast<JniStore*>(static_cast<std::intptr_t>(handle));
  if (s == nullptr) {
    return;
  }
  fieldsync_store_close(s->store);
  delete_handler(env, s->handler);
  delete s;
}

// The common shape of natives returning a string from a store function.
template <class Call>
jstring string_call(JNIEnv* env, jlong handle, Call&& call) {
  return jni_guard(env, jstring{}, [&]() -> jstring {
    JniStore* s = as_store(env, handle);
    if (s == nullptr) {
      return nullptr;
    }
    fieldsync_error error{};
    char* out = call(s->store, &error);
    if (out == nullptr) {
      throw_error(env, error);
      return nullptr;
    }
    return take_string(env, out);
  });
}

template <class Call>
void bool_call(JNIEnv* env, jlong handle, Call&& call) {
  jni_guard(env, 0, [&]() -> int {
    JniStore* s = as_store(env, handle);
    if (s == nullptr) {
      return 0;
    }
    fieldsync_error error{};
    if (!call(s->store, &error)) {
      throw_error(env, error);
    }
    return 0;
  });
}

const char* c_str_or_null(const std::optional<std::string>& s) {
  return s ? s->c_str() : nullptr;
}

jstring JNICALL store_device_id(JNIEnv* env, jclass, jlong h) {
  return string_call(env, h, [](fieldsync_store* s, fieldsync_error* e) {
    return fieldsync_store_device_id(s, e);
  });
}

jstring JNICALL store_status(JNIEnv* env, jclass, jlong h) {
  return string_call(
      env, h, [](fieldsync_store* s, fieldsync_error* e) { return fieldsync_store_status(s, e); });
}

void JNICALL store_import_form(JNIEnv* env, jclass, jlong h, jstring form) {
  bool_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, form);
    return fieldsync_form_import(s, c_str_or_null(text), e);
  });
}

jstring JNICALL store_list_forms(JNIEnv* env, jclass, jlong h) {
  return string_call(
      env, h, [](fieldsync_store* s, fieldsync_error* e) { return fieldsync_form_list(s, e); });
}

jstring JNICALL store_put_record(JNIEnv* env, jclass, jlong h, jstring request) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, request);
    return fieldsync_record_put(s, c_str_or_null(text), e);
  });
}

jstring JNICALL store_get_record(JNIEnv* env, jclass, jlong h, jstring id) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, id);
    return fieldsync_record_get(s, c_str_or_null(text), e);
  });
}

jstring JNICALL store_list_records(JNIEnv* env, jclass, jlong h, jstring query) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, query);
    return fieldsync_record_list(s, c_str_or_null(text), e);
  });
}

void JNICALL store_delete_record(JNIEnv* env, jclass, jlong h, jstring id) {
  bool_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, id);
    return fieldsync_record_delete(s, c_str_or_null(text), e);
  });
}

jstring JNICALL store_outbox(JNIEnv* env, jclass, jlong h, jlong limit) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    return fieldsync_outbox_list(s, limit, e);
  });
}

jstring JNICALL store_under_review(JNIEnv* env, jclass, jlong h) {
  return string_call(
      env, h, [](fieldsync_store* s, fieldsync_error* e) { return fieldsync_review_list(s, e); });
}

jstring JNICALL store_rejected(JNIEnv* env, jclass, jlong h) {
  return string_call(
      env, h, [](fieldsync_store* s, fieldsync_error* e) { return fieldsync_rejected_list(s, e); });
}

void JNICALL store_discard_rejected(JNIEnv* env, jclass, jlong h, jstring id) {
  bool_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto text = from_java(env, id);
    return fieldsync_rejected_discard(s, c_str_or_null(text), e);
  });
}

jstring JNICALL store_receipts(JNIEnv* env, jclass, jlong h, jlong limit) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    return fieldsync_receipt_list(s, limit, e);
  });
}

void JNICALL store_set_http_handler(JNIEnv* env, jclass, jlong h, jobject handler) {
  jni_guard(env, 0, [&]() -> int {
    JniStore* s = as_store(env, h);
    if (s == nullptr) {
      return 0;
    }
    std::unique_ptr<HandlerCtx> fresh;
    if (handler != nullptr) {
      fresh = std::make_unique<HandlerCtx>();
      fresh->handler = env->NewGlobalRef(handler);
      if (fresh->handler == nullptr) {
        throw std::bad_alloc();
      }
    }
    std::lock_guard<std::mutex> lock(s->handler_mutex);
    fieldsync_error error{};
    if (!fieldsync_store_set_http_handler(s->store, fresh ? http_handler_trampoline : nullptr,
                                          fresh.get(), &error)) {
      delete_handler(env, fresh.release());
      throw_error(env, error);
      return 0;
    }
    delete_handler(env, s->handler);
    s->handler = fresh.release();
    return 0;
  });
}

jstring JNICALL store_login(JNIEnv* env, jclass, jlong h, jstring username, jstring password) {
  return string_call(env, h, [&](fieldsync_store* s, fieldsync_error* e) {
    auto user = from_java(env, username);
    auto pass = from_java(env, password);
    return fieldsync_store_login(s, c_str_or_null(user), c_str_or_null(pass), e);
  });
}

jobject JNICALL store_sync(JNIEnv* env, jclass, jlong h, jstring options, jobject listener,
                           jlong cancel) {
  return jni_guard(env, jobject{}, [&]() -> jobject {
    JniStore* s = as_store(env, h);
    if (s == nullptr) {
      return nullptr;
    }
    auto opts = from_java(env, options);
    ProgressCtx progress;
    progress.env = env;
    progress.listener = listener;
    fieldsync_sync_progress result{};
    fieldsync_error error{};
    const bool ok = fieldsync_store_sync(
        s->store, c_str_or_null(opts), listener != nullptr ? progress_trampoline : nullptr,
        &progress, reinterpret_cast<const fieldsync_cancel*>(static_cast<std::intptr_t>(cancel)),
        &result, &error);
    if (!ok) {
      throw_error(env, error);
      return nullptr;
    }
    if (progress.thrown != nullptr) {
      env->Throw(progress.thrown);
      return nullptr;
    }
    return new_sync_result(env, result);
  });
}

// --- natives: FieldsyncException, SyncCancellation ------------------------------

jstring JNICALL exception_code_name(JNIEnv* env, jclass, jint code) {
  return jni_guard(env, jstring{}, [&] { return to_java(env, fieldsync_errc_name(code)); });
}

jboolean JNICALL exception_is_transient(JNIEnv*, jclass, jint code) {
  fieldsync_error error{};
  error.code = code;
  return fieldsync_error_is_transient(&error) ? JNI_TRUE : JNI_FALSE;
}

jlong JNICALL cancel_open(JNIEnv* env, jclass) {
  fieldsync_error error{};
  fieldsync_cancel* c = fieldsync_cancel_open(&error);
  if (c == nullptr) {
    jni_guard(env, 0, [&] {
      throw_error(env, error);
      return 0;
    });
    return 0;
  }
  return static_cast<jlong>(reinterpret_cast<std::intptr_t>(c));
}

fieldsync_cancel* as_cancel(jlong h) {
  return reinterpret_cast<fieldsync_cancel*>(static_cast<std::intptr_t>(h));
}

void JNICALL cancel_request(JNIEnv*, jclass, jlong h) {
  fieldsync_cancel_request(as_cancel(h));
}

jboolean JNICALL cancel_is_requested(JNIEnv*, jclass, jlong h) {
  return fieldsync_cancel_is_requested(as_cancel(h)) ? JNI_TRUE : JNI_FALSE;
}

void JNICALL cancel_close(JNIEnv*, jclass, jlong h) {
  fieldsync_cancel_close(as_cancel(h));
}

// --- loading --------------------------------------------------------------------

template <class F>
void* fn(F f) {
  return reinterpret_cast<void*>(f);
}

const JNINativeMethod kStoreMethods[] = {
    {const_cast<char*>("nativeAbiVersion"), const_cast<char*>("()I"), fn(store_abi_version)},
    {const_cast<char*>("nativeVersion"), const_cast<char*>("()Ljava/lang/String;"),
     fn(store_version)},
    {const_cast<char*>("nativeOpen"), const_cast<char*>("(Ljava/lang/String;Ljava/lang/String;)J"),
     fn(store_open)},
    {const_cast<char*>("nativeClose"), const_cast<char*>("(J)V"), fn(store_close)},
    {const_cast<char*>("nativeDeviceId"), const_cast<char*>("(J)Ljava/lang/String;"),
     fn(store_device_id)},
    {const_cast<char*>("nativeStatus"), const_cast<char*>("(J)Ljava/lang/String;"),
     fn(store_status)},
    {const_cast<char*>("nativeImportForm"), const_cast<char*>("(JLjava/lang/String;)V"),
     fn(store_import_form)},
    {const_cast<char*>("nativeListForms"), const_cast<char*>("(J)Ljava/lang/String;"),
     fn(store_list_forms)},
    {const_cast<char*>("nativePutRecord"),
     const_cast<char*>("(JLjava/lang/String;)Ljava/lang/String;"), fn(store_put_record)},
    {const_cast<char*>("nativeGetRecord"),
     const_cast<char*>("(JLjava/lang/String;)Ljava/lang/String;"), fn(store_get_record)},
    {const_cast<char*>("nativeListRecords"),
     const_cast<char*>("(JLjava/lang/String;)Ljava/lang/String;"), fn(store_list_records)},
    {const_cast<char*>("nativeDeleteRecord"), const_cast<char*>("(JLjava/lang/String;)V"),
     fn(store_delete_record)},
    {const_cast<char*>("nativeOutbox"), const_cast<char*>("(JJ)Ljava/lang/String;"),
     fn(store_outbox)},
    {const_cast<char*>("nativeUnderReview"), const_cast<char*>("(J)Ljava/lang/String;"),
     fn(store_under_review)},
    {const_cast<char*>("nativeRejected"), const_cast<char*>("(J)Ljava/lang/String;"),
     fn(store_rejected)},
    {const_cast<char*>("nativeDiscardRejected"), const_cast<char*>("(JLjava/lang/String;)V"),
     fn(store_discard_rejected)},
    {const_cast<char*>("nativeReceipts"), const_cast<char*>("(JJ)Ljava/lang/String;"),
     fn(store_receipts)},
    {const_cast<char*>("nativeSetHttpHandler"), const_cast<char*>("(JLid/fieldsync/HttpHandler;)V"),
     fn(store_set_http_handler)},
    {const_cast<char*>("nativeLogin"),
     const_cast<char*>("(JLjava/lang/String;Ljava/lang/String;)Ljava/lang/String;"),
     fn(store_login)},
    {const_cast<char*>("nativeSync"),
     const_cast<char*>(
         "(JLjava/lang/String;Lid/fieldsync/SyncProgressListener;J)Lid/fieldsync/SyncResult;"),
     fn(store_sync)},
};

const JNINativeMethod kExceptionMethods[] = {
    {const_cast<char*>("nativeCodeName"), const_cast<char*>("(I)Ljava/lang/String;"),
     fn(exception_code_name)},
    {const_cast<char*>("nativeIsTransient"), const_cast<char*>("(I)Z"), fn(exception_is_transient)},
};

const JNINativeMethod kCancelMethods[] = {
    {const_cast<char*>("nativeOpen"), const_cast<char*>("()J"), fn(cancel_open)},
    {const_cast<char*>("nativeRequest"), const_cast<char*>("(J)V"), fn(cancel_request)},
    {const_cast<char*>("nativeIsRequested"), const_cast<char*>("(J)Z"), fn(cancel_is_requested)},
    {const_cast<char*>("nativeClose"), const_cast<char*>("(J)V"), fn(cancel_close)},
};

jclass global_class(JNIEnv* env, const char* name) {
  jclass local = env->FindClass(name);
  if (local == nullptr) {
    return nullptr;
  }
  auto global = static_cast<jclass>(env->NewGlobalRef(local));
  env->DeleteLocalRef(local);
  return global;
}

template <std::size_t N>
bool register_natives(JNIEnv* env, jclass cls, const JNINativeMethod (&methods)[N]) {
  return cls != nullptr && env->RegisterNatives(cls, methods, static_cast<jint>(N)) == JNI_OK;
}

bool load(JNIEnv* env) {
  JavaRefs& r = g_refs;
  r.exception = global_class(env, "id/fieldsync/FieldsyncException");
  r.sync_result = global_class(env, "id/fieldsync/SyncResult");
  r.store = global_class(env, "id/fieldsync/Store");
  r.string = global_class(env, "java/lang/String");
  r.illegal_state = global_class(env, "java/lang/IllegalStateException");
  r.out_of_memory = global_class(env, "java/lang/OutOfMemoryError");
  jclass listener = env->FindClass("id/fieldsync/SyncProgressListener");
  jclass outcome = env->FindClass("id/fieldsync/Store$HandlerOutcome");
  jclass response = env->FindClass("id/fieldsync/HttpResponse");
  jclass cancel = env->FindClass("id/fieldsync/SyncCancellation");
  if (r.exception == nullptr || r.sync_result == nullptr || r.store == nullptr ||
      r.string == nullptr || r.illegal_state == nullptr || r.out_of_memory == nullptr ||
      listener == nullptr || outcome == nullptr || response == nullptr || cancel == nullptr) {
    return false;
  }
  r.exception_ctor =
      env->GetMethodID(r.exception, "<init>", "(ILjava/lang/String;Ljava/lang/String;)V");
  r.sync_result_ctor = env->GetMethodID(r.sync_result, "<init>", "(JJJJJJJJJJ)V");
  r.on_progress = env->GetMethodID(listener, "onProgress", "(Lid/fieldsync/SyncResult;)V");
  r.invoke_handler = env->GetStaticMethodID(
      r.store, "invokeHandler",
      "(Lid/fieldsync/HttpHandler;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;"
      "[Ljava/lang/String;[Ljava/lang/String;[BJ)Lid/fieldsync/Store$HandlerOutcome;");
  r.outcome_response = env->GetFieldID(outcome, "response", "Lid/fieldsync/HttpResponse;");
  r.outcome_failure_code = env->GetFieldID(outcome, "failureCode", "I");
  r.outcome_failure_message = env->GetFieldID(outcome, "failureMessage", "Ljava/lang/String;");
  r.response_status = env->GetFieldID(response, "status", "I");
  r.response_header_names = env->GetFieldID(response, "headerNames", "[Ljava/lang/String;");
  r.response_header_values = env->GetFieldID(response, "headerValues", "[Ljava/lang/String;");
  r.response_body = env->GetFieldID(response, "body", "[B");
  if (r.exception_ctor == nullptr || r.sync_result_ctor == nullptr || r.on_progress == nullptr ||
      r.invoke_handler == nullptr || r.outcome_response == nullptr ||
      r.outcome_failure_code == nullptr || r.outcome_failure_message == nullptr ||
      r.response_status == nullptr || r.response_header_names == nullptr ||
      r.response_header_values == nullptr || r.response_body == nullptr) {
    return false;
  }
  return register_natives(env, r.store, kStoreMethods) &&
         register_natives(env, r.exception, kExceptionMethods) &&
         register_natives(env, cancel, kCancelMethods);
}

}  // namespace

extern "C" JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void*) {
  JNIEnv* env = nullptr;
  if (vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) != JNI_OK) {
    return JNI_ERR;
  }
  g_vm = vm;
  try {
    return load(env) ? JNI_VERSION_1_6 : JNI_ERR;
  } catch (...) {
    return JNI_ERR;
  }
}
