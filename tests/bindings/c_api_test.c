/* Drives the whole C ABI (mobile-bindings/include/fieldsync.h) from C99 against a
 * REAL fieldsync-server started by fieldsync_with_server: offline saves, sync,
 * a conflict between two stores and its review flag, a rejected change, the
 * app's own HTTP hook, cancellation from another thread, and the error rules.
 * Compiled as C99 with -Wall -Wextra -Wpedantic -Werror: it also proves the
 * header is valid C. JSON answers are checked by substring, not parsed. */
#define _POSIX_C_SOURCE 200809L

#include "fieldsync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_checks = 0;
static int g_failures = 0;

static int check_at(int ok, const char* what, const char* file, int line) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    fprintf(stderr, "%s:%d: CHECK FAILED: %s\n", file, line, what);
  }
  return ok;
}

#define CHECK(cond) check_at((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
/* Stops the program: later steps would only fail because of this one. */
#define REQUIRE(cond)                                                  \
  do {                                                                 \
    if (!CHECK(cond)) {                                                \
      fprintf(stderr, "%d checks, %d failed\n", g_checks, g_failures); \
      exit(1);                                                         \
    }                                                                  \
  } while (0)

static void print_error(const char* what, const fieldsync_error* e) {
  fprintf(stderr, "  %s failed: %s (%d) field=\"%s\": %s\n", what, fieldsync_errc_name(e->code),
          (int)e->code, e->field, e->message);
}

/* A result that must be there; prints the error when not. */
#define OK(expr, err)                            \
  do {                                           \
    if (!CHECK(expr)) print_error(#expr, (err)); \
  } while (0)

static const char* env_or_die(const char* name) {
  const char* v = getenv(name);
  if (v == NULL || *v == '\0') {
    fprintf(stderr, "missing environment variable %s (run through fieldsync_with_server)\n", name);
    exit(2);
  }
  return v;
}

/* True when `text` contains `needle` followed by a JSON delimiter (or ends), so
 * that "\"pending\":1" does not match "\"pending\":12". */
static int json_has(const char* text, const char* needle) {
  const char* p = text;
  size_t n = strlen(needle);
  while (text != NULL && (p = strstr(p, needle)) != NULL) {
    char after = p[n];
    if (after == '\0' || after == ',' || after == '}' || after == ']' || after == '"' ||
        needle[n - 1] == '"' || needle[n - 1] == '{' || needle[n - 1] == ':') {
      return 1;
    }
    p += n;
  }
  return 0;
}

static void path_in(char* out, size_t size, const char* dir, const char* name) {
  snprintf(out, size, "%s/%s", dir, name);
}

/* Copies into `out` the change id "<device>:<n>" that follows "\"id\":\"" for
 * this device in `json`; empty when absent. */
static void find_change_id(const char* json, const char* device_id, char* out, size_t size) {
  char prefix[160];
  const char* p;
  size_t i = 0;
  snprintf(prefix, sizeof prefix, "\"id\":\"%s:", device_id);
  out[0] = '\0';
  p = json != NULL ? strstr(json, prefix) : NULL;
  if (p == NULL) return;
  p += strlen("\"id\":\"");
  while (p[i] != '\0' && p[i] != '"' && i + 1 < size) {
    out[i] = p[i];
    ++i;
  }
  out[i] = '\0';
}

/* --- fixtures ------------------------------------------------------------- */

typedef struct Env {
  const char* url;
  const char* dir;
  const char* form;
  const char* user_a;
  const char* pass_a;
  const char* user_b;
  const char* pass_b;
} Env;

static fieldsync_store* open_store(const Env* env, const char* name, const char* url) {
  char path[1024];
  fieldsync_error e;
  fieldsync_store* s;
  path_in(path, sizeof path, env->dir, name);
  s = fieldsync_store_open(path, url, &e);
  if (s == NULL) print_error("fieldsync_store_open", &e);
  REQUIRE(s != NULL);
  OK(fieldsync_form_import(s, env->form, &e), &e);
  return s;
}

static void login(fieldsync_store* s, const char* user, const char* password) {
  fieldsync_error e;
  char* answer = fieldsync_store_login(s, user, password, &e);
  if (answer == NULL) print_error("fieldsync_store_login", &e);
  REQUIRE(answer != NULL);
  CHECK(strstr(answer, user) != NULL);
  CHECK(strstr(answer, "\"role\":\"officer\"") != NULL);
  CHECK(strstr(answer, "token") == NULL); /* the token stays inside */
  fieldsync_free(answer);
}

static int sync_store(fieldsync_store* s, fieldsync_sync_progress* result) {
  fieldsync_error e;
  int ok = fieldsync_store_sync(s, NULL, NULL, NULL, NULL, result, &e);
  if (!ok) print_error("fieldsync_store_sync", &e);
  return ok;
}

static char* put(fieldsync_store* s, const char* request) {
  fieldsync_error e;
  char* id = fieldsync_record_put(s, request, &e);
  if (id == NULL) print_error("fieldsync_record_put", &e);
  REQUIRE(id != NULL);
  return id;
}

static char* get(fieldsync_store* s, const char* id) {
  fieldsync_error e;
  char* record = fieldsync_record_get(s, id, &e);
  if (record == NULL) print_error("fieldsync_record_get", &e);
  REQUIRE(record != NULL);
  return record;
}

static int status_has(fieldsync_store* s, const char* needle) {
  fieldsync_error e;
  char* status = fieldsync_store_status(s, &e);
  int found;
  if (status == NULL) print_error("fieldsync_store_status", &e);
  REQUIRE(status != NULL);
  found = json_has(status, needle);
  if (!found) fprintf(stderr, "  status %s lacks %s\n", status, needle);
  fieldsync_free(status);
  return found;
}

/* --- the app's HTTP hook ---------------------------------------------------- */

typedef struct Hook {
  const char* base_url;
  fieldsync_store* store; /* for the re-entrancy probe */
  int calls;
  int sync_calls;
  int saw_bearer;
  int last_status;
  int fail_with; /* != 0: report this failure instead of sending */
  int probe_reentry;
  int reentry_code;
  /* cancellation test: the hook waits on /v1/sync until `cancel` is requested */
  fieldsync_cancel* wait_for_cancel;
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int in_flight;
} Hook;

static int header_is(const fieldsync_http_request* r, const char* name, const char* prefix) {
  size_t i;
  for (i = 0; i < r->header_count; ++i) {
    if (strcmp(r->header_names[i], name) == 0 &&
        strncmp(r->header_values[i], prefix, strlen(prefix)) == 0) {
      return 1;
    }
  }
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec t;
  t.tv_sec = ms / 1000;
  t.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&t, NULL);
}

