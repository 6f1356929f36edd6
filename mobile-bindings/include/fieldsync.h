/* The fieldsync C ABI: a stable C99 interface over the sync core, for the
 * Android (JNI) and iOS (Swift) bindings and any other language with a C FFI.
 * Models: LiteCore's c4*.h and LevelDB's c.h (see docs/bindings.md). */
#ifndef FIELDSYNC_H
#define FIELDSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(FIELDSYNC_C_BUILD)
#define FIELDSYNC_API __declspec(dllexport)
#else
#define FIELDSYNC_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define FIELDSYNC_API __attribute__((visibility("default")))
#else
#define FIELDSYNC_API
#endif

#ifdef __cplusplus
#define FIELDSYNC_NOEXCEPT noexcept
extern "C" {
#else
#define FIELDSYNC_NOEXCEPT
#endif

/* ------------------------------------------------------------------------
 * Conventions (they hold for every function below unless it says otherwise)
 *
 * Errors: functions that can fail take `fieldsync_error* out_error` as their
 *   last parameter. It may be NULL. It is written only on failure; on success
 *   it is left as it was. Failure is shown by the return value: NULL for
 *   pointers, false for bool.
 * Strings in: UTF-8, NUL-terminated, borrowed for the duration of the call.
 * Strings out: `char*` results are owned by the caller, UTF-8, NUL-terminated,
 *   and must be released with fieldsync_free(). `const char*` results are
 *   static and must not be freed.
 * JSON: records, forms, queries and lists travel as JSON text (RFC 8259).
 *   The shapes are documented in docs/bindings.md.
 * Threads: a fieldsync_store may be used from any thread. Calls on one handle
 *   are serialized: a call made while another runs (a sync on a worker thread,
 *   say) waits for it. A call on a handle from inside one of that handle's
 *   callbacks fails with FIELDSYNC_ERR_INVALID_ARGUMENT instead of
 *   deadlocking. For UI reads during a long sync, open a second handle on the
 *   same path: SQLite keeps the two consistent.
 * Exceptions: none cross this boundary; every entry point is noexcept.
 * ------------------------------------------------------------------------ */

/* Incremented on every incompatible change of this header. */
#define FIELDSYNC_ABI_VERSION 1

/* Error codes. The numbers are those of fieldsync::Errc and never change. */
typedef enum fieldsync_errc {
  FIELDSYNC_OK = 0,
  FIELDSYNC_ERR_INVALID_ARGUMENT = 1,
  FIELDSYNC_ERR_VALIDATION = 2, /* `field` names the field */
  FIELDSYNC_ERR_NOT_FOUND = 3,
  FIELDSYNC_ERR_IO = 4,
  FIELDSYNC_ERR_CORRUPT = 5,
  FIELDSYNC_ERR_SCHEMA_TOO_NEW = 6,
  FIELDSYNC_ERR_DELETED = 7,
  FIELDSYNC_ERR_NETWORK = 8, /* transient */
  FIELDSYNC_ERR_TIMEOUT = 9, /* transient */
  FIELDSYNC_ERR_UNAUTHORIZED = 10,
  FIELDSYNC_ERR_FORBIDDEN = 11,
  FIELDSYNC_ERR_SERVER = 12, /* transient */
  FIELDSYNC_ERR_PROTOCOL = 13,
  FIELDSYNC_ERR_CANCELLED = 14,
  FIELDSYNC_ERR_THROTTLED = 15, /* transient */
  FIELDSYNC_ERR_PAYLOAD_TOO_LARGE = 16,
  FIELDSYNC_ERR_UNKNOWN_FORM = 17,
  FIELDSYNC_ERR_CURSOR_AHEAD = 18,
  FIELDSYNC_ERR_BUSY = 19, /* transient */
  FIELDSYNC_ERR_INTERNAL = 20,
  FIELDSYNC_ERR_TLS = 21
} fieldsync_errc;

#define FIELDSYNC_ERROR_FIELD_SIZE 128
#define FIELDSYNC_ERROR_MESSAGE_SIZE 512

/* A failure: a code, the field concerned (validation errors; else ""), and a
 * human-readable message. Both strings are NUL-terminated and truncated at a
 * UTF-8 character boundary when too long. Plain data: no freeing needed. */
typedef struct fieldsync_error {
  int32_t code; /* a fieldsync_errc value */
  char field[FIELDSYNC_ERROR_FIELD_SIZE];
  char message[FIELDSYNC_ERROR_MESSAGE_SIZE];
} fieldsync_error;

/* FIELDSYNC_ABI_VERSION of the library actually loaded; compare it with the
 * header's to detect a mismatched binary. Any thread. */
FIELDSYNC_API int32_t fieldsync_abi_version(void) FIELDSYNC_NOEXCEPT;

/* The library version, e.g. "0.1.0". Static string. Any thread. */
FIELDSYNC_API const char* fieldsync_version(void) FIELDSYNC_NOEXCEPT;

/* Releases a `char*` returned by this library. NULL is allowed. Any thread. */
FIELDSYNC_API void fieldsync_free(void* p) FIELDSYNC_NOEXCEPT;

/* True when retrying the failed operation later may succeed (network,
 * timeout, server, throttled, busy). False for NULL or FIELDSYNC_OK. */
FIELDSYNC_API bool fieldsync_error_is_transient(const fieldsync_error* error) FIELDSYNC_NOEXCEPT;

/* Stable snake_case name of a code ("validation", ...); "unknown" for a
 * number this library does not know. Static string. Any thread. */
FIELDSYNC_API const char* fieldsync_errc_name(int32_t code) FIELDSYNC_NOEXCEPT;

/* Fills `error` (NULL allowed: then nothing happens) with a code, a message
 * and an empty field. For HTTP handlers that report a failed exchange. */
FIELDSYNC_API void fieldsync_error_set(fieldsync_error* error, int32_t code,
                                       const char* message) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Store
 * ------------------------------------------------------------------------ */

typedef struct fieldsync_store fieldsync_store;

/* Opens (creating when absent) the store at `path`. `server_url`
 * ("https://host[:port][/prefix]") may be NULL or "": then the URL saved by a
 * previous open is used. A non-empty one is saved in the store. Returns NULL on
 * failure (FIELDSYNC_ERR_CORRUPT for a file that is not a fieldsync store,
 * FIELDSYNC_ERR_SCHEMA_TOO_NEW for a newer one: the file is left untouched).
 * The handle is released with fieldsync_store_close(). Any thread. */
FIELDSYNC_API fieldsync_store* fieldsync_store_open(const char* path, const char* server_url,
                                                    fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Closes the store and frees the handle. NULL is allowed. Must not be called
 * while another call on the same handle runs. Everything written before is
 * durable already. */
FIELDSYNC_API void fieldsync_store_close(fieldsync_store* store) FIELDSYNC_NOEXCEPT;

/* The device id of this store (a UUID made when the store was created). */
FIELDSYNC_API char* fieldsync_store_device_id(fieldsync_store* store,
                                              fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Counts and settings as a JSON object: {"device_id", "schema_version",
 * "records", "deleted", "pending", "rejected", "under_review", "cursor",
 * "server_url", "user", "last_sync_at"}. */
FIELDSYNC_API char* fieldsync_store_status(fieldsync_store* store,
                                           fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Salvage of a store that fieldsync_store_open() refuses as damaged
 * (FIELDSYNC_ERR_CORRUPT: truncated, pages overwritten, header lost;
 * docs/storage.md "Salvage"). Reads every row that can still be read from a
 * private copy of `path` (the file itself is never written to; a store in use
 * may be salvaged) and writes the export, JSON, to `out_path`, which must not
 * exist. Returns a JSON summary {"complete", "opened", "header_repaired",
 * "unsynced_changes", "tables": {name: {"found", "rows", "damaged_rows",
 * "unreadable", "errors", "complete"}}} to free with fieldsync_free(), or NULL
 * (FIELDSYNC_ERR_NOT_FOUND: no file at `path`; FIELDSYNC_ERR_INVALID_ARGUMENT:
 * `out_path` exists or is the store's own file). A partial export is not a
 * failure: read "complete". No handle; any thread. */
FIELDSYNC_API char* fieldsync_store_salvage(const char* path, const char* out_path,
                                            fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Forms
 * ------------------------------------------------------------------------ */

/* Imports a form definition (protocol.md "Forms", with its version). The
 * same (id, version) twice with the same definition is a no-op. */
FIELDSYNC_API bool fieldsync_form_import(fieldsync_store* store, const char* form_json,
                                         fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* The latest version of each imported form, as a JSON array of forms. */
FIELDSYNC_API char* fieldsync_form_list(fieldsync_store* store,
                                        fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */

/* Saves fields of a record and appends one change to the outbox, in one
 * transaction: durable when this returns. `request_json` is
 * {"form": "kla-desa", "scope": "14.03.01.2001", "record": "<uuid>" (absent or
 * "" = create), "fields": {"name": value, ...} (null clears),
 * "form_version": N (optional)}. Returns the record id. A value that does not
 * fit its form fails with FIELDSYNC_ERR_VALIDATION and `field` set. */
FIELDSYNC_API char* fieldsync_record_put(fieldsync_store* store, const char* request_json,
                                         fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* One record as a JSON object {"id", "form", "form_version", "scope",
 * "deleted", "dirty", "version", "under_review", "fields": {"name": {"value",
 * "version", "dirty", "under_review", ...}}}. Unknown id ->
 * FIELDSYNC_ERR_NOT_FOUND. Deleted records are returned with "deleted": true. */
FIELDSYNC_API char* fieldsync_record_get(fieldsync_store* store, const char* record_id,
                                         fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Records as a JSON array of the objects fieldsync_record_get returns.
 * `query_json` may be NULL (all live records) or {"form": "...",
 * "scope_prefix": "14.03.01", "include_deleted": false, "limit": 100}. */
FIELDSYNC_API char* fieldsync_record_list(fieldsync_store* store, const char* query_json,
                                          fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Deletes a record: a tombstone and a delete change in the outbox. */
FIELDSYNC_API bool fieldsync_record_delete(fieldsync_store* store, const char* record_id,
                                           fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Outbox, review, rejected changes, receipts
 * ------------------------------------------------------------------------ */

/* Unsynced changes in order, as a JSON array of {"counter", "change": <change
 * of protocol.md>, "attempted", "created_at"}. `limit` < 0 = all. */
FIELDSYNC_API char* fieldsync_outbox_list(fieldsync_store* store, int64_t limit,
                                          fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* What an administrator must decide: a JSON array of {"record", "form",
 * "scope", "field" ("" = the record itself: a delete or duplicate conflict),
 * "value" (what the server holds now), "my_value" (what this device offered,
 * when known), "conflict_id"}. Reads every record: call it after a sync, not
 * per keystroke. */
FIELDSYNC_API char* fieldsync_review_list(fieldsync_store* store,
                                          fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Changes the server refused, kept until discarded: a JSON array of
 * {"change": <change>, "reason": {"code", "message", "field"},
 * "rejected_at"}. */
FIELDSYNC_API char* fieldsync_rejected_list(fieldsync_store* store,
                                            fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Drops a rejected change the officer decided not to fix. Unknown id ->
 * FIELDSYNC_ERR_NOT_FOUND. */
FIELDSYNC_API bool fieldsync_rejected_discard(fieldsync_store* store, const char* change_id,
                                              fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Proof of delivery: what the server confirmed, in the store's order, as a
 * JSON array of {"change_id", "record", "status" ("applied" | "conflict"),
 * "seq", "received_at"}. `limit` < 0 = all. */
FIELDSYNC_API char* fieldsync_receipt_list(fieldsync_store* store, int64_t limit,
                                           fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Transport: the app's own HTTP stack (OkHttp, URLSession)
 * ------------------------------------------------------------------------ */

/* One HTTP exchange the library asks for. Everything is borrowed for the
 * duration of the handler call only. */
typedef struct fieldsync_http_request {
  const char* method;  /* "GET", "POST" */
  const char* url;     /* the store's server URL joined with `target` */
  const char* target;  /* path and query, e.g. "/v1/sync" */
  size_t header_count; /* headers to send, in order */
  const char* const* header_names;
  const char* const* header_values;
  const char* body; /* not NUL-terminated; may be NULL when body_size is 0 */
  size_t body_size;
  int64_t timeout_ms; /* bound for the whole exchange */
} fieldsync_http_request;

/* The answer, filled by the handler through the setters below. */
typedef struct fieldsync_http_response fieldsync_http_response;

/* Setters and getters for a response. Only valid on the response passed to a
 * handler, during that call, on that thread. Values are copied. */
FIELDSYNC_API void fieldsync_http_response_set_status(fieldsync_http_response* response,
                                                      int32_t status) FIELDSYNC_NOEXCEPT;
FIELDSYNC_API void fieldsync_http_response_add_header(fieldsync_http_response* response,
                                                      const char* name,
                                                      const char* value) FIELDSYNC_NOEXCEPT;
FIELDSYNC_API void fieldsync_http_response_set_body(fieldsync_http_response* response,
                                                    const char* body,
                                                    size_t size) FIELDSYNC_NOEXCEPT;
FIELDSYNC_API int32_t fieldsync_http_response_status(const fieldsync_http_response* response)
    FIELDSYNC_NOEXCEPT;

/* An HTTP handler. Performs the exchange synchronously and returns true when an
 * HTTP response was received - whatever its status, 4xx and 5xx included -
 * after filling `response`. Returns false when none was (no connection, reset,
 * timeout, TLS failure, cancelled) after filling `out_error` (never NULL here)
 * with FIELDSYNC_ERR_NETWORK, _TIMEOUT, _TLS or _CANCELLED, for instance with
 * fieldsync_error_set(). Runs on the thread that called fieldsync_store_login
 * or fieldsync_store_sync, during that call; must not call functions on the
 * same store handle. */
typedef bool (*fieldsync_http_fn)(void* ctx, const fieldsync_http_request* request,
                                  fieldsync_http_response* response, fieldsync_error* out_error);

/* Makes the store send its HTTP exchanges through `fn` instead of the built-in
 * client. `ctx` is passed back to every call and must stay valid until the
 * handler is replaced or the store closed. `fn` NULL restores the built-in
 * client (when the library was built with it, else login and sync fail with
 * FIELDSYNC_ERR_INVALID_ARGUMENT). */
FIELDSYNC_API bool fieldsync_store_set_http_handler(fieldsync_store* store, fieldsync_http_fn fn,
                                                    void* ctx,
                                                    fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* Runs one exchange with the built-in client against `base_url` (request's
 * `target` and headers; its `url` is ignored) and fills `response`. For
 * handlers that wrap the built-in client (logging, extra headers). Returns
 * false with FIELDSYNC_ERR_INVALID_ARGUMENT when the library was built without
 * it. Runs on the calling thread; opens a fresh connection each time. */
FIELDSYNC_API bool fieldsync_http_send(const char* base_url, const fieldsync_http_request* request,
                                       fieldsync_http_response* response,
                                       fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* ------------------------------------------------------------------------
 * Login and sync
 * ------------------------------------------------------------------------ */

/* Logs in on the store's server and keeps the session token in the store.
 * Returns the JSON object {"user": {"username", "role", "scopes"},
 * "expires_at", "features"} (the token itself stays inside). Wrong
 * credentials -> FIELDSYNC_ERR_UNAUTHORIZED. Blocks the calling thread; HTTP
 * handlers run on it. */
FIELDSYNC_API char* fieldsync_store_login(fieldsync_store* store, const char* username,
                                          const char* password,
                                          fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

/* A cancellation flag for a sync. Open one, pass it to fieldsync_store_sync,
 * and call fieldsync_cancel_request from any thread to stop the sync at its
 * next step (finished round trips stay committed; the sync then fails with
 * FIELDSYNC_ERR_CANCELLED). A request is sticky: a sync started with an
 * already-cancelled flag stops at once. Close the flag after the sync
 * returned. */
typedef struct fieldsync_cancel fieldsync_cancel;
FIELDSYNC_API fieldsync_cancel* fieldsync_cancel_open(fieldsync_error* out_error)
    FIELDSYNC_NOEXCEPT;
FIELDSYNC_API void fieldsync_cancel_request(fieldsync_cancel* cancel)
    FIELDSYNC_NOEXCEPT; /* any thread; NULL ok */
FIELDSYNC_API bool fieldsync_cancel_is_requested(const fieldsync_cancel* cancel)
    FIELDSYNC_NOEXCEPT; /* any thread */
FIELDSYNC_API void fieldsync_cancel_close(fieldsync_cancel* cancel)
    FIELDSYNC_NOEXCEPT; /* NULL ok */

/* Counters of a sync, reported after every round trip and at the end. */
typedef struct fieldsync_sync_progress {
  int64_t round_trips;
  int64_t sent; /* changes pushed and answered */
  int64_t applied;
  int64_t conflicts;
  int64_t rejected;
  int64_t received; /* log entries pulled */
  int64_t bytes_up;
  int64_t bytes_down;
  int64_t retries;
  int64_t cursor;
} fieldsync_sync_progress;

/* Called after every round trip on the thread running fieldsync_store_sync;
 * `progress` is valid during the call only. Must not call functions on the
 * same store handle. */
typedef void (*fieldsync_progress_fn)(void* ctx, const fieldsync_sync_progress* progress);

/* Syncs until the outbox is empty and the server has nothing more, a
 * permanent error, or cancellation; transient failures are retried with
 * backoff inside. Blocks the calling thread; handlers and `progress_fn` run on
 * it. Answers are committed in order, each with its cursor, so an interrupted
 * sync resumes where it stopped (the next request is sent while the previous
 * answer is committed on an internal thread, which never calls back).
 * `options_json` may be NULL or {"batch_size", "pull_limit",
 * "attempt_timeout_ms", "max_attempts", "backoff_initial_ms",
 * "backoff_max_ms", "user_agent"} (unknown members are an error).
 * `progress_fn`, `cancel` and `out_result` may be NULL. On success
 * `out_result` gets the totals. Needs a login first (else
 * FIELDSYNC_ERR_UNAUTHORIZED). */
FIELDSYNC_API bool fieldsync_store_sync(fieldsync_store* store, const char* options_json,
                                        fieldsync_progress_fn progress_fn, void* progress_ctx,
                                        const fieldsync_cancel* cancel,
                                        fieldsync_sync_progress* out_result,
                                        fieldsync_error* out_error) FIELDSYNC_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* FIELDSYNC_H */
