// The answer an HttpHandler returns for one exchange.
package id.fieldsync;

import java.util.Map;

/** A received HTTP response: status, headers and body. */
public final class HttpResponse {
  // Read by the JNI glue.
  final int status;
  final String[] headerNames;
  final String[] headerValues;
  final byte[] body;

  public HttpResponse(int status, Map<String, String> headers, byte[] body) {
    this.status = status;
    int n = headers == null ? 0 : headers.size();
    this.headerNames = new String[n];
    this.headerValues = new String[n];
    if (headers != null) {
      int i = 0;
      for (Map.Entry<String, String> e : headers.entrySet()) {
        headerNames[i] = e.getKey();
        headerValues[i] = e.getValue() == null ? "" : e.getValue();
        ++i;
      }
    }
    this.body = body == null ? new byte[0] : body;
  }

  public int getStatus() {
    return status;
  }
}
