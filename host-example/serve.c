/*
 * `bp-host serve` — a small gateway that keeps serving while the plugin is replaced.
 *
 * Protocol: one JSON object per line in, one per line out.
 *   in:  {"id": "r1", "model": ..., "context": ..., "options": ...}   start a stream
 *        {"cancel": "r1"}                                             cancel it
 *        {"op": "models"} | {"op": "status"} | {"op": "swap"}
 *   out: {"id": "r1", "generation": N, "event": <plugin event>}        in order per request; the
 *        last one carries the terminal done/error event
 *        {"id": "r1", "generation": N, "startError": <err_json>}       the request's only line
 *        {"op": ..., ...} answers; {"error": "..."} for a line that could not be read
 *
 * Portable to macOS where it costs little: inotify and the ELF check are Linux-only (elsewhere the
 * file's status is polled and dlopen alone judges the file); the rest is POSIX.
 *
 * Generations: each load of the plugin is a generation, dlopened from a private copy of the
 * plugin file (glibc hands back the already-loaded image for the same path or inode, so a copy is
 * the only way to get a second one) and unlinked at once. A swap (SIGHUP, {"op":"swap"}, or the
 * file changing on disk) loads the next generation; if anything fails the old one keeps serving.
 * New requests go to the new generation at once; the old one is drained in the background
 * (bp_provider_free with the drain deadline), then dlclosed, unless it reports BP_ERR_BUSY, in
 * which case it stays mapped and `status` counts it. Every call into a generation goes through
 * the bp_api table of that copy, so functions of two copies are never mixed.
 */
#define _GNU_SOURCE
#include "serve.h"
#include "bedrock_plugin.h"
#include "json.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <elf.h>
#include <sys/inotify.h>
#endif

enum state { SERVING, DRAINING, PINNED };
static const char *const STATE_NAMES[] = {"serving", "draining", "pinned"};

struct generation {
    int number;
    void *handle;
    const bp_api *api;
    bp_provider *provider;
    char *info;     /* bp_plugin_info(), copied */
    enum state state;
    int calls;      /* threads inside a call on provider: it is freed only once this is 0 */
    int streams;    /* requests holding one of its stream handles: dlclose waits for 0 */
    struct generation *next;
};

