/*
 * Client I/O for `bp-host serve`: each client has a reader thread (bounded lines in) and a
 * writer thread (lines out). Output is queued, never written by the thread that produced it:
 * the plugin's delivery threads only append to a client's queue, so a client that stops
 * reading can never hold a plugin callback, a stream of another client or a generation. A
 * client whose queue passes its bound (--client-buffer) counts as stalled: its streams are
 * cancelled, its lines dropped, and its connection shut down, with a log line.
 */
#define _GNU_SOURCE
#include "serve_internal.h"
#include "json.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Longest line a client may send: the largest request the plugin takes, plus room for the
 * envelope. Longer lines are answered with an error and skipped to their end. */
#define MAX_LINE ((size_t)BP_MAX_REQUEST_BYTES + ((size_t)1 << 20))

void put(struct buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->n + n + 2 > b->cap) {
        size_t cap = (b->n + n + 2) * 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

void putf(struct buf *b, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text) { b->failed = 1; return; }
    put(b, text, (size_t)n);
}

static void free_queue(struct client *c) {
    while (c->head) {
        struct line *l = c->head;
        c->head = l->next;
        free(l->text);
        free(l);
    }
    c->tail = NULL;
    c->queued = 0;
}

/* The client can no longer be served (it fell behind, or its connection broke): drop its
 * output, cancel its streams, and close its connection so that its reader ends too. */
static void stall(struct client *c, const char *why) {
    pthread_mutex_lock(&c->out_mu);
    int first = !c->stalled;
    c->stalled = 1;
    free_queue(c);
    pthread_mutex_unlock(&c->out_mu);
    if (!first) return;
    int cancelled = cancel_requests(c, NULL, 0);
    if (c->sock >= 0) shutdown(c->sock, SHUT_RDWR);
    pthread_mutex_lock(&S.mu);
    S.stalled_clients++;
    pthread_mutex_unlock(&S.mu);
    say("client disconnected: %s; %d of its streams cancelled", why, cancelled);
}

void client_send(struct client *c, struct buf *b) {
    put(b, "\n", 1);
    struct line *l = b->failed ? NULL : malloc(sizeof *l);
    if (!l) {
        free(b->p);
        stall(c, "out of memory for its output");
        return;
    }
    *l = (struct line){.next = NULL, .text = b->p, .n = b->n};
    pthread_mutex_lock(&c->out_mu);
    if (c->stalled || c->queued + l->n > S.opt->client_buffer) {
        int was_stalled = c->stalled;
        size_t queued = c->queued;
        pthread_mutex_unlock(&c->out_mu);
        free(l->text);
        free(l);
        if (!was_stalled) {
            char why[128];
            snprintf(why, sizeof why, "it stopped reading (%zu bytes waiting, bound %zu)", queued, S.opt->client_buffer);
            stall(c, why);
        }
        return;
    }
    if (c->tail) c->tail->next = l; else c->head = l;
    c->tail = l;
    c->queued += l->n;
    pthread_cond_signal(&c->out_cv);
    pthread_mutex_unlock(&c->out_mu);
}

void send_error(struct client *c, const char *message) {
    struct buf b = {0};
    puts_(&b, "{\"error\":");
    size_t cap = strlen(message) * 6 + 16;
    char *text = malloc(cap);
    if (text) {
        text[0] = 0;
        json_string(text, cap, message);
        puts_(&b, text);
        free(text);
    } else {
        b.failed = 1;
    }
    put(&b, "}", 1);
    client_send(c, &b);
}

