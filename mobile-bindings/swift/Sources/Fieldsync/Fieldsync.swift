// The Swift API of a fieldsync device store: a thin wrapper over the C ABI
// (fieldsync.h) with `throws`, Codable records and async sync. Every call goes
// through the C functions; all rules (threads, durability, errors) are theirs.
import CFieldsync
import Foundation

// MARK: - Errors

/// A failure of the library: a stable numbered code (fieldsync_errc), the field
/// concerned for validation errors, and a message.
public struct FieldsyncError: Error, CustomStringConvertible {
  public let code: Int32
  public let field: String
  public let message: String

  init(_ e: fieldsync_error) {
    var copy = e
    code = copy.code
    field = withUnsafeBytes(of: &copy.field) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    message = withUnsafeBytes(of: &copy.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
  }

  /// True when retrying later may succeed (no network, server busy).
  public var isTransient: Bool {
    var e = fieldsync_error()
    e.code = code
    return fieldsync_error_is_transient(&e)
  }

  /// "validation", "network", ...
  public var codeName: String { String(cString: fieldsync_errc_name(code)) }

  public var description: String {
    "\(codeName)\(field.isEmpty ? "" : " (\(field))"): \(message)"
  }

  public static let validation = Int32(FIELDSYNC_ERR_VALIDATION.rawValue)
  public static let notFound = Int32(FIELDSYNC_ERR_NOT_FOUND.rawValue)
  public static let network = Int32(FIELDSYNC_ERR_NETWORK.rawValue)
  public static let timeout = Int32(FIELDSYNC_ERR_TIMEOUT.rawValue)
  public static let unauthorized = Int32(FIELDSYNC_ERR_UNAUTHORIZED.rawValue)
  public static let cancelled = Int32(FIELDSYNC_ERR_CANCELLED.rawValue)
  public static let tls = Int32(FIELDSYNC_ERR_TLS.rawValue)
}

// Calls a C function that returns a `char*` to free, and decodes nothing.
private func takeString(_ call: (UnsafeMutablePointer<fieldsync_error>) -> UnsafeMutablePointer<CChar>?) throws -> String {
  var error = fieldsync_error()
  guard let p = call(&error) else { throw FieldsyncError(error) }
  defer { fieldsync_free(p) }
  return String(cString: p)
}

private func check(_ call: (UnsafeMutablePointer<fieldsync_error>) -> Bool) throws {
  var error = fieldsync_error()
  if !call(&error) { throw FieldsyncError(error) }
}

private func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
  try JSONDecoder().decode(T.self, from: Data(text.utf8))
}

private func encode<T: Encodable>(_ value: T) throws -> String {
  String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
}

// MARK: - JSON values and records

/// Any JSON value: field values are integers, decimals, text, booleans, dates
/// ("YYYY-MM-DD"), choices, arrays or {"lat", "lon"} objects.
public enum JSONValue: Codable, Equatable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() { self = .null }
    else if let b = try? c.decode(Bool.self) { self = .bool(b) }
    else if let i = try? c.decode(Int64.self) { self = .int(i) }
    else if let d = try? c.decode(Double.self) { self = .double(d) }
    else if let s = try? c.decode(String.self) { self = .string(s) }
    else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
    else { self = .object(try c.decode([String: JSONValue].self)) }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .null: try c.encodeNil()
    case .bool(let b): try c.encode(b)
    case .int(let i): try c.encode(i)
    case .double(let d): try c.encode(d)
    case .string(let s): try c.encode(s)
    case .array(let a): try c.encode(a)
    case .object(let o): try c.encode(o)
    }
  }
}

public struct FieldState: Codable {
  public let value: JSONValue
  public let version: Int64
  public let dirty: Bool
  public let underReview: Bool?
  public let myValue: JSONValue?
  public let conflict: Int64?

  enum CodingKeys: String, CodingKey {
    case value, version, dirty, conflict
    case underReview = "under_review"
    case myValue = "my_value"
  }
}

