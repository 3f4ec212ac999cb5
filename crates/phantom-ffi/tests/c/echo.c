/*
 * A C client and server in one process over the Phantom C API: the server echoes one
 * stream and one datagram; the client sends 1 MiB and checks the echo byte for byte,
 * and checks that a wrong pinned key fails with PHANTOM_STATUS_WRONG_SERVER_KEY and a
 * message. Exits 0 only if every check holds. Built and run by `cargo xtask ci` (ffi).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "phantom.h"

#define PAYLOAD (1024 * 1024)

static int fail(const char *what, PhantomStatus st) {
    fprintf(stderr, "echo.c: %s: status %d: %s\n", what, (int)st, phantom_last_error_message());
    return 0;
}

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        PhantomStatus st_ = (call);                                                                \
        if (st_ != PHANTOM_STATUS_OK) {                                                            \
            fail(what, st_);                                                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Reads the stream to its end into buf (capacity cap); returns the count or -1. */
static long read_all(PhantomStream *s, uint8_t *buf, size_t cap) {
    size_t total = 0;
    for (;;) {
        size_t n = 0;
        if (total == cap) {
            uint8_t extra;
            PhantomStatus st = phantom_stream_read(s, &extra, 1, &n);
            return (st == PHANTOM_STATUS_OK && n == 0) ? (long)total : -1;
        }
        PhantomStatus st = phantom_stream_read(s, buf + total, cap - total, &n);
        if (st != PHANTOM_STATUS_OK) {
            fail("phantom_stream_read", st);
            return -1;
        }
        if (n == 0) return (long)total;
        total += n;
    }
}

static void *serve(void *arg) {
    PhantomEndpoint *server = arg;
    PhantomConnection *conn = NULL;
    PhantomStream *s = NULL;
    uint8_t *buf = malloc(PAYLOAD);
    uint8_t dgram[64];
    size_t len = 0;
    long n;
    void *result = (void *)1;
    if (buf == NULL) return result;
    if (phantom_endpoint_accept(server, 20000, &conn) != PHANTOM_STATUS_OK) goto out;
    if (phantom_connection_read_datagram(conn, dgram, sizeof dgram, &len, 20000) != PHANTOM_STATUS_OK) goto out;
    if (phantom_connection_send_datagram(conn, dgram, len) != PHANTOM_STATUS_OK) goto out;
    if (phantom_connection_accept_stream(conn, 20000, &s) != PHANTOM_STATUS_OK) goto out;
    n = read_all(s, buf, PAYLOAD);
    if (n < 0) goto out;
    if (phantom_stream_write(s, buf, (size_t)n) != PHANTOM_STATUS_OK) goto out;
    if (phantom_stream_finish(s) != PHANTOM_STATUS_OK) goto out;
    /* Wait for the client's close: reading a datagram then fails with CLOSED. */
    if (phantom_connection_read_datagram(conn, dgram, sizeof dgram, &len, 20000) != PHANTOM_STATUS_CLOSED) goto out;
    result = NULL;
out:
    if (result != NULL) fprintf(stderr, "echo.c: server: %s\n", phantom_last_error_message());
    phantom_stream_free(s);
    phantom_connection_free(conn);
    free(buf);
    return result;
}