struct client {
    int in_fd, out_fd;
    pthread_mutex_t out_mu; /* one line at a time on out_fd */
    int refs;               /* its reader, its requests, and in stdin mode main (S.mu) */
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

static struct {
    pthread_mutex_t mu;
    pthread_cond_t changed; /* calls, streams, refs or drainers went down */
    const struct serve_options *opt;
    struct generation *gens; /* the serving one first */
    struct request *requests;
    struct client *clients;
    char dir[PATH_MAX];      /* where the private copies are made */
    int next_number;         /* the last generation that served */
    long swaps, refused, unloaded, drainers;
    double last_swap_ms, last_drain_ms;
    int wake[2];             /* to the watcher: 'h' swap, 'q' stop */
    int quit[2];             /* to the socket accept loop: SIGTERM / SIGINT */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER, .wake = {-1, -1}, .quit = {-1, -1}};

static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bp-host serve: %s\n", line);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- output lines ---- */

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 2 > b->cap) {
        size_t cap = (b->n + n + 2) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(struct buf *b, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    puts_(b, text);
}

/* Writes the line and frees it. A client that went away loses its lines; nothing else does. */
static void send_line(struct client *c, struct buf *b) {
    put(b, "\n", 1);
    if (b->p) {
        pthread_mutex_lock(&c->out_mu);
        const char *p = b->p;
        size_t n = b->n;
        while (n) {
            ssize_t w = write(c->out_fd, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            p += w;
            n -= (size_t)w;
        }
        pthread_mutex_unlock(&c->out_mu);
    }
    free(b->p);
}

static void send_error(struct client *c, const char *message) {
    struct buf b = {0};
    char text[512] = "";
    json_string(text, sizeof text, message);
    puts_(&b, "{\"error\":");
    puts_(&b, text);
    put(&b, "}", 1);
    send_line(c, &b);
}

/* ---- clients and requests ---- */

static void client_release(struct client *c) {
    pthread_mutex_lock(&S.mu);
    int last = --c->refs == 0;
    if (last) {
        for (struct client **p = &S.clients; *p; p = &(*p)->next)
            if (*p == c) { *p = c->next; break; }
    }
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    if (!last) return;
    if (c->out_fd != STDOUT_FILENO) close(c->out_fd);
    pthread_mutex_destroy(&c->out_mu);
    free(c);
}

/* Drops one reference; the last one releases the stream handle, then lets the generation go. */
static void request_release(struct request *r) {
    pthread_mutex_lock(&S.mu);
    int last = --r->refs == 0;
    if (last) {
        for (struct request **p = &S.requests; *p; p = &(*p)->next)
            if (*p == r) { *p = r->next; break; }
    }
    pthread_mutex_unlock(&S.mu);
    if (!last) return;
    if (r->stream) r->gen->api->stream_release(r->stream);
    pthread_mutex_lock(&S.mu);
    r->gen->streams--; /* after the release: only now may the generation be unmapped */
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    client_release(r->client);
    free(r->id);
    free(r);
}

static int32_t on_event(void *user, const char *json, size_t len) {
    struct request *r = user;
    struct buf b = {0};
    puts_(&b, "{\"id\":");
    puts_(&b, r->id);
    putf(&b, ",\"generation\":%d,\"event\":", r->gen->number);
    put(&b, json, len);
    put(&b, "}", 1);
    send_line(r->client, &b);
    char type[16];
    read_string(member(json, "type"), type, sizeof type);
    if (strcmp(type, "done") == 0 || strcmp(type, "error") == 0) {
        pthread_mutex_lock(&S.mu);
        r->finished = 1;
        pthread_mutex_unlock(&S.mu);
        request_release(r);
    }
    return 0;
}

/* The serving generation, held for one call (NULL when none serves). */
static struct generation *enter_serving(void) {
    pthread_mutex_lock(&S.mu);
    struct generation *g = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (g) g->calls++;
    pthread_mutex_unlock(&S.mu);
    return g;
}

static void leave(struct generation *g) {
    pthread_mutex_lock(&S.mu);
    g->calls--;
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
}

/* The line without its "id" member: what bp_stream_start takes. */
static char *request_body(const char *line) {
    struct buf b = {0};
    put(&b, "{", 1);
    const char *p = skip_ws(skip_ws(line) + 1);
    int first = 1;
    while (*p == '"') {
        const char *key_end = value_end(p);
        const char *colon = skip_ws(key_end);
        if (*colon != ':') break;
        const char *value = skip_ws(colon + 1);
        const char *end = value_end(value);
        if (!(key_end - p == 4 && strncmp(p, "\"id\"", 4) == 0)) {
            if (!first) put(&b, ",", 1);
            put(&b, p, (size_t)(end - p));
            first = 0;
        }
        p = skip_ws(end);
        if (*p == ',') p = skip_ws(p + 1);
    }
    put(&b, "}", 1);
    return b.p;
}

static void start_request(struct client *c, const char *line) {
    const char *idp = member(line, "id");
    if (!idp || *idp != '"') { send_error(c, "a request needs a string \"id\""); return; }
    struct generation *g = enter_serving();
    if (!g) { send_error(c, "no plugin generation is serving"); return; }
    struct request *r = calloc(1, sizeof *r);
    char *body = request_body(line);
    char *id = strndup(idp, (size_t)(value_end(idp) - idp));
    if (!r || !body || !id) {
        free(r);
        free(body);
        free(id);
        leave(g);
        send_error(c, "out of memory");
        return;
    }
    r->id = id;
    r->client = c;
    r->gen = g;
    r->refs = 2;
    pthread_mutex_lock(&S.mu);
    g->streams++;
    c->refs++;
    r->next = S.requests;
    S.requests = r;
    pthread_mutex_unlock(&S.mu);

    bp_stream *stream = NULL;
    char *err = NULL;
    int32_t rc = g->api->stream_start(g->provider, body, on_event, r, &stream, &err);
    free(body);
    pthread_mutex_lock(&S.mu);
    r->stream = stream;
    int cancel = rc == BP_OK && r->cancel_asked;
    if (rc != BP_OK) {
        r->finished = 1;
        r->refs--; /* the callback will never run */
    }
    pthread_mutex_unlock(&S.mu);
    if (cancel) g->api->stream_cancel(stream);
    if (rc != BP_OK) {
        struct buf b = {0};
        puts_(&b, "{\"id\":");
        puts_(&b, r->id);
        putf(&b, ",\"generation\":%d,\"startError\":", g->number);
        puts_(&b, err ? err : "{\"code\":\"internal\",\"message\":\"bp_stream_start failed\"}");
        put(&b, "}", 1);
        send_line(c, &b);
        g->api->string_free(err);
    }
    leave(g);
    request_release(r);
}

/* Cancels the in-flight requests of client c with this id literal (all of them when id is NULL). */
static int cancel_requests(struct client *c, const char *id, size_t id_len) {
    int found = 0;
    pthread_mutex_lock(&S.mu);
    for (struct request *r = S.requests; r; r = r->next) {
        if (r->client != c || r->finished) continue;
        if (id && (strlen(r->id) != id_len || strncmp(r->id, id, id_len) != 0)) continue;
        found++;
        if (r->stream) r->gen->api->stream_cancel(r->stream);
        else r->cancel_asked = 1;
    }
    pthread_mutex_unlock(&S.mu);
    return found;
}

/* ---- generations ---- */

static int copy_file(const char *from, const char *to, char *why, size_t cap) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) { snprintf(why, cap, "cannot read %s: %s", from, strerror(errno)); return -1; }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) { snprintf(why, cap, "cannot create %s: %s", to, strerror(errno)); close(in); return -1; }
    char chunk[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, chunk, sizeof chunk)) > 0) {
        if (write(out, chunk, (size_t)n) != n) { rc = -1; break; }
    }
    if (n < 0 || rc != 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    close(in);
    if (close(out) != 0 && rc == 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    if (rc != 0) unlink(to);
    return rc;
}

#ifdef __linux__
/*
 * dlopen maps an ELF file's segments as its headers describe them; a truncated file (a deploy or
 * a build caught half-way) maps pages past its end, and touching them kills the process with
 * SIGBUS. So every segment and the section table must lie inside the file before it is loaded.
 */
static int check_elf(const char *path, char *why, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    Elf64_Ehdr eh;
    if (fd < 0 || fstat(fd, &st) != 0) { snprintf(why, cap, "cannot read it: %s", strerror(errno)); if (fd >= 0) close(fd); return -1; }
    int rc = -1;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(why, cap, "not a shared object (no ELF header)");
    } else if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN) {
        snprintf(why, cap, "not a 64-bit ELF shared object");
    } else if (eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize > (uint64_t)st.st_size ||
               eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > (uint64_t)st.st_size) {
        snprintf(why, cap, "the file is truncated (%lld bytes; its headers describe more)", (long long)st.st_size);
    } else {
        rc = 0;
        for (int i = 0; i < eh.e_phnum && rc == 0; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph ||
                ph.p_offset + ph.p_filesz > (uint64_t)st.st_size) {
                snprintf(why, cap, "the file is truncated (%lld bytes; segment %d ends at %llu)", (long long)st.st_size, i,
                         (unsigned long long)(ph.p_offset + ph.p_filesz));
                rc = -1;
            }
        }
    }
    close(fd);
    return rc;
}
#endif