public struct Record: Codable {
  public let id: String
  public let form: String
  public let formVersion: Int64
  public let scope: String
  public let deleted: Bool
  public let dirty: Bool
  public let version: Int64
  public let underReview: Bool
  public let fields: [String: FieldState]

  enum CodingKeys: String, CodingKey {
    case id, form, scope, deleted, dirty, version, fields
    case formVersion = "form_version"
    case underReview = "under_review"
  }
}

public struct RecordQuery: Codable {
  public var form: String?
  public var scopePrefix: String?
  public var includeDeleted: Bool?
  public var limit: Int64?
  public init(form: String? = nil, scopePrefix: String? = nil, includeDeleted: Bool? = nil,
              limit: Int64? = nil) {
    self.form = form
    self.scopePrefix = scopePrefix
    self.includeDeleted = includeDeleted
    self.limit = limit
  }
  enum CodingKeys: String, CodingKey {
    case form, limit
    case scopePrefix = "scope_prefix"
    case includeDeleted = "include_deleted"
  }
}

private struct PutRequest: Encodable {
  let form: String
  let scope: String
  let record: String?
  let fields: [String: JSONValue]
}

public struct ReviewItem: Codable {
  public let record: String
  public let form: String
  public let scope: String
  public let field: String
  public let value: JSONValue
  public let myValue: JSONValue
  public let conflictId: Int64
  enum CodingKeys: String, CodingKey {
    case record, form, scope, field, value
    case myValue = "my_value"
    case conflictId = "conflict_id"
  }
}

public struct StoreStatus: Codable {
  public let deviceId: String
  public let records: Int64
  public let deleted: Int64
  public let pending: Int64
  public let rejected: Int64
  public let underReview: Int64
  public let cursor: Int64
  public let serverUrl: String
  public let user: String
  public let lastSyncAt: String
  enum CodingKeys: String, CodingKey {
    case records, deleted, pending, rejected, cursor, user
    case deviceId = "device_id"
    case underReview = "under_review"
    case serverUrl = "server_url"
    case lastSyncAt = "last_sync_at"
  }
}

/// Counters of a sync.
public struct SyncProgress {
  public let roundTrips, sent, applied, conflicts, rejected, received: Int64
  public let bytesUp, bytesDown, retries, cursor: Int64

  init(_ p: fieldsync_sync_progress) {
    roundTrips = p.round_trips; sent = p.sent; applied = p.applied; conflicts = p.conflicts
    rejected = p.rejected; received = p.received; bytesUp = p.bytes_up
    bytesDown = p.bytes_down; retries = p.retries; cursor = p.cursor
  }
}

// MARK: - HTTP through URLSession

public struct HTTPRequest {
  public let method: String
  public let url: String
  public let headers: [(String, String)]
  public let body: Data
  public let timeout: TimeInterval
}

public struct HTTPResponse {
  public var status: Int
  public var headers: [(String, String)]
  public var body: Data
  public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
    self.status = status
    self.headers = headers
    self.body = body
  }
}

/// Performs one exchange synchronously on the syncing thread. Throw a
/// URLError when no response came: timedOut -> timeout, secure-connection
/// errors -> TLS, anything else -> network (retried later).
public typealias HTTPHandler = (HTTPRequest) throws -> HTTPResponse

/// An HTTPHandler on URLSession (the platform's TLS, proxies and pinning).
public func urlSessionHandler(_ session: URLSession = .shared) -> HTTPHandler {
  return { request in
    guard let url = URL(string: request.url) else { throw URLError(.badURL) }
    var r = URLRequest(url: url, timeoutInterval: request.timeout)
    r.httpMethod = request.method
    for (name, value) in request.headers { r.addValue(value, forHTTPHeaderField: name) }
    if !request.body.isEmpty { r.httpBody = request.body }
    let done = DispatchSemaphore(value: 0)
    var result: Result<HTTPResponse, Error> = .failure(URLError(.unknown))
    session.dataTask(with: r) { data, response, error in
      if let error = error {
        result = .failure(error)
      } else if let http = response as? HTTPURLResponse {
        let headers = http.allHeaderFields.map { ("\($0.key)", "\($0.value)") }
        result = .success(HTTPResponse(status: http.statusCode, headers: headers, body: data ?? Data()))
      }
      done.signal()
    }.resume()
    done.wait()
    return try result.get()
  }
}

