// A failure reported by the fieldsync library: a stable numbered code (the C ABI's
// fieldsync_errc), the field concerned for validation errors, and a message.
package id.fieldsync;

/**
 * Thrown by every {@link Store} operation that fails. {@link #code()} is one of the
 * constants below; the numbers never change. {@link #isTransient()} tells whether the
 * same operation may succeed later (no network, server busy): retry then, do not
 * bother the officer.
 */
public class FieldsyncException extends Exception {
  private static final long serialVersionUID = 1L;

  public static final int INVALID_ARGUMENT = 1;
  public static final int VALIDATION = 2;
  public static final int NOT_FOUND = 3;
  public static final int IO = 4;
  public static final int CORRUPT = 5;
  public static final int SCHEMA_TOO_NEW = 6;
  public static final int DELETED = 7;
  public static final int NETWORK = 8;
  public static final int TIMEOUT = 9;
  public static final int UNAUTHORIZED = 10;
  public static final int FORBIDDEN = 11;
  public static final int SERVER = 12;
  public static final int PROTOCOL = 13;
  public static final int CANCELLED = 14;
  public static final int THROTTLED = 15;
  public static final int PAYLOAD_TOO_LARGE = 16;
  public static final int UNKNOWN_FORM = 17;
  public static final int CURSOR_AHEAD = 18;
  public static final int BUSY = 19;
  public static final int INTERNAL = 20;
  public static final int TLS = 21;

  static {
    NativeLibrary.load();
  }

  private final int code;
  private final String field;

  public FieldsyncException(int code, String field, String message) {
    super(message);
    this.code = code;
    this.field = field == null ? "" : field;
  }

  /** The error code, one of the constants of this class. */
  public int code() {
    return code;
  }

  /** For {@link #VALIDATION} errors the field concerned, else "". */
  public String field() {
    return field;
  }

  /** The stable snake_case name of the code ("validation", "network", ...). */
  public String codeName() {
    return nativeCodeName(code);
  }

  /** True when retrying the same operation later may succeed. */
  public boolean isTransient() {
    return nativeIsTransient(code);
  }

  @Override
  public String toString() {
    return "FieldsyncException(" + codeName() + (field.isEmpty() ? "" : ", " + field) + "): "
        + getMessage();
  }

  private static native String nativeCodeName(int code);

  private static native boolean nativeIsTransient(int code);
}