/* Loads the plugin file as a new generation, or says why not in why. */
static struct generation *load_generation(char *why, size_t cap) {
    /* Only the watcher loads (and main, before the watcher starts): no one else moves the number. */
    int number = S.next_number + 1;
    char copy[PATH_MAX + 64];
    snprintf(copy, sizeof copy, "%s/generation-%d.so", S.dir, number);
    if (copy_file(S.opt->plugin_path, copy, why, cap) != 0) return NULL;
#ifdef __linux__
    if (check_elf(copy, why, cap) != 0) { unlink(copy); return NULL; }
#endif
    void *handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    unlink(copy); /* the mapping stays; nothing is left on disk if the host dies */
    if (!handle) { snprintf(why, cap, "cannot load it: %s", dlerror()); return NULL; }
    uint32_t (*abi_version)(void);
    const bp_api *(*get_api)(uint32_t);
    *(void **)&abi_version = dlsym(handle, "bp_abi_version"); /* POSIX's way round ISO C's object/function pointer split */
    *(void **)&get_api = dlsym(handle, "bp_get_api");
    const bp_api *api = NULL;
    if (!abi_version) {
        snprintf(why, cap, "not a bedrock-plugin (no bp_abi_version)");
    } else if (abi_version() >> 16 != BP_ABI_VERSION_MAJOR) {
        snprintf(why, cap, "plugin ABI %u.%u; this host speaks %d.x", abi_version() >> 16, abi_version() & 0xFFFF, BP_ABI_VERSION_MAJOR);
    } else if (!get_api || !(api = get_api(BP_ABI_VERSION_MAJOR))) {
        snprintf(why, cap, "plugin ABI %u.%u has no bp_get_api table (1.3 or later is needed)", abi_version() >> 16, abi_version() & 0xFFFF);
    } else if (api->size < offsetof(bp_api, string_free) + sizeof api->string_free) {
        snprintf(why, cap, "the plugin's function table is too short (%u bytes)", api->size);
        api = NULL;
    }
    bp_provider *provider = NULL;
    if (api) {
        char *err = NULL;
        if (api->provider_new(S.opt->config, &provider, &err) != BP_OK) {
            snprintf(why, cap, "bp_provider_new: %s", err ? err : "failed");
            api->string_free(err);
            api = NULL;
        }
    }
    struct generation *g = api ? calloc(1, sizeof *g) : NULL;
    if (!g) {
        if (provider) api->provider_free(provider, 0);
        dlclose(handle);
        if (api) snprintf(why, cap, "out of memory");
        return NULL;
    }
    S.next_number = number; /* a refused load leaves no gap in the numbers */
    g->number = number;
    g->handle = handle;
    g->api = api;
    g->provider = provider;
    g->info = strdup(api->plugin_info());
    g->state = SERVING;
    return g;
}