private final class HandlerBox {
  let handler: HTTPHandler
  init(_ handler: @escaping HTTPHandler) { self.handler = handler }
}

private func failureCode(_ error: Error) -> Int32 {
  if let u = error as? URLError {
    switch u.code {
    case .timedOut: return FieldsyncError.timeout
    case .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
         .serverCertificateHasUnknownRoot, .secureConnectionFailed, .clientCertificateRejected:
      return FieldsyncError.tls
    case .cancelled: return FieldsyncError.cancelled
    default: return FieldsyncError.network
    }
  }
  return FieldsyncError.network
}

// The fieldsync_http_fn every Swift handler goes through.
private let httpTrampoline: fieldsync_http_fn = { ctx, request, response, outError in
  guard let ctx = ctx, let r = request?.pointee else { return false }
  let box = Unmanaged<HandlerBox>.fromOpaque(ctx).takeUnretainedValue()
  var headers: [(String, String)] = []
  for i in 0..<r.header_count {
    headers.append((String(cString: r.header_names[i]!), String(cString: r.header_values[i]!)))
  }
  let body = r.body_size > 0 ? Data(bytes: r.body, count: r.body_size) : Data()
  let req = HTTPRequest(method: String(cString: r.method), url: String(cString: r.url),
                        headers: headers, body: body, timeout: Double(r.timeout_ms) / 1000)
  do {
    let answer = try box.handler(req)
    fieldsync_http_response_set_status(response, Int32(answer.status))
    for (name, value) in answer.headers { fieldsync_http_response_add_header(response, name, value) }
    answer.body.withUnsafeBytes { raw in
      fieldsync_http_response_set_body(response, raw.bindMemory(to: CChar.self).baseAddress, answer.body.count)
    }
    return true
  } catch {
    fieldsync_error_set(outError, failureCode(error), "\(error)")
    return false
  }
}

// MARK: - Cancellation

/// Stops a running sync from any thread; stays cancelled once requested.
public final class SyncCancellation {
  let handle: OpaquePointer
  public init() throws {
    var error = fieldsync_error()
    guard let h = fieldsync_cancel_open(&error) else { throw FieldsyncError(error) }
    handle = h
  }
  deinit { fieldsync_cancel_close(handle) }
  public func cancel() { fieldsync_cancel_request(handle) }
  public var isCancelled: Bool { fieldsync_cancel_is_requested(handle) }
}

// MARK: - Store

/// A device store. Usable from any thread (the library serializes calls); run
/// `sync` off the main thread, or use the async variant.
public final class Store {
  private let handle: OpaquePointer
  private var handlerBox: Unmanaged<HandlerBox>?

  /// Opens (creating when absent) the store at `path`; `serverURL` nil keeps the saved one.
  public init(path: String, serverURL: String? = nil) throws {
    var error = fieldsync_error()
    guard let h = fieldsync_store_open(path, serverURL, &error) else { throw FieldsyncError(error) }
    handle = h
  }

  deinit {
    fieldsync_store_close(handle)
    handlerBox?.release()
  }

  public static var abiVersion: Int32 { fieldsync_abi_version() }

  public func deviceId() throws -> String { try takeString { fieldsync_store_device_id(handle, $0) } }

  public func status() throws -> StoreStatus {
    try decode(StoreStatus.self, try takeString { fieldsync_store_status(handle, $0) })
  }

  public func importForm(json: String) throws { try check { fieldsync_form_import(handle, json, $0) } }

