/*
 * The Phantom C API. Generated from crates/phantom-ffi by `cargo xtask header`
 * (cbindgen); do not edit by hand.
 *
 * Ownership: every handle (PhantomEndpoint, PhantomConnection, PhantomStream)
 * is created by the library and freed once with its phantom_*_free function;
 * buffers the library returns are freed with phantom_bytes_free; pointers
 * passed in are borrowed for the call only. Every fallible call returns a
 * PhantomStatus (0 = PHANTOM_STATUS_OK) and leaves a message for
 * phantom_last_error_message() on the calling thread. The library runs its
 * own I/O threads; blocking calls park the calling thread.
 */

#ifndef PHANTOM_H
#define PHANTOM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/**
 * What every fallible `phantom_*` call returns. `PHANTOM_STATUS_OK` is zero; on any
 * other value, `phantom_last_error_message()` describes the failure.
 */
typedef enum PhantomStatus {
  /**
   * Success.
   */
  PHANTOM_STATUS_OK = 0,
  /**
   * A required pointer argument was null.
   */
  PHANTOM_STATUS_NULL_POINTER = 1,
  /**
   * An argument is unusable: a string that is not UTF-8, an address that does not
   * parse or cannot be used, a key that does not decode.
   */
  PHANTOM_STATUS_INVALID_ARGUMENT = 2,
  /**
   * A socket or file operation failed.
   */
  PHANTOM_STATUS_IO = 3,
  /**
   * The server proved a key other than the pinned one.
   */
  PHANTOM_STATUS_WRONG_SERVER_KEY = 4,
  /**
   * The peer did not answer in time (silent, or every answer was damaged or not for
   * this handshake), or a wait given a timeout expired.
   */
  PHANTOM_STATUS_TIMEOUT = 5,
  /**
   * The handshake failed for another reason.
   */
  PHANTOM_STATUS_HANDSHAKE = 6,
  /**
   * The connection is closed (by either side, or after an idle timeout).
   */
  PHANTOM_STATUS_CLOSED = 7,
  /**
   * The stream was reset or stopped by the peer, or the session refused the
   * operation on it.
   */
  PHANTOM_STATUS_STREAM = 8,
  /**
   * The endpoint is closed.
   */
  PHANTOM_STATUS_ENDPOINT_CLOSED = 9,
  /**
   * `phantom_endpoint_accept` was called on a client endpoint.
   */
  PHANTOM_STATUS_NOT_SERVER = 10,
  /**
   * The caller's buffer is too small; the length needed is in the length out-param.
   */
  PHANTOM_STATUS_BUFFER_TOO_SMALL = 11,
  /**
   * The library failed internally (the runtime could not start, or a bug was caught
   * before it could cross into C).
   */
  PHANTOM_STATUS_INTERNAL = 12,
} PhantomStatus;

/**
 * An established connection. Opaque; free with `phantom_connection_free`.
 */
typedef struct PhantomConnection PhantomConnection;

/**
 * A UDP endpoint (server or client) and its sessions. Opaque; free with
 * `phantom_endpoint_free`.
 */
typedef struct PhantomEndpoint PhantomEndpoint;

/**
 * A bidirectional stream. Opaque; free with `phantom_stream_free`. Its reading and
 * writing halves may be used from two threads at once.
 */
typedef struct PhantomStream PhantomStream;

/**
 * Connection counters, filled by `phantom_connection_stats`.
 */
typedef struct PhantomStats {
  /**
   * Datagrams sent.
   */
  uint64_t packets_sent;
  /**
   * Datagrams received and authenticated.
   */
  uint64_t packets_received;
  /**
   * Datagram bytes sent.
   */
  uint64_t bytes_sent;
  /**
   * Authenticated datagram bytes received.
   */
  uint64_t bytes_received;
  /**
   * Stream payload bytes sent, retransmissions included.
   */
  uint64_t stream_bytes_sent;
  /**
   * Stream payload bytes retransmitted.
   */
  uint64_t stream_bytes_retransmitted;
  /**
   * Packets declared lost.
   */
  uint64_t packets_lost;
  /**
   * Rekeys of our sending direction.
   */
  uint64_t rekeys_local;
  /**
   * Paths validated.
   */
  uint64_t paths_validated;
  /**
   * Smoothed RTT of the primary path, microseconds.
   */
  uint64_t rtt_us;
  /**
   * Congestion window of the primary path, bytes.
   */
  uint64_t cwnd;
} PhantomStats;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The message of the last failed `phantom_*` call on this thread (UTF-8, never
 * null; empty if no call has failed). The pointer stays valid until the next failing
 * call on this thread; the library owns it: do not free it.
 */
const char *phantom_last_error_message(void);