/* Frees an old generation's provider once nobody is inside a call, then unmaps it. */
static void drain(struct generation *g) {
    double started = now_ms();
    pthread_mutex_lock(&S.mu);
    while (g->calls > 0) pthread_cond_wait(&S.changed, &S.mu);
    int in_flight = g->streams;
    pthread_mutex_unlock(&S.mu);
    int32_t rc = g->api->provider_free(g->provider, S.opt->drain_ms);
    /* BP_ERR_BUSY: a callback never returned, so its stream may never end; the copy stays mapped
     * (and g allocated) for good, and its handles are released through it whenever they end. */
    int pinned = rc == BP_ERR_BUSY;
    pthread_mutex_lock(&S.mu);
    while (!pinned && g->streams > 0) pthread_cond_wait(&S.changed, &S.mu);
    pthread_mutex_unlock(&S.mu);
    double ms = now_ms() - started;
    if (!pinned) dlclose(g->handle);
    pthread_mutex_lock(&S.mu);
    if (pinned) {
        g->state = PINNED;
    } else {
        for (struct generation **p = &S.gens; *p; p = &(*p)->next)
            if (*p == g) { *p = g->next; break; }
        S.unloaded++;
    }
    S.last_drain_ms = ms;
    pthread_mutex_unlock(&S.mu);
    say("generation %d drained in %.0f ms (%d streams in flight%s)%s", g->number, ms, in_flight,
        rc == BP_ERR_CANCELLED ? ", the rest cancelled at the deadline" : "",
        pinned ? "; a callback never returned, so it stays mapped" : ", unloaded");
    if (!pinned) {
        free(g->info);
        free(g);
    }
}