  /// Saves fields of a record (nil `record` creates one); returns its id.
  @discardableResult
  public func put(form: String, scope: String, record: String? = nil,
                  fields: [String: JSONValue]) throws -> String {
    let request = try encode(PutRequest(form: form, scope: scope, record: record, fields: fields))
    return try takeString { fieldsync_record_put(handle, request, $0) }
  }

  public func record(_ id: String) throws -> Record {
    try decode(Record.self, try takeString { fieldsync_record_get(handle, id, $0) })
  }

  public func records(_ query: RecordQuery = RecordQuery()) throws -> [Record] {
    let q = try encode(query)
    return try decode([Record].self, try takeString { fieldsync_record_list(handle, q, $0) })
  }

  public func delete(_ id: String) throws { try check { fieldsync_record_delete(handle, id, $0) } }

  /// Unsynced changes, as JSON text (protocol.md changes).
  public func outboxJSON(limit: Int64 = -1) throws -> String {
    try takeString { fieldsync_outbox_list(handle, limit, $0) }
  }

  public func underReview() throws -> [ReviewItem] {
    try decode([ReviewItem].self, try takeString { fieldsync_review_list(handle, $0) })
  }

  /// Refused changes with their reasons, as JSON text.
  public func rejectedJSON() throws -> String { try takeString { fieldsync_rejected_list(handle, $0) } }

  public func discardRejected(changeId: String) throws {
    try check { fieldsync_rejected_discard(handle, changeId, $0) }
  }

  public func receiptsJSON(limit: Int64 = -1) throws -> String {
    try takeString { fieldsync_receipt_list(handle, limit, $0) }
  }

  /// Sends HTTP through `handler` (e.g. `urlSessionHandler()`); nil restores the built-in client.
  public func setHTTPHandler(_ handler: HTTPHandler?) throws {
    let box = handler.map { Unmanaged.passRetained(HandlerBox($0)) }
    do {
      try check { fieldsync_store_set_http_handler(handle, box == nil ? nil : httpTrampoline,
                                                   box?.toOpaque(), $0) }
    } catch {
      box?.release()
      throw error
    }
    handlerBox?.release()
    handlerBox = box
  }

  /// Logs in; returns the JSON {"user", "expires_at", "features"}.
  @discardableResult
  public func login(username: String, password: String) throws -> String {
    try takeString { fieldsync_store_login(handle, username, password, $0) }
  }

  /// Syncs until nothing is left. Blocks the calling thread; `progress` runs on it.
  public func sync(optionsJSON: String? = nil, cancellation: SyncCancellation? = nil,
                   progress: ((SyncProgress) -> Void)? = nil) throws -> SyncProgress {
    final class ProgressBox { let f: (SyncProgress) -> Void; init(_ f: @escaping (SyncProgress) -> Void) { self.f = f } }
    let box = progress.map(ProgressBox.init)
    let trampoline: fieldsync_progress_fn = { ctx, p in
      guard let ctx = ctx, let p = p else { return }
      Unmanaged<ProgressBox>.fromOpaque(ctx).takeUnretainedValue().f(SyncProgress(p.pointee))
    }
    var result = fieldsync_sync_progress()
    var error = fieldsync_error()
    let ok = withExtendedLifetime(box) {
      fieldsync_store_sync(handle, optionsJSON, box == nil ? nil : trampoline,
                           box.map { Unmanaged.passUnretained($0).toOpaque() },
                           cancellation?.handle, &result, &error)
    }
    if !ok { throw FieldsyncError(error) }
    return SyncProgress(result)
  }

  /// Syncs on a background thread; cancelling the Task cancels the sync.
  @available(iOS 13.0, macOS 10.15, *)
  public func sync(optionsJSON: String? = nil,
                   progress: ((SyncProgress) -> Void)? = nil) async throws -> SyncProgress {
    let cancellation = try SyncCancellation()
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
          continuation.resume(with: Result {
            try self.sync(optionsJSON: optionsJSON, cancellation: cancellation, progress: progress)
          })
        }
      }
    } onCancel: {
      cancellation.cancel()
    }
  }
}