static bool hook_fn(void* ctx, const fieldsync_http_request* request,
                    fieldsync_http_response* response, fieldsync_error* out_error) {
  Hook* hook = (Hook*)ctx;
  bool ok;
  ++hook->calls;
  if (strcmp(request->target, "/v1/sync") == 0) {
    ++hook->sync_calls;
    if (header_is(request, "Authorization", "Bearer ")) hook->saw_bearer = 1;
  }
  if (hook->probe_reentry) {
    fieldsync_error e;
    char* s = fieldsync_store_status(hook->store, &e);
    hook->reentry_code = s == NULL ? e.code : 0;
    fieldsync_free(s);
    hook->probe_reentry = 0;
  }
  if (hook->fail_with != 0) {
    fieldsync_error_set(out_error, hook->fail_with, "the test hook has no network");
    return false;
  }
  if (hook->wait_for_cancel != NULL && strcmp(request->target, "/v1/sync") == 0) {
    int waited = 0;
    pthread_mutex_lock(&hook->mutex);
    hook->in_flight = 1;
    pthread_cond_broadcast(&hook->cond);
    pthread_mutex_unlock(&hook->mutex);
    while (!fieldsync_cancel_is_requested(hook->wait_for_cancel) && waited < 10000) {
      sleep_ms(5);
      waited += 5;
    }
  }
  CHECK(strncmp(request->url, hook->base_url, strlen(hook->base_url)) == 0);
  ok = fieldsync_http_send(hook->base_url, request, response, out_error);
  if (ok) hook->last_status = fieldsync_http_response_status(response);
  return ok;
}

static void* cancel_when_in_flight(void* arg) {
  Hook* hook = (Hook*)arg;
  pthread_mutex_lock(&hook->mutex);
  while (!hook->in_flight) pthread_cond_wait(&hook->cond, &hook->mutex);
  pthread_mutex_unlock(&hook->mutex);
  fieldsync_cancel_request(hook->wait_for_cancel); /* from this other thread */
  return NULL;
}