static void *drainer_main(void *arg) {
    drain(arg);
    pthread_mutex_lock(&S.mu);
    S.drainers--;
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

static void swap(void) {
    double started = now_ms();
    char why[1024] = "";
    struct generation *g = load_generation(why, sizeof why);
    pthread_mutex_lock(&S.mu);
    struct generation *old = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (!g) {
        S.refused++;
        pthread_mutex_unlock(&S.mu);
        say("swap refused, generation %d keeps serving: %s", old ? old->number : 0, why);
        return;
    }
    g->next = S.gens;
    S.gens = g;
    if (old) old->state = DRAINING;
    S.swaps++;
    S.last_swap_ms = now_ms() - started;
    double ms = S.last_swap_ms;
    pthread_mutex_unlock(&S.mu);
    say("generation %d serving %s (ready %.1f ms after the change)", g->number, g->info, ms);
    if (!old) return;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&S.mu);
    S.drainers++;
    pthread_mutex_unlock(&S.mu);
    if (pthread_create(&t, &attr, drainer_main, old) != 0) drainer_main(old);
    pthread_attr_destroy(&attr);
}

/* ---- the watcher: SIGHUP, {"op":"swap"} and changes of the plugin file ---- */

static void on_hup(int sig) {
    (void)sig;
    char h = 'h';
    ssize_t ignored = write(S.wake[1], &h, 1);
    (void)ignored;
}

static void on_quit(int sig) {
    (void)sig;
    char q = 'q';
    ssize_t ignored = write(S.quit[1], &q, 1);
    (void)ignored;
}

struct watch {
    int fd; /* inotify, or -1: poll the file's status instead */
    char name[NAME_MAX + 1];
    struct stat last;
};

static int same_file_state(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_size == b->st_size && a->st_mtime == b->st_mtime;
}

/* Whether the plugin file changed, reading what the watch has queued (waits up to timeout_ms). */
static int file_changed(struct watch *w, int timeout_ms) {
    int changed = 0;
#ifdef __linux__
    if (w->fd >= 0) {
        struct pollfd pfd = {w->fd, POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0) return 0;
        char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        ssize_t n;
        while ((n = read(w->fd, events, sizeof events)) > 0) {
            for (char *p = events; p < events + n;) {
                struct inotify_event *e = (struct inotify_event *)p;
                if (e->len && strcmp(e->name, w->name) == 0) changed = 1;
                p += sizeof *e + e->len;
            }
        }
        return changed;
    }
#endif
    if (timeout_ms > 0) usleep((useconds_t)timeout_ms * 1000);
    struct stat now;
    if (stat(S.opt->plugin_path, &now) == 0 && !same_file_state(&now, &w->last)) {
        w->last = now;
        changed = 1;
    }
    return changed;
}

/* Starts watching the plugin file. Done before serve answers anything, so that a change made
 * right after its first answer cannot be missed. */
static void watch_start(struct watch *w) {
    w->fd = -1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", S.opt->plugin_path);
    char *slash = strrchr(dir, '/');
    snprintf(w->name, sizeof w->name, "%.*s", NAME_MAX, slash ? slash + 1 : dir);
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    stat(S.opt->plugin_path, &w->last);
#ifdef __linux__
    /* The directory, not the file: a deploy renames a new file over the old one. */
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd >= 0 && inotify_add_watch(w->fd, dir[0] ? dir : "/", IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        say("cannot watch %s (%s); polling the file instead", dir, strerror(errno));
        close(w->fd);
        w->fd = -1;
    }
#endif
}

static void *watcher_main(void *arg) {
    struct watch *w = arg;
    for (;;) {
        struct pollfd fds[2] = {{S.wake[0], POLLIN, 0}, {w->fd, POLLIN, 0}};
        int pending = 0;
        if (poll(fds, w->fd >= 0 ? 2 : 1, w->fd >= 0 ? -1 : 500) < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            char c;
            while (read(S.wake[0], &c, 1) == 1) {
                if (c == 'q') goto out;
                pending = 1;
            }
        }
        if (file_changed(w, 0)) pending = 1;
        if (!pending) continue;
        /* Let a writer finish: load once the file has been quiet for 100 ms. */
        while (file_changed(w, 100)) {}
        swap();
    }
out:
    if (w->fd >= 0) close(w->fd);
    return NULL;
}

