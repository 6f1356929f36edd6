// Loads libfieldsync_jni once, before any native method of the binding runs.
package id.fieldsync;

final class NativeLibrary {
  static {
    System.loadLibrary("fieldsync_jni");
  }

  private NativeLibrary() {}

  /** Forces the static initializer (and so the library load) to run. */
  static void load() {}
}