typedef struct Progress {
  int calls;
  int64_t last_round_trips;
  int monotonic;
} Progress;

static void progress_fn(void* ctx, const fieldsync_sync_progress* p) {
  Progress* progress = (Progress*)ctx;
  if (p->round_trips < progress->last_round_trips) progress->monotonic = 0;
  progress->last_round_trips = p->round_trips;
  ++progress->calls;
}

/* --- scenarios -------------------------------------------------------------- */

static void test_basics(void) {
  fieldsync_error e;
  char long_message[2000];
  size_t i;
  CHECK(fieldsync_abi_version() == FIELDSYNC_ABI_VERSION);
  CHECK(strlen(fieldsync_version()) > 0);
  CHECK(strcmp(fieldsync_errc_name(FIELDSYNC_ERR_VALIDATION), "validation") == 0);
  CHECK(strcmp(fieldsync_errc_name(FIELDSYNC_ERR_TLS), "tls") == 0);
  CHECK(strcmp(fieldsync_errc_name(999), "unknown") == 0);
  CHECK(strcmp(fieldsync_errc_name(-1), "unknown") == 0);

  fieldsync_error_set(&e, FIELDSYNC_ERR_NETWORK, "x");
  CHECK(fieldsync_error_is_transient(&e));
  fieldsync_error_set(&e, FIELDSYNC_ERR_THROTTLED, "x");
  CHECK(fieldsync_error_is_transient(&e));
  fieldsync_error_set(&e, FIELDSYNC_ERR_TLS, "x");
  CHECK(!fieldsync_error_is_transient(&e));
  fieldsync_error_set(&e, FIELDSYNC_ERR_VALIDATION, "x");
  CHECK(!fieldsync_error_is_transient(&e));
  fieldsync_error_set(&e, FIELDSYNC_OK, "x");
  CHECK(!fieldsync_error_is_transient(&e));
  CHECK(!fieldsync_error_is_transient(NULL));

  /* A long message is cut to the buffer, at a UTF-8 character boundary. */
  for (i = 0; i + 2 < sizeof long_message; i += 2) {
    long_message[i] = (char)0xC3; /* "é" */
    long_message[i + 1] = (char)0xA9;
  }
  long_message[i] = '\0';
  fieldsync_error_set(&e, FIELDSYNC_ERR_IO, long_message);
  CHECK(strlen(e.message) < FIELDSYNC_ERROR_MESSAGE_SIZE);
  CHECK(strlen(e.message) % 2 == 0);
  CHECK(strlen(e.message) >= FIELDSYNC_ERROR_MESSAGE_SIZE - 2);
  fieldsync_error_set(NULL, FIELDSYNC_ERR_IO, "ignored");

  /* NULLs are refused with an error, never a crash; out_error may be NULL. */
  fieldsync_free(NULL);
  fieldsync_store_close(NULL);
  fieldsync_cancel_close(NULL);
  fieldsync_cancel_request(NULL);
  CHECK(!fieldsync_cancel_is_requested(NULL));
  CHECK(fieldsync_store_open(NULL, NULL, NULL) == NULL);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_open("", NULL, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_status(NULL, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  CHECK(!fieldsync_record_delete(NULL, "x", NULL));
}

static void test_offline_and_errors(const Env* env, fieldsync_store* a) {
  char path[1024];
  fieldsync_error e;
  char* text;
  char* id;
  char* record;
  fieldsync_sync_progress result;

  /* A URL the library cannot use is refused at open. */
  path_in(path, sizeof path, env->dir, "bad-url.db");
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_open(path, "ftp://example.invalid", &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);

  /* A file that is not a store. */
  {
    FILE* f;
    path_in(path, sizeof path, env->dir, "not-a-store.db");
    f = fopen(path, "wb");
    REQUIRE(f != NULL);
    fputs("this is not an SQLite database, just text that is long enough to matter\n", f);
    fclose(f);
    e.code = FIELDSYNC_OK;
    CHECK(fieldsync_store_open(path, NULL, &e) == NULL);
    CHECK(e.code == FIELDSYNC_ERR_CORRUPT);
  }

  text = fieldsync_form_list(a, &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, "\"id\":\"bindings-test\"") != NULL);
  fieldsync_free(text);
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_form_import(a, "{not json", &e));
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);

  text = fieldsync_store_device_id(a, &e);
  REQUIRE(text != NULL);
  CHECK(strlen(text) == 36);
  fieldsync_free(text);

  /* Validation: the field is named. */
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_record_put(a,
                             "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2001\","
                             "\"fields\":{\"desa_code\":\"14.03.01.2001\",\"children_total\":-1}}",
                             &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_VALIDATION);
  CHECK(strcmp(e.field, "children_total") == 0);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_record_put(a, "{\"form\":\"bindings-test\",\"colour\":1}", &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(e.field, "colour") == 0);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_record_put(a, "[1,2", &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_record_get(a, "0190d1a4-0000-7000-8000-000000000000", &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_NOT_FOUND);

  /* Saved offline: durable, in the outbox, dirty. */
  id = put(a,
           "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2001\","
           "\"fields\":{\"desa_code\":\"14.03.01.2001\",\"children_total\":12}}");
  record = get(a, id);
  CHECK(strstr(record, "\"children_total\":{\"dirty\":true,\"value\":12,\"version\":0}") != NULL);
  CHECK(json_has(record, "\"dirty\":true"));
  fieldsync_free(record);
  CHECK(status_has(a, "\"pending\":1"));
  text = fieldsync_outbox_list(a, -1, &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, id) != NULL);
  CHECK(strstr(text, "\"op\":\"upsert\"") != NULL);
  fieldsync_free(text);

  /* Sync needs a login; wrong credentials are unauthorized, not transient. */
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_store_sync(a, NULL, NULL, NULL, NULL, &result, &e));
  CHECK(e.code == FIELDSYNC_ERR_UNAUTHORIZED);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_login(a, env->user_a, "wrong password", &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_UNAUTHORIZED);
  CHECK(!fieldsync_error_is_transient(&e));
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_store_sync(a, "{\"batch_sise\":10}", NULL, NULL, NULL, &result, &e));
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  fieldsync_free(id);
}

