// Drives the Java API (id.fieldsync, through libfieldsync_jni) against a REAL
// fieldsync-server started by fieldsync_with_server: save offline, sync, read back
// on a second store that uses an app-side HttpHandler (HttpURLConnection, as an
// Android app would use OkHttp), a conflict under review, errors with their codes,
// the progress listener and cancellation. Uses only the public API.
package id.fieldsync.tests;

import id.fieldsync.FieldsyncException;
import id.fieldsync.HttpHandler;
import id.fieldsync.HttpRequest;
import id.fieldsync.HttpResponse;
import id.fieldsync.Store;
import id.fieldsync.SyncCancellation;
import id.fieldsync.SyncResult;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.SocketTimeoutException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

public final class StoreTest {
  private static int checks = 0;
  private static int failures = 0;

  private static void check(boolean ok, String what) {
    ++checks;
    if (!ok) {
      ++failures;
      System.err.println("CHECK FAILED: " + what);
      new Throwable().printStackTrace();
    }
  }

  private static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println("missing " + name + " (run through fieldsync_with_server)");
      System.exit(2);
    }
    return v;
  }

  private interface Action {
    void run() throws Exception;
  }

  // The FieldsyncException `action` throws, or null (a failed check) when none.
  private static FieldsyncException expectError(Action action, String what) {
    try {
      action.run();
    } catch (FieldsyncException e) {
      return e;
    } catch (Exception e) {
      check(false, what + ": threw " + e);
      return null;
    }
    check(false, what + ": did not fail");
    return null;
  }

  // An HttpHandler on HttpURLConnection: what an app does with its own HTTP stack.
  static final class UrlConnectionHandler implements HttpHandler {
    final AtomicInteger calls = new AtomicInteger();
    final List<String> targets = new ArrayList<>();

    @Override
    public HttpResponse execute(HttpRequest request) throws IOException {
      calls.incrementAndGet();
      targets.add(request.getTarget());
      HttpURLConnection c = (HttpURLConnection) new URL(request.getUrl()).openConnection();
      c.setRequestMethod(request.getMethod());
      c.setConnectTimeout((int) request.getTimeoutMillis());
      c.setReadTimeout((int) request.getTimeoutMillis());
      for (Map.Entry<String, String> h : request.getHeaders().entrySet()) {
        c.setRequestProperty(h.getKey(), h.getValue());
      }
      if (request.getBody().length > 0) {
        c.setDoOutput(true);
        try (OutputStream out = c.getOutputStream()) {
          out.write(request.getBody());
        }
      }
      int status = c.getResponseCode();
      Map<String, String> headers = new LinkedHashMap<>();
      for (Map.Entry<String, List<String>> h : c.getHeaderFields().entrySet()) {
        if (h.getKey() != null && !h.getValue().isEmpty()) {
          headers.put(h.getKey(), h.getValue().get(0));
        }
      }
      InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
      ByteArrayOutputStream body = new ByteArrayOutputStream();
      if (in != null) {
        try (InputStream s = in) {
          s.transferTo(body);
        }
      }
      c.disconnect();
      return new HttpResponse(status, headers, body.toByteArray());
    }
  }

  public static void main(String[] args) throws Exception {
    final String url = env("FIELDSYNC_TEST_SERVER_URL");
    final Path dir = Paths.get(env("FIELDSYNC_TEST_DIR"));
    final String form = env("FIELDSYNC_TEST_FORM_JSON");
    final String userA = env("FIELDSYNC_TEST_USER_A");
    final String passA = env("FIELDSYNC_TEST_PASSWORD_A");
    final String userB = env("FIELDSYNC_TEST_USER_B");
    final String passB = env("FIELDSYNC_TEST_PASSWORD_B");

    check(Store.ABI_VERSION == 1, "ABI version");
    check(!Store.libraryVersion().isEmpty(), "library version");

    final String recordId;
    final String notes = "Catatan \u2713 \uD83D\uDE00 anak";
    try (Store a = Store.open(dir.resolve("java-a.db").toString(), url)) {
      a.importForm(form);
      check(a.listForms().contains("\"bindings-test\""), "form imported");
      check(a.deviceId().length() == 36, "device id");

      // Offline save, durable, pending.
      recordId = a.putRecord("{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2001\","
          + "\"fields\":{\"desa_code\":\"14.03.01.2001\",\"children_total\":7,"
          + "\"officer_notes\":\"" + notes + "\"}}");
      check(recordId.length() == 36, "record id");
      String record = a.getRecord(recordId);
      check(record.contains("\"value\":7"), "value saved: " + record);
      check(record.contains(notes), "UTF-8 text kept across JNI: " + record);
      check(a.status().contains("\"pending\":1"), "pending 1");
      check(a.outbox(-1).contains(recordId), "outbox holds the change");

      // Errors carry their code, field and transience.
      FieldsyncException e = expectError(() -> a.putRecord("{\"form\":\"bindings-test\","
          + "\"scope\":\"14.03.01.2001\",\"fields\":{\"desa_code\":\"14.03.01.2001\","
          + "\"children_total\":-3}}"), "validation");
      if (e != null) {
        check(e.code() == FieldsyncException.VALIDATION, "validation code " + e);
        check(e.field().equals("children_total"), "validation field " + e);
        check(e.codeName().equals("validation"), "code name " + e.codeName());
        check(!e.isTransient(), "validation is not transient");
      }
      e = expectError(() -> a.getRecord("0190d1a4-0000-7000-8000-000000000000"), "not found");
      check(e != null && e.code() == FieldsyncException.NOT_FOUND, "not found code");
      e = expectError(() -> a.sync(), "sync before login");
      check(e != null && e.code() == FieldsyncException.UNAUTHORIZED, "unauthorized before login");
      e = expectError(() -> a.login(userA, "not the password"), "wrong password");
      check(e != null && e.code() == FieldsyncException.UNAUTHORIZED, "unauthorized login");

      // Login and sync with the built-in client, watching progress.
      check(a.login(userA, passA).contains(userA), "login answer names the user");
      List<SyncResult> seen = new ArrayList<>();
      SyncResult result = a.sync(seen::add);
      check(result.getApplied() == 1, "applied 1: " + result);
      check(result.getSent() == 1, "sent 1: " + result);
      check(!seen.isEmpty() && seen.size() == result.getRoundTrips(), "progress per round trip");
      check(a.status().contains("\"pending\":0"), "outbox empty after sync");
      check(a.receipts(-1).contains(recordId), "receipt for the record");

      // A listener that throws does not lose the sync; its exception comes back.
      a.putRecord("{\"form\":\"bindings-test\",\"record\":\"" + recordId + "\","
          + "\"scope\":\"14.03.01.2001\",\"fields\":{\"has_forum_anak\":true}}");
      try {
        a.sync(p -> {
          throw new IllegalStateException("listener bug");
        });
        check(false, "the listener's exception was swallowed");
      } catch (IllegalStateException expected) {
        check(expected.getMessage().equals("listener bug"), "listener exception rethrown");
      }
      check(a.status().contains("\"pending\":0"), "the sync finished despite the listener");

      // Cancellation: a cancelled flag stops the sync before any exchange.
      try (SyncCancellation cancel = new SyncCancellation()) {
        cancel.cancel();
        check(cancel.isCancelled(), "cancel flag set");
        e = expectError(() -> a.sync(null, null, cancel), "cancelled sync");
        check(e != null && e.code() == FieldsyncException.CANCELLED, "cancelled code");
      }

      // Store B reads it back through the app's own HTTP stack.
      UrlConnectionHandler handler = new UrlConnectionHandler();
      try (Store b = Store.open(dir.resolve("java-b.db").toString(), url)) {
        b.importForm(form);
        b.setHttpHandler(handler);
        b.login(userB, passB);
        SyncResult pulled = b.sync();
        check(pulled.getReceived() >= 2, "B pulled A's entries: " + pulled);
        check(handler.calls.get() >= 2, "the handler carried login and sync");
        check(handler.targets.contains("/v1/login") && handler.targets.contains("/v1/sync"),
            "handler targets " + handler.targets);
        String onB = b.getRecord(recordId);
        check(onB.contains("\"value\":7"), "B reads A's value: " + onB);
        check(onB.contains(notes), "B reads A's UTF-8 text: " + onB);
        check(onB.contains("\"has_forum_anak\":{\"dirty\":false,\"value\":true"), "B: " + onB);

        // A conflict: both change children_total; A first, so B's value is under review.
        a.putRecord("{\"form\":\"bindings-test\",\"record\":\"" + recordId + "\","
            + "\"scope\":\"14.03.01.2001\",\"fields\":{\"children_total\":8}}");
        b.putRecord("{\"form\":\"bindings-test\",\"record\":\"" + recordId + "\","
            + "\"scope\":\"14.03.01.2001\",\"fields\":{\"children_total\":9}}");
        check(a.sync().getApplied() == 1, "A's edit applied");
        check(b.sync().getConflicts() == 1, "B's edit conflicts");
        String review = b.underReview();
        check(review.contains("\"field\":\"children_total\"") && review.contains("\"my_value\":9")
            && review.contains("\"value\":8"), "B's review list: " + review);
        check(a.underReview().equals("[]"), "nothing under review on A");

        // No network in the handler: a transient error, nothing lost.
        b.putRecord("{\"form\":\"bindings-test\",\"scope\":\"14.03.01.2002\","
            + "\"fields\":{\"desa_code\":\"14.03.01.2002\"}}");
        b.setHttpHandler(request -> {
          throw new IOException("airplane mode");
        });
        e = expectError(() -> b.sync("{\"max_attempts\":1}", null, null), "no network");
        if (e != null) {
          check(e.code() == FieldsyncException.NETWORK, "network code " + e);
          check(e.isTransient(), "network is transient");
          check(e.getMessage().contains("airplane mode"), "message kept " + e);
        }
        b.setHttpHandler(request -> {
          throw new SocketTimeoutException("read timed out");
        });
        e = expectError(() -> b.sync("{\"max_attempts\":1}", null, null), "timeout");
        check(e != null && e.code() == FieldsyncException.TIMEOUT, "timeout code");
        check(b.status().contains("\"pending\":1"), "the change waits in the outbox");
        b.setHttpHandler(null);
        check(b.sync().getApplied() == 1, "built-in client again: applied");
      }
    }

    // Closed stores refuse calls; close is idempotent; reopening keeps everything.
    Store closed = Store.open(dir.resolve("java-a.db").toString());
    closed.close();
    closed.close();
    try {
      closed.status();
      check(false, "a closed store answered");
    } catch (IllegalStateException expected) {
      check(true, "closed store refuses calls");
    }
    try (Store again = Store.open(dir.resolve("java-a.db").toString())) {
      check(again.status().contains("\"server_url\":\"" + url + "\""), "server URL kept");
      check(again.getRecord(recordId).contains("\"value\":8"), "record kept");
    }
    check(Files.exists(dir.resolve("java-a.db")), "store file exists");

    System.out.println("StoreTest: " + checks + " checks, " + failures + " failed");
    System.exit(failures == 0 ? 0 : 1);
  }
}