/* ---- answers to control lines ---- */

static void answer_status(struct client *c) {
    struct buf b = {0};
    pthread_mutex_lock(&S.mu);
    struct generation *serving = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    int mapped = 0, pinned = 0;
    putf(&b, "{\"op\":\"status\",\"generation\":%d,\"plugin\":", serving ? serving->number : 0);
    puts_(&b, serving && serving->info ? serving->info : "null");
    puts_(&b, ",\"generations\":[");
    for (struct generation *g = S.gens; g; g = g->next) {
        if (g != serving) mapped++;
        if (g->state == PINNED) pinned++;
        putf(&b, "%s{\"generation\":%d,\"state\":\"%s\",\"streams\":%d,\"plugin\":", g == S.gens ? "" : ",", g->number,
             STATE_NAMES[g->state], g->streams);
        puts_(&b, g->info ? g->info : "null");
        put(&b, "}", 1);
    }
    putf(&b, "],\"swaps\":%ld,\"refused\":%ld,\"unloaded\":%ld,\"oldStillMapped\":%d,\"pinned\":%d,\"lastSwapMs\":%.3f,\"lastDrainMs\":%.3f}",
         S.swaps, S.refused, S.unloaded, mapped, pinned, S.last_swap_ms, S.last_drain_ms);
    pthread_mutex_unlock(&S.mu);
    send_line(c, &b);
}

static void answer_models(struct client *c) {
    struct generation *g = enter_serving();
    if (!g) { send_error(c, "no plugin generation is serving"); return; }
    char *out = NULL, *err = NULL;
    int32_t rc = g->api->discover(g->provider, NULL, &out, &err);
    struct buf b = {0};
    putf(&b, "{\"op\":\"models\",\"generation\":%d,\"%s\":", g->number, rc == BP_OK ? "result" : "error");
    puts_(&b, rc == BP_OK ? out : err ? err : "null");
    put(&b, "}", 1);
    send_line(c, &b);
    g->api->string_free(out);
    g->api->string_free(err);
    leave(g);
}

static void handle_line(struct client *c, const char *line) {
    const char *p = skip_ws(line);
    if (!*p) return;
    if (*p != '{') { send_error(c, "each line must be one JSON object"); return; }
    const char *cancel = member(p, "cancel");
    const char *op = member(p, "op");
    if (cancel) {
        if (*cancel != '"' || !cancel_requests(c, cancel, (size_t)(value_end(cancel) - cancel))) {
            struct buf b = {0};
            puts_(&b, "{\"cancel\":");
            put(&b, cancel, (size_t)(value_end(cancel) - cancel));
            puts_(&b, ",\"error\":\"no stream of this client is in flight with this id\"}");
            send_line(c, &b);
        }
    } else if (op) {
        char name[32];
        read_string(op, name, sizeof name);
        if (strcmp(name, "status") == 0) answer_status(c);
        else if (strcmp(name, "models") == 0) answer_models(c);
        else if (strcmp(name, "swap") == 0) {
            on_hup(0);
            struct buf b = {0};
            puts_(&b, "{\"op\":\"swap\",\"queued\":true}");
            send_line(c, &b);
        }
        else send_error(c, "unknown op (status, models, swap)");
    } else {
        start_request(c, p);
    }
}

static struct client *client_new(int in_fd, int out_fd, int refs) {
    struct client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->refs = refs;
    pthread_mutex_init(&c->out_mu, NULL);
    pthread_mutex_lock(&S.mu);
    c->next = S.clients;
    S.clients = c;
    pthread_mutex_unlock(&S.mu);
    return c;
}