static void test_sync_conflict_review(const Env* env, fieldsync_store* a, fieldsync_store* b) {
  fieldsync_error e;
  fieldsync_sync_progress result;
  Progress progress = {0, 0, 1};
  char request[512];
  char* id;
  char* text;

  login(a, env->user_a, env->pass_a);
  CHECK(status_has(a, "\"user\":\"officer.a\""));
  memset(&result, 0, sizeof result);
  OK(fieldsync_store_sync(a, "{\"batch_size\":50,\"user_agent\":\"c-api-test/1\"}", progress_fn,
                          &progress, NULL, &result, &e),
     &e);
  CHECK(result.sent == 1);
  CHECK(result.applied == 1);
  CHECK(result.conflicts == 0);
  CHECK(result.round_trips >= 1);
  CHECK(result.cursor >= 1);
  CHECK(progress.calls == (int)result.round_trips);
  CHECK(progress.monotonic);
  CHECK(status_has(a, "\"pending\":0"));

  text = fieldsync_record_list(a, "{\"form\":\"bindings-test\"}", &e);
  REQUIRE(text != NULL);
  REQUIRE(strstr(text, "\"id\":\"") != NULL);
  {
    /* the only record: take its id from the list */
    const char* p = strstr(text, "\"id\":\"") + 6;
    size_t n = (size_t)(strchr(p, '"') - p);
    id = (char*)malloc(n + 1);
    REQUIRE(id != NULL);
    memcpy(id, p, n);
    id[n] = '\0';
  }
  fieldsync_free(text);
  text = fieldsync_receipt_list(a, -1, &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, id) != NULL);
  CHECK(strstr(text, "\"status\":\"applied\"") != NULL);
  fieldsync_free(text);
  text = get(a, id);
  CHECK(strstr(text, "\"children_total\":{\"dirty\":false,\"value\":12") != NULL);
  fieldsync_free(text);

  /* B pulls A's record. */
  login(b, env->user_b, env->pass_b);
  memset(&result, 0, sizeof result);
  OK(sync_store(b, &result), &e);
  CHECK(result.received >= 1);
  text = get(b, id);
  CHECK(strstr(text, "\"children_total\":{\"dirty\":false,\"value\":12") != NULL);
  CHECK(json_has(text, "\"scope\":\"14.03.01.2001\""));
  fieldsync_free(text);

  /* Both edit the same field offline; A syncs first, so B's value conflicts. */
  snprintf(request, sizeof request,
           "{\"form\":\"bindings-test\",\"record\":\"%s\",\"scope\":\"14.03.01.2001\","
           "\"fields\":{\"children_total\":20}}",
           id);
  fieldsync_free(put(a, request));
  snprintf(request, sizeof request,
           "{\"form\":\"bindings-test\",\"record\":\"%s\",\"scope\":\"14.03.01.2001\","
           "\"fields\":{\"children_total\":30,"
           "\"officer_notes\":\"Catatan \xe2\x9c\x93 \xf0\x9f\x98\x80\"}}",
           id);
  fieldsync_free(put(b, request));
  memset(&result, 0, sizeof result);
  OK(sync_store(a, &result), &e);
  CHECK(result.applied == 1);
  memset(&result, 0, sizeof result);
  OK(sync_store(b, &result), &e);
  CHECK(result.conflicts == 1);

  /* B shows the server's value with the field under review, and its own offer. */
  text = get(b, id);
  CHECK(strstr(text, "\"value\":20") != NULL);
  CHECK(strstr(text, "\"my_value\":30") != NULL);
  CHECK(json_has(text, "\"under_review\":true"));
  fieldsync_free(text);
  text = fieldsync_review_list(b, &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, id) != NULL);
  CHECK(json_has(text, "\"field\":\"children_total\""));
  CHECK(json_has(text, "\"my_value\":30"));
  CHECK(json_has(text, "\"value\":20"));
  CHECK(strstr(text, "officer_notes") == NULL); /* merged cleanly: not under review */
  fieldsync_free(text);
  CHECK(status_has(b, "\"under_review\":1"));
  text = fieldsync_review_list(a, &e);
  REQUIRE(text != NULL);
  CHECK(strcmp(text, "[]") == 0);
  fieldsync_free(text);

  /* The non-conflicting field (with emoji) reaches A intact. */
  OK(sync_store(a, &result), &e);
  text = get(a, id);
  CHECK(strstr(text, "Catatan \xe2\x9c\x93 \xf0\x9f\x98\x80") != NULL);
  fieldsync_free(text);

  /* A delete reaches B; deleted records leave the default list. */
  OK(fieldsync_record_delete(a, id, &e), &e);
  OK(sync_store(a, &result), &e);
  OK(sync_store(b, &result), &e);
  text = get(b, id);
  CHECK(json_has(text, "\"deleted\":true"));
  fieldsync_free(text);
  text = fieldsync_record_list(b, NULL, &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, id) == NULL);
  fieldsync_free(text);
  text = fieldsync_record_list(b, "{\"include_deleted\":true}", &e);
  REQUIRE(text != NULL);
  CHECK(strstr(text, id) != NULL);
  fieldsync_free(text);
  free(id);
}

