// Callback for the progress of a sync.
package id.fieldsync;

/**
 * Receives the counters so far after every round trip, on the thread that called
 * {@link Store#sync}. Must not call methods of the same Store (they would fail);
 * post to the UI thread instead. An exception thrown here does not stop the sync; the
 * first one is rethrown by {@code sync} when it returns.
 */
@FunctionalInterface
public interface SyncProgressListener {
  void onProgress(SyncResult soFar);
}
