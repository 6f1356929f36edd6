// swift-tools-version:5.7
// The fieldsync Swift package: a thin Swift API (Fieldsync) over the C ABI
// (CFieldsync = include/fieldsync.h), for iOS apps. The native library comes as an
// XCFramework built by build-xcframework.sh (docs/bindings.md); for a macOS
// development build against a libfieldsync installed by CMake, set
// FIELDSYNC_SWIFT_SYSTEM_LIBRARY=1 to use the system-library module map instead.
import PackageDescription
import Foundation

let useSystemLibrary = ProcessInfo.processInfo.environment["FIELDSYNC_SWIFT_SYSTEM_LIBRARY"] == "1"

let cTarget: Target = useSystemLibrary
  ? .systemLibrary(name: "CFieldsync", path: "Sources/CFieldsync")
  : .binaryTarget(name: "CFieldsync", path: "CFieldsync.xcframework")

let package = Package(
  name: "Fieldsync",
  platforms: [.iOS(.v13), .macOS(.v11)],
  products: [
    .library(name: "Fieldsync", targets: ["Fieldsync"])
  ],
  targets: [
    cTarget,
    .target(
      name: "Fieldsync",
      dependencies: ["CFieldsync"],
      path: "Sources/Fieldsync",
      linkerSettings: [.linkedLibrary("sqlite3"), .linkedLibrary("c++")]),
  ]
)