static void test_rejected(fieldsync_store* a) {
  fieldsync_error e;
  fieldsync_sync_progress result;
  char change_id[128];
  char* device;
  char* text;

  /* Officer A may not write outside 14.03.01: the server refuses, the device keeps it. */
  fieldsync_free(put(a,
                     "{\"form\":\"bindings-test\",\"scope\":\"14.03.02.2001\","
                     "\"fields\":{\"desa_code\":\"14.03.02.2001\",\"children_total\":5}}"));
  memset(&result, 0, sizeof result);
  OK(sync_store(a, &result), &e);
  CHECK(result.rejected == 1);
  CHECK(status_has(a, "\"rejected\":1"));
  CHECK(status_has(a, "\"pending\":0"));
  text = fieldsync_rejected_list(a, &e);
  REQUIRE(text != NULL);
  CHECK(json_has(text, "\"code\":\"forbidden\""));
  device = fieldsync_store_device_id(a, &e);
  REQUIRE(device != NULL);
  find_change_id(text, device, change_id, sizeof change_id);
  fieldsync_free(text);
  fieldsync_free(device);
  REQUIRE(change_id[0] != '\0');

  OK(fieldsync_rejected_discard(a, change_id, &e), &e);
  text = fieldsync_rejected_list(a, &e);
  REQUIRE(text != NULL);
  CHECK(strcmp(text, "[]") == 0);
  fieldsync_free(text);
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_rejected_discard(a, change_id, &e));
  CHECK(e.code == FIELDSYNC_ERR_NOT_FOUND);
}

