// Counters of a sync: the totals when it ends, and the progress so far for listeners.
package id.fieldsync;

/** What a sync did. Immutable. */
public final class SyncResult {
  private final long roundTrips;
  private final long sent;
  private final long applied;
  private final long conflicts;
  private final long rejected;
  private final long received;
  private final long bytesUp;
  private final long bytesDown;
  private final long retries;
  private final long cursor;

  // Called from the JNI glue (its signature is part of the glue's contract).
  SyncResult(long roundTrips, long sent, long applied, long conflicts, long rejected,
      long received, long bytesUp, long bytesDown, long retries, long cursor) {
    this.roundTrips = roundTrips;
    this.sent = sent;
    this.applied = applied;
    this.conflicts = conflicts;
    this.rejected = rejected;
    this.received = received;
    this.bytesUp = bytesUp;
    this.bytesDown = bytesDown;
    this.retries = retries;
    this.cursor = cursor;
  }

  /** HTTP round trips made. */
  public long getRoundTrips() {
    return roundTrips;
  }

  /** Changes pushed and answered by the server. */
  public long getSent() {
    return sent;
  }

  /** Changes the server applied. */
  public long getApplied() {
    return applied;
  }

  /** Changes that opened or joined a conflict: their fields are under review. */
  public long getConflicts() {
    return conflicts;
  }

  /** Changes the server refused; see {@link Store#rejected()}. */
  public long getRejected() {
    return rejected;
  }

  /** Log entries pulled from the server. */
  public long getReceived() {
    return received;
  }

  public long getBytesUp() {
    return bytesUp;
  }

  public long getBytesDown() {
    return bytesDown;
  }

  /** Attempts repeated after a transient failure. */
  public long getRetries() {
    return retries;
  }

  /** The server log position this store has pulled up to. */
  public long getCursor() {
    return cursor;
  }

  @Override
  public String toString() {
    return "SyncResult{roundTrips=" + roundTrips + ", sent=" + sent + ", applied=" + applied
        + ", conflicts=" + conflicts + ", rejected=" + rejected + ", received=" + received
        + ", bytesUp=" + bytesUp + ", bytesDown=" + bytesDown + ", retries=" + retries
        + ", cursor=" + cursor + "}";
  }
}
