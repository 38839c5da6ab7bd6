/*
 * What the parts of `bp-host serve` share: the generations, clients and requests, and the one
 * lock over them. The parts, one job each:
 *   serve.c         start-up, the socket and its accept loop, signals, shutdown
 *   serve_client.c  client I/O: bounded line reader, non-blocking output queue + writer thread
 *   serve_proto.c   the line protocol: requests, cancels, control ops, the plugin callback
 *   serve_gens.c    generations: load a private copy, swap, drain, unload
 *   serve_watch.c   the watcher: SIGHUP, {"op":"swap"} and changes of the plugin file
 *
 * Threads: main (accept loop), one reader and one writer per client, the watcher, a drainer per
 * retiring generation, and the plugin's delivery threads, which call on_event. Lock order: S.mu
 * before a client's out_mu; nothing is ever written to a socket under either lock, and no
 * plugin callback ever waits for a client.
 */
#ifndef BP_HOST_SERVE_INTERNAL_H
#define BP_HOST_SERVE_INTERNAL_H

#include "bedrock_plugin.h"
#include "serve.h"
#include <limits.h>
#include <pthread.h>
#include <stddef.h>

enum state { SERVING, DRAINING, PINNED };

struct generation {
    int number;
    void *handle;
    const bp_api *api;
    bp_provider *provider;
    char *info;     /* bp_plugin_info(), copied */
    char digest[65]; /* the build's SHA-256: a file event for the same build is no swap */
    enum state state;
    int calls;      /* threads inside a call on provider: it is freed only once this is 0 */
    int streams;    /* requests holding one of its stream handles: dlclose waits for 0 */
    struct generation *next;
};

/* One output line waiting for the client's writer. */
struct line {
    struct line *next;
    char *text;
    size_t n;
};

struct client {
    int sock;     /* the connection (-1 in stdin mode) */
    int in_fd;    /* what the reader reads: the connection, or stdin */
    int out_fd;   /* what the writer writes, and closes when the client is freed (not stdout) */
    pthread_mutex_t out_mu;
    pthread_cond_t out_cv;
    struct line *head, *tail;
    size_t queued;   /* bytes in the queue */
    int closing;     /* no reference left: the writer finishes the queue, then frees the client */
    int stalled;     /* fell behind or could not be written to: lines are dropped from now on */
    int refs;        /* its reader, its requests, and in stdin mode main (S.mu) */
    struct client *next;
};

struct request {
    char *id; /* the id's JSON string literal, as the client wrote it */
    struct client *client;
    struct generation *gen;
    bp_stream *stream;
    int refs;         /* the thread that started it and its terminal event (S.mu) */
    int finished;     /* no more events will come */
    int cancel_asked; /* a cancel that came before the stream handle */
    struct request *next;
};

struct serve_state {
    pthread_mutex_t mu;
    pthread_cond_t changed; /* calls, streams, refs, clients or drainers went down */
    const struct serve_options *opt;
    struct generation *gens; /* the serving one first */
    struct request *requests;
    struct client *clients;
    char dir[PATH_MAX];      /* where the private copies are made */
    int next_number;         /* the last generation that served */
    long swaps, refused, unloaded, drainers, stalled_clients;
    double last_swap_ms, last_drain_ms;
    int wake[2];             /* to the watcher: 'h' swap, 'q' stop */
    int quit[2];             /* to the socket accept loop: SIGTERM / SIGINT */
};

extern struct serve_state S;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double now_ms(void);
/* Runs fn(arg) on a new detached thread; 0 on success. */
int start_detached(void *(*fn)(void *), void *arg);

/* An output line being built; `failed` once an allocation failed (the line is then not sent). */
struct buf {
    char *p;
    size_t n, cap;
    int failed;
};
void put(struct buf *b, const char *s, size_t n);
void puts_(struct buf *b, const char *s);
void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* serve_client.c */
struct client *client_new(int sock, int in_fd, int out_fd, int refs);
void client_send(struct client *c, struct buf *b); /* never blocks; frees b */
void send_error(struct client *c, const char *message);
void client_release(struct client *c);
void client_read_lines(struct client *c); /* until its input ends */
void clients_shutdown(int how);           /* shutdown(2) every client socket */

/* serve_proto.c */
void handle_line(struct client *c, const char *line);
int cancel_requests(struct client *c, const char *id, size_t id_len);

/* serve_gens.c */
int free_pthread_keys(void); /* how many more keys this process could create */
long rss_kib(void);
/* Why a load gave no generation: refused (the reason in why), maybe a deploy still writing the
 * file, or the file holds the build whose digest was given as same_as. */
enum load_failure { LOAD_REFUSED, LOAD_TRANSIENT, LOAD_UNCHANGED };
struct generation *load_generation(const char *same_as, char *why, size_t cap, enum load_failure *failure);
struct generation *enter_serving(void);
void leave(struct generation *g);
enum swap_result { SWAP_DONE, SWAP_REFUSED, SWAP_LATER, SWAP_UNCHANGED };
/* Loads the next generation; a refusal that may be a deploy still writing is SWAP_LATER (not
 * reported) unless final. Unless requested (SIGHUP, {"op":"swap"}), a file holding the build
 * already serving is SWAP_UNCHANGED: an inotify event can outlive the deploy it reported. */
enum swap_result swap(int final, int requested);
void retire(struct generation *g); /* drains it on a thread of its own */

/* serve_watch.c */
struct watch;
struct watch *watch_start(void);
void *watcher_main(void *watch);
void request_swap(void);

#endif
