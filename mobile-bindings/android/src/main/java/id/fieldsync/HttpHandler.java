// The app's own HTTP stack (OkHttp, HttpURLConnection) for the library's requests.
package id.fieldsync;

import java.io.IOException;

/**
 * Performs one HTTP exchange for the library, synchronously, on the thread that called
 * {@link Store#login} or {@link Store#sync}. Return the response whatever its status (4xx
 * and 5xx included). Throw an IOException when no response was received: a
 * {@link java.net.SocketTimeoutException} counts as a timeout, a
 * {@link javax.net.ssl.SSLHandshakeException} as a TLS failure, any other IOException as a
 * network failure (retried later). Must not call methods of the same Store.
 */
@FunctionalInterface
public interface HttpHandler {
  HttpResponse execute(HttpRequest request) throws IOException;
}