/**
 * Generates a server identity (a long-term signing key and a certified static key).
 *
 * On success `*secret_key` receives the identity's secret encoding (what a server
 * needs: pass it to `phantom_server_new`) and `*public_key` the public key clients
 * pin (raw bytes), each with its length. Both buffers belong to the caller, who
 * frees each with `phantom_bytes_free(ptr, len)` (which zeroes it first).
 *
 * # Safety
 * Each out-pointer is null (refused with `PHANTOM_STATUS_NULL_POINTER`) or valid for
 * one write.
 */
enum PhantomStatus phantom_keygen(uint8_t **secret_key,
                                  size_t *secret_key_len,
                                  uint8_t **public_key,
                                  size_t *public_key_len);

/**
 * Zeroes and frees a buffer the library returned (`phantom_keygen`). Null is ignored.
 *
 * # Safety
 * `ptr` and `len` are exactly a pointer and length returned together by this
 * library, not freed before.
 */
void phantom_bytes_free(uint8_t *ptr, size_t len);

/**
 * Generates a server identity into directory `dir` (created if missing), in the
 * formats `phantom keygen` writes: `server.key` (secret, mode 0600), `server.pub`
 * (the public key, hex) and `server.cert` (the signed certificate, raw bytes).
 *
 * # Safety
 * `dir` is null or a NUL-terminated string.
 */
enum PhantomStatus phantom_keygen_files(const char *dir);

/**
 * Creates a server endpoint listening on UDP `listen` (e.g. `"127.0.0.1:4433"`; port
 * 0 picks one: see `phantom_endpoint_local_addr`) with the identity whose secret
 * encoding is `secret_key[0..secret_key_len]` (from `phantom_keygen`, or the
 * contents of `server.key`). On success `*out` is a new endpoint the caller frees
 * with `phantom_endpoint_free`.
 *
 * # Safety
 * `listen` is null or NUL-terminated; `secret_key` points to `secret_key_len`
 * readable bytes; `out` is null or writable.
 */
enum PhantomStatus phantom_server_new(const char *listen,
                                      const uint8_t *secret_key,
                                      size_t secret_key_len,
                                      struct PhantomEndpoint **out);

/**
 * Creates a client endpoint bound to `bind` (e.g. `"127.0.0.1:0"`). On success
 * `*out` is a new endpoint the caller frees with `phantom_endpoint_free`.
 *
 * # Safety
 * `bind` is null or NUL-terminated; `out` is null or writable.
 */
enum PhantomStatus phantom_client_new(const char *bind, struct PhantomEndpoint **out);

/**
 * Writes the endpoint's local address (`ip:port`, NUL-terminated) into
 * `buf[0..buf_len]`. `PHANTOM_STATUS_BUFFER_TOO_SMALL` if it does not fit (64 bytes
 * always do).
 *
 * # Safety
 * `endpoint` is null or live; `buf` points to `buf_len` writable bytes.
 */
enum PhantomStatus phantom_endpoint_local_addr(const struct PhantomEndpoint *endpoint,
                                               char *buf,
                                               size_t buf_len);

/**
 * Server: waits for the next incoming connection, up to `timeout_ms` (0: no limit).
 * On success `*out` is a new connection the caller frees with
 * `phantom_connection_free`.
 *
 * # Safety
 * `endpoint` is null or live; `out` is null or writable.
 */
enum PhantomStatus phantom_endpoint_accept(const struct PhantomEndpoint *endpoint,
                                           uint32_t timeout_ms,
                                           struct PhantomConnection **out);

/**
 * Client: connects to the server at `server` (`host:port`), which must prove the
 * pinned public key `server_key[0..server_key_len]` (raw bytes, or the hex text of
 * `server.pub`). Gives up after `timeout_ms` (0: 10 s). A server proving another key
 * fails with `PHANTOM_STATUS_WRONG_SERVER_KEY`; no answer with
 * `PHANTOM_STATUS_TIMEOUT`. On success `*out` is a new connection the caller frees
 * with `phantom_connection_free`.
 *
 * # Safety
 * `endpoint` is null or live; `server` is null or NUL-terminated; `server_key`
 * points to `server_key_len` readable bytes; `out` is null or writable.
 */
enum PhantomStatus phantom_endpoint_connect(const struct PhantomEndpoint *endpoint,
                                            const char *server,
                                            const uint8_t *server_key,
                                            size_t server_key_len,
                                            uint32_t timeout_ms,
                                            struct PhantomConnection **out);

/**
 * Closes every session of the endpoint and waits up to `wait_ms` for them to drain
 * (their close frames to leave). The handle must still be freed.
 *
 * # Safety
 * `endpoint` is null or live.
 */