int main(void) {
    uint8_t *secret = NULL, *pub = NULL, *other_secret = NULL, *other_pub = NULL;
    size_t secret_len = 0, pub_len = 0, other_secret_len = 0, other_pub_len = 0;
    PhantomEndpoint *server = NULL, *client = NULL;
    PhantomConnection *conn = NULL;
    PhantomStream *s = NULL;
    PhantomStats stats;
    char addr[64];
    pthread_t thread;
    void *server_result = NULL;
    uint8_t *sent = malloc(PAYLOAD), *back = malloc(PAYLOAD);
    uint8_t pong[64];
    size_t pong_len = 0;
    long n;
    PhantomStatus st;

    if (sent == NULL || back == NULL) return 1;
    for (size_t i = 0; i < PAYLOAD; i++) sent[i] = (uint8_t)((i * 7 + i / 251) & 0xff);

    /* Argument checks: null pointers and invalid UTF-8 come back as codes. */
    if (phantom_stream_write(NULL, sent, 1) != PHANTOM_STATUS_NULL_POINTER) return fail("null stream", 0), 1;
    if (phantom_client_new("\xff\xfe:1", &client) != PHANTOM_STATUS_INVALID_ARGUMENT) return fail("bad UTF-8", 0), 1;
    if (strlen(phantom_last_error_message()) == 0) return fail("empty message", 0), 1;

    CHECK(phantom_keygen(&secret, &secret_len, &pub, &pub_len), "keygen");
    CHECK(phantom_keygen(&other_secret, &other_secret_len, &other_pub, &other_pub_len), "keygen 2");
    CHECK(phantom_server_new("127.0.0.1:0", secret, secret_len, &server), "server");
    CHECK(phantom_endpoint_local_addr(server, addr, sizeof addr), "local addr");
    if (pthread_create(&thread, NULL, serve, server) != 0) return 1;
    CHECK(phantom_client_new("127.0.0.1:0", &client), "client");

    /* A wrong pinned key: a code and a message, and no connection. */
    st = phantom_endpoint_connect(client, addr, other_pub, other_pub_len, 10000, &conn);
    if (st != PHANTOM_STATUS_WRONG_SERVER_KEY || conn != NULL ||
        strstr(phantom_last_error_message(), "key") == NULL) {
        fail("connect with a wrong key should fail with WRONG_SERVER_KEY", st);
        return 1;
    }
    printf("wrong key refused: %s\n", phantom_last_error_message());

    CHECK(phantom_endpoint_connect(client, addr, pub, pub_len, 10000, &conn), "connect");
    /* A datagram there and back (loopback does not drop it; retried anyway). */
    for (int tries = 0;; tries++) {
        CHECK(phantom_connection_send_datagram(conn, (const uint8_t *)"ping", 4), "send datagram");
        st = phantom_connection_read_datagram(conn, pong, sizeof pong, &pong_len, 1000);
        if (st == PHANTOM_STATUS_OK) break;
        if (st != PHANTOM_STATUS_TIMEOUT || tries == 4) return fail("datagram echo", st), 1;
    }
    if (pong_len != 4 || memcmp(pong, "ping", 4) != 0) return fail("datagram content", 0), 1;

    CHECK(phantom_connection_open_stream(conn, &s), "open stream");
    CHECK(phantom_stream_write(s, sent, PAYLOAD), "write");
    CHECK(phantom_stream_finish(s), "finish");
    n = read_all(s, back, PAYLOAD);
    if (n != PAYLOAD || memcmp(sent, back, PAYLOAD) != 0) {
        fprintf(stderr, "echo.c: echo mismatch: %ld bytes back\n", n);
        return 1;
    }
    CHECK(phantom_connection_stats(conn, &stats), "stats");
    if (stats.stream_bytes_sent < PAYLOAD || stats.bytes_received < PAYLOAD) return fail("stats", 0), 1;
    printf("echoed %ld bytes byte-exact; %llu packets sent, rtt %llu us\n", n,
           (unsigned long long)stats.packets_sent, (unsigned long long)stats.rtt_us);

    CHECK(phantom_connection_close(conn, 0, "done"), "close");
    if (pthread_join(thread, &server_result) != 0 || server_result != NULL) {
        fprintf(stderr, "echo.c: the server thread failed\n");
        return 1;
    }
    CHECK(phantom_endpoint_close(client, 1000), "endpoint close");
    phantom_stream_free(s);
    phantom_connection_free(conn);
    phantom_endpoint_free(client);
    phantom_endpoint_free(server);
    phantom_bytes_free(secret, secret_len);
    phantom_bytes_free(pub, pub_len);
    phantom_bytes_free(other_secret, other_secret_len);
    phantom_bytes_free(other_pub, other_pub_len);
    free(sent);
    free(back);
    return 0;
}