static void test_http_hook_and_cancel(const Env* env, fieldsync_store* a) {
  fieldsync_error e;
  fieldsync_sync_progress result;
  Hook hook;
  fieldsync_store* c;
  fieldsync_cancel* cancel;
  pthread_t thread;
  char* id;
  char* text;
  int calls_before;

  memset(&hook, 0, sizeof hook);
  hook.base_url = env->url;
  pthread_mutex_init(&hook.mutex, NULL);
  pthread_cond_init(&hook.cond, NULL);

  /* Store C sends everything through the app's hook, which forwards with the
   * built-in client (as an OkHttp handler would with its own). */
  c = open_store(env, "c.db", env->url);
  hook.store = c;
  OK(fieldsync_store_set_http_handler(c, hook_fn, &hook, &e), &e);
  login(c, env->user_a, env->pass_a);
  CHECK(hook.calls == 1);
  CHECK(hook.last_status == 200);
  id = put(c,
           "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2002\","
           "\"fields\":{\"desa_code\":\"14.03.01.2002\",\"has_forum_anak\":true}}");
  hook.probe_reentry = 1;
  OK(sync_store(c, &result), &e);
  CHECK(result.applied == 1);
  CHECK(hook.sync_calls >= 1);
  CHECK(hook.saw_bearer);
  CHECK(hook.reentry_code == FIELDSYNC_ERR_INVALID_ARGUMENT); /* no deadlock */
  OK(sync_store(a, &result), &e);
  text = get(a, id);
  CHECK(strstr(text, "\"has_forum_anak\":{\"dirty\":false,\"value\":true") != NULL);
  fieldsync_free(text);
  fieldsync_free(id);

  /* No network through the hook: a transient error, the outbox kept. */
  fieldsync_free(put(c,
                     "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2003\","
                     "\"fields\":{\"desa_code\":\"14.03.01.2003\"}}"));
  hook.fail_with = FIELDSYNC_ERR_NETWORK;
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_store_sync(c,
                              "{\"max_attempts\":2,\"backoff_initial_ms\":1,\"backoff_max_ms\":2}",
                              NULL, NULL, NULL, &result, &e));
  CHECK(e.code == FIELDSYNC_ERR_NETWORK);
  CHECK(fieldsync_error_is_transient(&e));
  CHECK(strstr(e.message, "no network") != NULL);
  CHECK(status_has(c, "\"pending\":1"));
  hook.fail_with = 0;

  /* Cancel from another thread while a round trip is in flight: that round trip
   * commits, the sync stops before the next (batch_size 1, two changes). */
  fieldsync_free(put(c,
                     "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2004\","
                     "\"fields\":{\"desa_code\":\"14.03.01.2004\"}}"));
  CHECK(status_has(c, "\"pending\":2"));
  cancel = fieldsync_cancel_open(&e);
  REQUIRE(cancel != NULL);
  hook.wait_for_cancel = cancel;
  REQUIRE(pthread_create(&thread, NULL, cancel_when_in_flight, &hook) == 0);
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_store_sync(c, "{\"batch_size\":1}", NULL, NULL, cancel, &result, &e));
  CHECK(e.code == FIELDSYNC_ERR_CANCELLED);
  pthread_join(thread, NULL);
  CHECK(fieldsync_cancel_is_requested(cancel));
  CHECK(status_has(c, "\"pending\":1"));
  /* A cancelled flag stays cancelled: nothing is sent. */
  calls_before = hook.calls;
  e.code = FIELDSYNC_OK;
  CHECK(!fieldsync_store_sync(c, NULL, NULL, NULL, cancel, &result, &e));
  CHECK(e.code == FIELDSYNC_ERR_CANCELLED);
  CHECK(hook.calls == calls_before);
  fieldsync_cancel_close(cancel);
  hook.wait_for_cancel = NULL;

  OK(sync_store(c, &result), &e);
  CHECK(status_has(c, "\"pending\":0"));

  /* Back to the built-in client. */
  OK(fieldsync_store_set_http_handler(c, NULL, NULL, &e), &e);
  calls_before = hook.calls;
  OK(sync_store(c, &result), &e);
  CHECK(hook.calls == calls_before);
  fieldsync_store_close(c);
  pthread_mutex_destroy(&hook.mutex);
  pthread_cond_destroy(&hook.cond);
}

