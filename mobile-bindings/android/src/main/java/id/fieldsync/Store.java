// The Java API of a fieldsync device store: surveys saved offline in a local SQLite
// file, the outbox of unsynced changes, and sync with the regency server.
package id.fieldsync;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import javax.net.ssl.SSLHandshakeException;

/**
 * A device store. Records, forms, lists and queries travel as JSON text (see
 * docs/bindings.md for the shapes); parse them with the app's JSON library.
 *
 * <p>Threads: a Store may be used from any thread; calls are serialized, so a call made
 * while a sync runs waits for it. Run {@link #sync} on a worker thread, never on the UI
 * thread; for reads during a long sync open a second Store on the same path. Every save
 * is durable when the call returns. Close it (try-with-resources) when done; a closed
 * Store throws IllegalStateException.
 */
public final class Store implements AutoCloseable {
  /** The C ABI version this binding was written for. */
  public static final int ABI_VERSION = 1;

  static {
    NativeLibrary.load();
    if (nativeAbiVersion() != ABI_VERSION) {
      throw new UnsatisfiedLinkError("libfieldsync_jni has ABI " + nativeAbiVersion()
          + ", this binding needs " + ABI_VERSION);
    }
  }

  private final ReentrantReadWriteLock closeLock = new ReentrantReadWriteLock();
  private long handle;

  private Store(long handle) {
    this.handle = handle;
  }

  /** Opens (creating when absent) the store at {@code path}, using the saved server URL. */
  public static Store open(String path) throws FieldsyncException {
    return open(path, null);
  }

  /**
   * Opens (creating when absent) the store at {@code path}. A non-null {@code serverUrl}
   * ("https://host[:port]") is saved in the store; null keeps the saved one.
   */
  public static Store open(String path, String serverUrl) throws FieldsyncException {
    if (path == null) {
      throw new NullPointerException("path");
    }
    return new Store(nativeOpen(path, serverUrl));
  }

  /** The library version, e.g. "0.1.0". */
  public static String libraryVersion() {
    return nativeVersion();
  }

  /** The device id (a UUID made when the store was created). */
  public String deviceId() throws FieldsyncException {
    return call(h -> nativeDeviceId(h));
  }

  /** Counts and settings: {"device_id", "records", "pending", "rejected", ...}. */
  public String status() throws FieldsyncException {
    return call(h -> nativeStatus(h));
  }

  /** Imports a form definition (JSON of protocol.md "Forms"). */
  public void importForm(String formJson) throws FieldsyncException {
    call(h -> {
      nativeImportForm(h, formJson);
      return null;
    });
  }

  /** The latest version of each imported form, as a JSON array. */
  public String listForms() throws FieldsyncException {
    return call(h -> nativeListForms(h));
  }

  /**
   * Saves a record: {"form", "scope", "record" (absent = create), "fields": {...}}.
   * Returns the record id. A value that does not fit the form throws a
   * {@link FieldsyncException#VALIDATION} error naming the field.
   */
  public String putRecord(String requestJson) throws FieldsyncException {
    return call(h -> nativePutRecord(h, requestJson));
  }

  /** One record as JSON; {@link FieldsyncException#NOT_FOUND} when unknown. */
  public String getRecord(String recordId) throws FieldsyncException {
    return call(h -> nativeGetRecord(h, recordId));
  }

  /** Records as a JSON array; {@code queryJson} null = all live records. */
  public String listRecords(String queryJson) throws FieldsyncException {
    return call(h -> nativeListRecords(h, queryJson));
  }

  /** Deletes a record (synced as a delete). */
  public void deleteRecord(String recordId) throws FieldsyncException {
    call(h -> {
      nativeDeleteRecord(h, recordId);
      return null;
    });
  }

  /** Unsynced changes as a JSON array; {@code limit} below 0 = all. */
  public String outbox(long limit) throws FieldsyncException {
    return call(h -> nativeOutbox(h, limit));
  }

  /** Fields (and records) under review by an administrator, as a JSON array. */
  public String underReview() throws FieldsyncException {
    return call(h -> nativeUnderReview(h));
  }

  /** Changes the server refused, with the reason, as a JSON array. */
  public String rejected() throws FieldsyncException {
    return call(h -> nativeRejected(h));
  }

  /** Drops a rejected change the officer decided not to fix. */
  public void discardRejected(String changeId) throws FieldsyncException {
    call(h -> {
      nativeDiscardRejected(h, changeId);
      return null;
    });
  }

  /** What the server confirmed, as a JSON array; {@code limit} below 0 = all. */
  public String receipts(long limit) throws FieldsyncException {
    return call(h -> nativeReceipts(h, limit));
  }

  /**
   * Sends the library's HTTP requests through {@code handler} (OkHttp, with the
   * platform's TLS and proxies) instead of the built-in client; null restores it.
   */
  public void setHttpHandler(HttpHandler handler) throws FieldsyncException {
    call(h -> {
      nativeSetHttpHandler(h, handler);
      return null;
    });
  }

  /**
   * Logs in and keeps the session in the store. Returns {"user": {...}, "expires_at",
   * "features"}. Blocks: call it on a worker thread.
   */
  public String login(String username, String password) throws FieldsyncException {
    return call(h -> nativeLogin(h, username, password));
  }