enum PhantomStatus phantom_endpoint_close(const struct PhantomEndpoint *endpoint, uint32_t wait_ms);

/**
 * Frees an endpoint handle (its sessions live on while connection handles remain).
 * Null is ignored.
 *
 * # Safety
 * `endpoint` is null or a live endpoint not in use by another thread; it is invalid
 * afterwards.
 */
void phantom_endpoint_free(struct PhantomEndpoint *endpoint);

/**
 * Opens a bidirectional stream (waiting while the peer's stream limit is reached).
 * On success `*out` is a new stream the caller frees with `phantom_stream_free`.
 *
 * # Safety
 * `connection` is null or live; `out` is null or writable.
 */
enum PhantomStatus phantom_connection_open_stream(const struct PhantomConnection *connection,
                                                  struct PhantomStream **out);

/**
 * Waits up to `timeout_ms` (0: no limit) for the peer to open a bidirectional
 * stream. On success `*out` is a new stream the caller frees with
 * `phantom_stream_free`.
 *
 * # Safety
 * `connection` is null or live; `out` is null or writable.
 */
enum PhantomStatus phantom_connection_accept_stream(const struct PhantomConnection *connection,
                                                    uint32_t timeout_ms,
                                                    struct PhantomStream **out);

/**
 * The stream's id (0 for a null handle).
 *
 * # Safety
 * `stream` is null or live.
 */
uint32_t phantom_stream_id(const struct PhantomStream *stream);

/**
 * Writes all of `data[0..len]` to the stream, waiting while the send buffer is full.
 *
 * # Safety
 * `stream` is null or live; `data` points to `len` readable bytes.
 */
enum PhantomStatus phantom_stream_write(const struct PhantomStream *stream,
                                        const uint8_t *data,
                                        size_t len);

/**
 * Reads up to `buf_len` bytes into `buf`, waiting until at least one byte or the end
 * of the stream arrives. `*read` receives the count; 0 means the peer finished the
 * stream (end of stream).
 *
 * # Safety
 * `stream` is null or live; `buf` points to `buf_len` writable bytes; `read` is null
 * or writable.
 */
enum PhantomStatus phantom_stream_read(const struct PhantomStream *stream,
                                       uint8_t *buf,
                                       size_t buf_len,
                                       size_t *read);

/**
 * Finishes the sending half (the peer reads end of stream after the data).
 *
 * # Safety
 * `stream` is null or live.
 */
enum PhantomStatus phantom_stream_finish(const struct PhantomStream *stream);

/**
 * Frees a stream (finishing it if it was not). Null is ignored.
 *
 * # Safety
 * `stream` is null or a live stream not in use by another thread; it is invalid
 * afterwards.
 */
void phantom_stream_free(struct PhantomStream *stream);

/**
 * Sends `data[0..len]` as one unreliable datagram.
 *
 * # Safety
 * `connection` is null or live; `data` points to `len` readable bytes.
 */
enum PhantomStatus phantom_connection_send_datagram(const struct PhantomConnection *connection,
                                                    const uint8_t *data,
                                                    size_t len);

/**
 * Waits up to `timeout_ms` (0: no limit) for a datagram and copies it into
 * `buf[0..buf_len]`; `*len` receives its length. If it does not fit, the call
 * returns `PHANTOM_STATUS_BUFFER_TOO_SMALL` with the needed length in `*len` and
 * keeps the datagram for the next call.
 *
 * # Safety
 * `connection` is null or live; `buf` points to `buf_len` writable bytes; `len` is
 * null or writable.
 */
enum PhantomStatus phantom_connection_read_datagram(const struct PhantomConnection *connection,
                                                    uint8_t *buf,
                                                    size_t buf_len,
                                                    size_t *len,
                                                    uint32_t timeout_ms);

/**
 * Fills `*out` with the connection's counters.
 *
 * # Safety
 * `connection` is null or live; `out` is null or writable.
 */
enum PhantomStatus phantom_connection_stats(const struct PhantomConnection *connection,
                                            struct PhantomStats *out);

/**
 * Closes the connection with application `code` and an optional `reason` (a
 * NUL-terminated string, or null). The handle must still be freed.
 *
 * # Safety
 * `connection` is null or live; `reason` is null or NUL-terminated.
 */
enum PhantomStatus phantom_connection_close(const struct PhantomConnection *connection,
                                            uint64_t code,
                                            const char *reason);

/**
 * Frees a connection handle (the session closes once no handle to it remains).
 * Null is ignored.
 *
 * # Safety
 * `connection` is null or a live connection not in use by another thread; it is
 * invalid afterwards.
 */
void phantom_connection_free(struct PhantomConnection *connection);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* PHANTOM_H */