/* A store whose header was zeroed: open refuses it and says to salvage;
 * fieldsync_store_salvage exports both unsynced records. */
static void test_salvage(const Env* env) {
  char path[1024];
  char out[1024];
  char zeros[100];
  fieldsync_error e;
  fieldsync_store* s;
  char* text;
  FILE* f;
  path_in(path, sizeof path, env->dir, "salvage.db");
  path_in(out, sizeof out, env->dir, "salvage-export.json");
  s = open_store(env, "salvage.db", env->url);
  text = put(s,
             "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2001\","
             "\"fields\":{\"desa_code\":\"14.03.01.2001\",\"children_total\":7}}");
  fieldsync_free(text);
  text = put(s,
             "{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2002\","
             "\"fields\":{\"desa_code\":\"14.03.01.2002\",\"children_total\":8}}");
  fieldsync_free(text);
  fieldsync_store_close(s);

  memset(zeros, 0, sizeof zeros);
  f = fopen(path, "r+b");
  REQUIRE(f != NULL);
  CHECK(fwrite(zeros, 1, sizeof zeros, f) == sizeof zeros);
  fclose(f);

  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_open(path, NULL, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_CORRUPT);
  CHECK(strstr(e.message, "salvage") != NULL);

  text = fieldsync_store_salvage(path, out, &e);
  if (text == NULL) print_error("fieldsync_store_salvage", &e);
  REQUIRE(text != NULL);
  CHECK(json_has(text, "\"unsynced_changes\":2"));
  CHECK(json_has(text, "\"header_repaired\":true"));
  CHECK(json_has(text, "\"complete\":false"));
  fieldsync_free(text);
  f = fopen(out, "rb");
  CHECK(f != NULL);
  if (f != NULL) fclose(f);

  /* The export is never overwritten; a missing store is not found. */
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_salvage(path, out, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
  path_in(path, sizeof path, env->dir, "no-such-store.db");
  path_in(out, sizeof out, env->dir, "no-such-export.json");
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_salvage(path, out, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_NOT_FOUND);
  e.code = FIELDSYNC_OK;
  CHECK(fieldsync_store_salvage(NULL, out, &e) == NULL);
  CHECK(e.code == FIELDSYNC_ERR_INVALID_ARGUMENT);
}

static void test_reopen(const Env* env) {
  char path[1024];
  fieldsync_error e;
  fieldsync_store* a;
  char needle[600];
  path_in(path, sizeof path, env->dir, "a.db");
  a = fieldsync_store_open(path, NULL, &e);
  REQUIRE(a != NULL);
  snprintf(needle, sizeof needle, "\"server_url\":\"%s\"", env->url);
  CHECK(status_has(a, needle));
  CHECK(status_has(a, "\"pending\":0"));
  fieldsync_store_close(a);
}

int main(void) {
  Env env;
  fieldsync_store* a;
  fieldsync_store* b;
  env.url = env_or_die("FIELDSYNC_TEST_SERVER_URL");
  env.dir = env_or_die("FIELDSYNC_TEST_DIR");
  env.form = env_or_die("FIELDSYNC_TEST_FORM_JSON");
  env.user_a = env_or_die("FIELDSYNC_TEST_USER_A");
  env.pass_a = env_or_die("FIELDSYNC_TEST_PASSWORD_A");
  env.user_b = env_or_die("FIELDSYNC_TEST_USER_B");
  env.pass_b = env_or_die("FIELDSYNC_TEST_PASSWORD_B");

  test_basics();
  a = open_store(&env, "a.db", env.url);
  b = open_store(&env, "b.db", env.url);
  test_offline_and_errors(&env, a);
  test_sync_conflict_review(&env, a, b);
  test_rejected(a);
  test_http_hook_and_cancel(&env, a);
  fieldsync_store_close(a);
  fieldsync_store_close(b);
  test_reopen(&env);
  test_salvage(&env);

  printf("c_api_test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