  /** Syncs until nothing is left. Blocks: call it on a worker thread. */
  public SyncResult sync() throws FieldsyncException {
    return sync(null, null, null);
  }

  /** Syncs until nothing is left, reporting progress. */
  public SyncResult sync(SyncProgressListener listener) throws FieldsyncException {
    return sync(null, listener, null);
  }

  /**
   * Syncs until nothing is left, a permanent error, or cancellation. Transient failures
   * are retried inside with backoff. {@code optionsJson} may be null or {"batch_size",
   * "pull_limit", "attempt_timeout_ms", "max_attempts", "backoff_initial_ms",
   * "backoff_max_ms", "user_agent"}; {@code listener} and {@code cancellation} may be
   * null.
   */
  public SyncResult sync(String optionsJson, SyncProgressListener listener,
      SyncCancellation cancellation) throws FieldsyncException {
    long cancelHandle = cancellation == null ? 0 : cancellation.handle();
    return call(h -> nativeSync(h, optionsJson, listener, cancelHandle));
  }

  /** Closes the store, waiting for a call running on another thread. Idempotent. */
  @Override
  public void close() {
    if (closeLock.getReadHoldCount() > 0) {
      throw new IllegalStateException("Store.close() called from inside one of its callbacks");
    }
    closeLock.writeLock().lock();
    try {
      if (handle != 0) {
        nativeClose(handle);
        handle = 0;
      }
    } finally {
      closeLock.writeLock().unlock();
    }
  }

  private interface NativeCall<T> {
    T run(long handle) throws FieldsyncException;
  }

  // Runs a native call with the handle, keeping close() out until it returns.
  private <T> T call(NativeCall<T> body) throws FieldsyncException {
    closeLock.readLock().lock();
    try {
      if (handle == 0) {
        throw new IllegalStateException("the Store is closed");
      }
      return body.run(handle);
    } finally {
      closeLock.readLock().unlock();
    }
  }

  // Outcome of an HttpHandler call, read by the JNI glue.
  static final class HandlerOutcome {
    final HttpResponse response;
    final int failureCode;
    final String failureMessage;

    HandlerOutcome(HttpResponse response, int failureCode, String failureMessage) {
      this.response = response;
      this.failureCode = failureCode;
      this.failureMessage = failureMessage;
    }
  }

  // Called by the JNI glue on the syncing thread for every HTTP exchange.
  static HandlerOutcome invokeHandler(HttpHandler handler, String method, String url,
      String target, String[] headerNames, String[] headerValues, byte[] body,
      long timeoutMillis) {
    Map<String, String> headers = new LinkedHashMap<>();
    for (int i = 0; i < headerNames.length; ++i) {
      headers.put(headerNames[i], headerValues[i]);
    }
    HttpRequest request = new HttpRequest(method, url, target, headers, body, timeoutMillis);
    try {
      HttpResponse response = handler.execute(request);
      if (response == null) {
        return new HandlerOutcome(null, FieldsyncException.INTERNAL,
            "the HttpHandler returned null");
      }
      return new HandlerOutcome(response, 0, null);
    } catch (InterruptedIOException e) {
      return new HandlerOutcome(null, FieldsyncException.TIMEOUT, String.valueOf(e));
    } catch (SSLHandshakeException e) {
      return new HandlerOutcome(null, FieldsyncException.TLS, String.valueOf(e));
    } catch (IOException e) {
      return new HandlerOutcome(null, FieldsyncException.NETWORK, String.valueOf(e));
    } catch (RuntimeException e) {
      return new HandlerOutcome(null, FieldsyncException.INTERNAL,
          "the HttpHandler threw " + e);
    }
  }

  private static native int nativeAbiVersion();

  private static native String nativeVersion();

  private static native long nativeOpen(String path, String serverUrl)
      throws FieldsyncException;

  private static native void nativeClose(long handle);

  private static native String nativeDeviceId(long handle) throws FieldsyncException;

  private static native String nativeStatus(long handle) throws FieldsyncException;

  private static native void nativeImportForm(long handle, String formJson)
      throws FieldsyncException;

  private static native String nativeListForms(long handle) throws FieldsyncException;

  private static native String nativePutRecord(long handle, String requestJson)
      throws FieldsyncException;

  private static native String nativeGetRecord(long handle, String recordId)
      throws FieldsyncException;

  private static native String nativeListRecords(long handle, String queryJson)
      throws FieldsyncException;

  private static native void nativeDeleteRecord(long handle, String recordId)
      throws FieldsyncException;

  private static native String nativeOutbox(long handle, long limit) throws FieldsyncException;

  private static native String nativeUnderReview(long handle) throws FieldsyncException;

  private static native String nativeRejected(long handle) throws FieldsyncException;

  private static native void nativeDiscardRejected(long handle, String changeId)
      throws FieldsyncException;

  private static native String nativeReceipts(long handle, long limit)
      throws FieldsyncException;

  private static native void nativeSetHttpHandler(long handle, HttpHandler handler)
      throws FieldsyncException;

  private static native String nativeLogin(long handle, String username, String password)
      throws FieldsyncException;

  private static native SyncResult nativeSync(long handle, String optionsJson,
      SyncProgressListener listener, long cancelHandle) throws FieldsyncException;
}