/* Reads one client's lines until its input ends; a socket client's streams are then cancelled. */
static void *client_main(void *arg) {
    struct client *c = arg;
    FILE *in = fdopen(c->in_fd, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (in && (n = getline(&line, &cap, in)) > 0) {
        if (line[n - 1] == '\n') line[n - 1] = 0;
        handle_line(c, line);
    }
    free(line);
    if (S.opt->socket_path) cancel_requests(c, NULL, 0);
    if (in) fclose(in);
    client_release(c);
    return NULL;
}

/* ---- main ---- */

/* A non-blocking pipe for signal handlers to write to (pipe2 is not on every system). */
static int self_pipe(int fds[2]) {
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    return 0;
}

static int open_socket(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) { say("socket path too long: %s", path); return -1; }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        say("cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void accept_clients(int listener) {
    for (;;) {
        struct pollfd fds[2] = {{listener, POLLIN, 0}, {S.quit[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) { if (errno == EINTR) continue; break; }
        if (fds[1].revents & POLLIN) break;
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        int in = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* the reader closes its own: events may still be written to fd */
        struct client *c = in >= 0 ? client_new(in, fd, 1) : NULL;
        if (!c) {
            close(fd);
            if (in >= 0) close(in);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, client_main, c) != 0) {
            close(in);
            client_release(c); /* closes fd */
            continue;
        }
        pthread_detach(t);
    }
}

int cmd_serve(const struct serve_options *opt) {
    S.opt = opt;
    const char *tmp = getenv("TMPDIR");
    snprintf(S.dir, sizeof S.dir, "%s/bp-serve.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(S.dir)) { say("cannot create a directory for plugin copies: %s", strerror(errno)); return 1; }
    if (self_pipe(S.wake) != 0 || self_pipe(S.quit) != 0) { rmdir(S.dir); return 1; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction hup = {.sa_handler = on_hup, .sa_flags = SA_RESTART};
    sigaction(SIGHUP, &hup, NULL);

    /* Watch before the first load: a deploy during start-up is then swapped in right after. */
    static struct watch watch;
    watch_start(&watch);
    char why[1024] = "";
    struct generation *first = load_generation(why, sizeof why);
    if (!first) { say("cannot start: %s", why); rmdir(S.dir); return 1; }
    S.gens = first;
    say("generation %d serving %s", first->number, first->info);
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, watcher_main, &watch) != 0) { say("cannot start the watcher"); return 1; }

    if (opt->socket_path) {
        int listener = open_socket(opt->socket_path);
        if (listener >= 0) {
            struct sigaction quit = {.sa_handler = on_quit, .sa_flags = SA_RESTART};
            sigaction(SIGTERM, &quit, NULL);
            sigaction(SIGINT, &quit, NULL);
            say("listening on %s", opt->socket_path);
            accept_clients(listener);
            close(listener);
            unlink(opt->socket_path);
        }
    } else {
        /* stdin mode: one client, and main waits for its streams once its input ends. */
        struct client *c = client_new(STDIN_FILENO, STDOUT_FILENO, 2);
        if (c) {
            client_main(c);
            pthread_mutex_lock(&S.mu);
            while (c->refs > 1) pthread_cond_wait(&S.changed, &S.mu);
            pthread_mutex_unlock(&S.mu);
            client_release(c);
        }
    }

    char q = 'q';
    if (write(S.wake[1], &q, 1) == 1) pthread_join(watcher, NULL);
    /* Retire the serving generation like any other, then wait for every drain and client. */
    pthread_mutex_lock(&S.mu);
    struct generation *last = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (last) last->state = DRAINING;
    pthread_mutex_unlock(&S.mu);
    if (last) drain(last);
    /* Socket clients: stop reading from them (their streams are over by now). */
    pthread_mutex_lock(&S.mu);
    for (struct client *c = S.clients; c; c = c->next) shutdown(c->in_fd, SHUT_RD);
    while (S.drainers > 0 || S.clients) pthread_cond_wait(&S.changed, &S.mu);
    long swaps = S.swaps, refused = S.refused;
    int pinned = 0;
    for (struct generation *g = S.gens; g; g = g->next) pinned++;
    pthread_mutex_unlock(&S.mu);
    say("stopped after %ld swaps (%ld refused); %d generations stay mapped", swaps, refused, pinned);
    rmdir(S.dir);
    return 0;
}