/* Writes the queue until the client has no reference left and nothing is queued, then frees it. */
static void *writer_main(void *arg) {
    struct client *c = arg;
    pthread_mutex_lock(&c->out_mu);
    for (;;) {
        while (!c->head && !c->closing) pthread_cond_wait(&c->out_cv, &c->out_mu);
        if (!c->head) break;
        struct line *l = c->head;
        c->head = l->next;
        if (!c->head) c->tail = NULL;
        c->queued -= l->n;
        pthread_mutex_unlock(&c->out_mu);
        const char *p = l->text;
        size_t n = l->n;
        int broken = 0;
        while (n) {
            ssize_t w = write(c->out_fd, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { broken = 1; break; }
            p += w;
            n -= (size_t)w;
        }
        free(l->text);
        free(l);
        if (broken) stall(c, "its connection broke");
        pthread_mutex_lock(&c->out_mu);
    }
    pthread_mutex_unlock(&c->out_mu);
    pthread_mutex_lock(&S.mu);
    for (struct client **q = &S.clients; *q; q = &(*q)->next)
        if (*q == c) { *q = c->next; break; }
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    if (c->out_fd != STDOUT_FILENO) close(c->out_fd);
    pthread_cond_destroy(&c->out_cv);
    pthread_mutex_destroy(&c->out_mu);
    free(c);
    return NULL;
}

struct client *client_new(int sock, int in_fd, int out_fd, int refs) {
    struct client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sock = sock;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->refs = refs;
    if (pthread_mutex_init(&c->out_mu, NULL) != 0) { free(c); return NULL; }
    if (pthread_cond_init(&c->out_cv, NULL) != 0) { pthread_mutex_destroy(&c->out_mu); free(c); return NULL; }
    pthread_mutex_lock(&S.mu);
    c->next = S.clients;
    S.clients = c;
    pthread_mutex_unlock(&S.mu);
    if (start_detached(writer_main, c) != 0) {
        pthread_mutex_lock(&S.mu);
        for (struct client **q = &S.clients; *q; q = &(*q)->next)
            if (*q == c) { *q = c->next; break; }
        pthread_mutex_unlock(&S.mu);
        pthread_cond_destroy(&c->out_cv);
        pthread_mutex_destroy(&c->out_mu);
        free(c);
        return NULL;
    }
    return c;
}

void client_release(struct client *c) {
    pthread_mutex_lock(&S.mu);
    int last = --c->refs == 0;
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    if (!last) return;
    pthread_mutex_lock(&c->out_mu);
    c->closing = 1;
    pthread_cond_signal(&c->out_cv);
    pthread_mutex_unlock(&c->out_mu);
}

void clients_shutdown(int how) {
    pthread_mutex_lock(&S.mu);
    for (struct client *c = S.clients; c; c = c->next)
        if (c->sock >= 0) shutdown(c->sock, how);
    pthread_mutex_unlock(&S.mu);
}

/* Hands each complete line to the protocol; a line longer than MAX_LINE gets an error line and
 * is skipped to its end. Returns at the end of the client's input. */
void client_read_lines(struct client *c) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int skipping = 0; /* inside a line that was refused */
    if (!buf) { send_error(c, "out of memory reading lines"); return; }
    for (;;) {
        if (len == cap) {
            if (cap > MAX_LINE) {
                char why[96];
                snprintf(why, sizeof why, "line too long: more than %zu bytes (a request may have %u)", MAX_LINE, BP_MAX_REQUEST_BYTES);
                send_error(c, why);
                skipping = 1;
                len = 0;
            } else {
                size_t bigger = cap * 2 > MAX_LINE + 1 ? MAX_LINE + 1 : cap * 2;
                char *p = realloc(buf, bigger);
                if (!p) {
                    send_error(c, "out of memory for a long line: it is skipped");
                    skipping = 1;
                    len = 0;
                } else {
                    buf = p;
                    cap = bigger;
                }
            }
        }
        ssize_t n = read(c->in_fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t start = 0, end = len + (size_t)n;
        for (size_t i = len; i < end; i++) {
            if (buf[i] != '\n') continue;
            if (!skipping) {
                buf[i] = 0;
                if (i > start && buf[i - 1] == '\r') buf[i - 1] = 0;
                handle_line(c, buf + start);
            }
            skipping = 0;
            start = i + 1;
        }
        len = skipping ? 0 : end - start;
        if (len && start) memmove(buf, buf + start, len);
    }
    if (len && !skipping && len < cap) {
        buf[len] = 0;
        handle_line(c, buf);
    } else if (len && !skipping) {
        char *p = realloc(buf, len + 1);
        if (p) {
            buf = p;
            buf[len] = 0;
            handle_line(c, buf);
        }
    }
    free(buf);
}
