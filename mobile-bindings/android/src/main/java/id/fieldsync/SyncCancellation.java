// A flag that stops a running sync, set from any thread (a "Cancel" button).
package id.fieldsync;

/**
 * Pass it to {@link Store#sync(String, SyncProgressListener, SyncCancellation)} and call
 * {@link #cancel()} from any thread: the sync stops at its next step with a
 * {@link FieldsyncException#CANCELLED} error. Round trips already finished stay saved.
 * A cancelled flag stays cancelled; use a new one for the next sync.
 */
public final class SyncCancellation implements AutoCloseable {
  static {
    NativeLibrary.load();
  }

  private final Object lock = new Object();
  private long handle;

  public SyncCancellation() throws FieldsyncException {
    handle = nativeOpen();
  }

  /** Requests cancellation. Any thread; idempotent; no effect after close(). */
  public void cancel() {
    synchronized (lock) {
      if (handle != 0) {
        nativeRequest(handle);
      }
    }
  }

  public boolean isCancelled() {
    synchronized (lock) {
      return handle != 0 && nativeIsRequested(handle);
    }
  }

  /** Frees the flag. Do not close it while a sync that uses it runs. */
  @Override
  public void close() {
    synchronized (lock) {
      if (handle != 0) {
        nativeClose(handle);
        handle = 0;
      }
    }
  }

  long handle() {
    synchronized (lock) {
      if (handle == 0) {
        throw new IllegalStateException("the SyncCancellation is closed");
      }
      return handle;
    }
  }

  private static native long nativeOpen() throws FieldsyncException;

  private static native void nativeRequest(long handle);

  private static native boolean nativeIsRequested(long handle);

  private static native void nativeClose(long handle);
}
