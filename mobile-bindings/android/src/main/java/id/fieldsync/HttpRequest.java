// One HTTP exchange the library asks an HttpHandler to perform.
package id.fieldsync;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** Immutable. The body is shared, not copied: do not modify it. */
public final class HttpRequest {
  private final String method;
  private final String url;
  private final String target;
  private final Map<String, String> headers;
  private final byte[] body;
  private final long timeoutMillis;

  HttpRequest(String method, String url, String target, Map<String, String> headers, byte[] body,
      long timeoutMillis) {
    this.method = method;
    this.url = url;
    this.target = target;
    this.headers = Collections.unmodifiableMap(new LinkedHashMap<>(headers));
    this.body = body;
    this.timeoutMillis = timeoutMillis;
  }

  /** "GET", "POST", ... */
  public String getMethod() {
    return method;
  }

  /** The store's server URL joined with {@link #getTarget()}. */
  public String getUrl() {
    return url;
  }

  /** Path and query, e.g. "/v1/sync". */
  public String getTarget() {
    return target;
  }

  /** Headers to send (Authorization, Content-Type, ...), in order. */
  public Map<String, String> getHeaders() {
    return headers;
  }

  /** The request body; empty for none. */
  public byte[] getBody() {
    return body;
  }

  /** Bound for the whole exchange. */
  public long getTimeoutMillis() {
    return timeoutMillis;
  }
}
