/*
 * `bp-host serve` — a small gateway that keeps serving while the plugin is replaced: start-up,
 * the socket and its accept loop, signals, and a shutdown bounded by the drain time. The
 * protocol is in serve_proto.c, client I/O in serve_client.c, generations in serve_gens.c, the
 * watcher in serve_watch.c; serve_internal.h says how they fit.
 *
 * Portable to macOS where it costs little: inotify and the ELF check are Linux-only (elsewhere the
 * file's status is polled and dlopen alone judges the file); the rest is POSIX.
 */
#define _GNU_SOURCE
#include "serve_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct serve_state S = {.mu = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER, .wake = {-1, -1}, .quit = {-1, -1}};

void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bp-host serve: %s\n", line);
}

double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int start_detached(void *(*fn)(void *), void *arg) {
    pthread_t t;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc;
}

static void on_hup(int sig) {
    (void)sig;
    request_swap();
}

static void on_quit(int sig) {
    (void)sig;
    char q = 'q';
    ssize_t ignored = write(S.quit[1], &q, 1);
    (void)ignored;
}

/* A non-blocking pipe for signal handlers to write to (pipe2 is not on every system). */
static int self_pipe(int fds[2]) {
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0 || fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) != 0) {
            close(fds[0]);
            close(fds[1]);
            return -1;
        }
    }
    return 0;
}

/* Listens on path. The socket file is created owner-only whatever the process umask (any client
 * that can connect may order a swap), then given the mode the operator chose. */
static int open_socket(const char *path, int mode) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) { say("socket path too long: %s", path); return -1; }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { say("cannot create a socket: %s", strerror(errno)); return -1; }
    unlink(path);
    mode_t old = umask(0177);
    int bound = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (bound != 0 || chmod(path, (mode_t)mode) != 0 || listen(fd, 64) != 0) {
        say("cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        if (bound == 0) unlink(path);
        return -1;
    }
    return fd;
}

/* Waits up to ms for the quit pipe; true when asked to quit. */
static int quit_within(int ms) {
    struct pollfd q = {S.quit[0], POLLIN, 0};
    return poll(&q, 1, ms) > 0 && (q.revents & POLLIN);
}

static void *client_main(void *arg) {
    struct client *c = arg;
    client_read_lines(c);
    cancel_requests(c, NULL, 0); /* a socket client that hangs up takes its streams with it */
    client_release(c);           /* its writer closes the connection once the rest is out */
    return NULL;
}

static void accept_clients(int listener) {
    int backing_off = 0;
    for (;;) {
        struct pollfd fds[2] = {{listener, POLLIN, 0}, {S.quit[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) { if (errno == EINTR) continue; say("poll: %s", strerror(errno)); break; }
        if (fds[1].revents & POLLIN) break;
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors or memory: waiting clients stay queued; look again shortly
                 * instead of spinning on the same failure. */
                if (!backing_off) say("cannot accept a client (%s); retrying every 100 ms", strerror(errno));
                backing_off = 1;
                if (quit_within(100)) break;
            }
            continue;
        }
        if (backing_off) say("accepting clients again");
        backing_off = 0;
        struct client *c = client_new(fd, fd, fd, 1);
        if (!c) {
            say("cannot serve a new client: out of memory or threads");
            close(fd);
            continue;
        }
        if (start_detached(client_main, c) != 0) {
            say("cannot start a reader for a new client");
            client_release(c); /* its writer closes fd */
        }
    }
}

/* Waits on S.changed until done() or the deadline (ms on the monotonic clock); S.mu held. */
static int wait_until(int (*done)(void), double deadline) {
    while (!done()) {
        double left = deadline - now_ms();
        if (left <= 0) return 0;
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        long long ns = (long long)t.tv_nsec + (long long)(left * 1e6);
        t.tv_sec += (time_t)(ns / 1000000000);
        t.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&S.changed, &S.mu, &t);
    }
    return 1;
}

static int no_drainers(void) { return S.drainers == 0; }
static int no_clients(void) { return S.clients == NULL; }

int cmd_serve(const struct serve_options *opt) {
    S.opt = opt;
    const char *tmp = getenv("TMPDIR");
    snprintf(S.dir, sizeof S.dir, "%s/bp-serve.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(S.dir)) { say("cannot create a directory for plugin copies: %s", strerror(errno)); return 1; }
    if (self_pipe(S.wake) != 0 || self_pipe(S.quit) != 0) { say("cannot create a pipe: %s", strerror(errno)); rmdir(S.dir); return 1; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction hup = {.sa_handler = on_hup, .sa_flags = SA_RESTART};
    sigaction(SIGHUP, &hup, NULL);

    /* Watch before the first load: a deploy during start-up is then swapped in right after. */
    struct watch *watch = watch_start();
    char why[1024] = "";
    enum load_failure failure;
    struct generation *first = load_generation(NULL, why, sizeof why, &failure);
    if (!first) { say("cannot start: %s", why); rmdir(S.dir); return 1; }
    S.gens = first;
    say("generation %d serving %s", first->number, first->info);
    int listener = -1;
    if (opt->socket_path) {
        /* Before the socket exists: a supervisor may stop serve as soon as it can connect, and
         * SIGTERM's default action would end it there without a drain. */
        struct sigaction quit = {.sa_handler = on_quit, .sa_flags = SA_RESTART};
        sigaction(SIGTERM, &quit, NULL);
        sigaction(SIGINT, &quit, NULL);
        /* Before any other thread runs: open_socket changes the process umask for a moment. */
        listener = open_socket(opt->socket_path, opt->socket_mode);
        if (listener < 0) { S.gens = NULL; retire(first); rmdir(S.dir); return 1; }
    }
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, watcher_main, watch) != 0) { say("cannot start the watcher"); return 1; }

    if (listener >= 0) {
        say("listening on %s", opt->socket_path);
        accept_clients(listener);
        close(listener);
        unlink(opt->socket_path);
    } else {
        /* stdin mode: one client, and main waits for its streams once its input ends. */
        struct client *c = client_new(-1, STDIN_FILENO, STDOUT_FILENO, 2);
        if (c) {
            client_read_lines(c);
            client_release(c); /* the reader's reference */
            pthread_mutex_lock(&S.mu);
            while (c->refs > 1) pthread_cond_wait(&S.changed, &S.mu); /* its streams */
            pthread_mutex_unlock(&S.mu);
            client_release(c); /* main's: the writer finishes the output, then frees c */
        } else {
            say("cannot serve stdin: out of memory or threads");
        }
    }

    /* Shutdown, bounded whatever the clients do: the serving generation is retired like any
     * other (its streams get the drain time; free returns within drain + BP_FREE_GRACE_MS),
     * then every client is cut off, a client that does not read its last lines included. */
    double deadline = now_ms() + opt->drain_ms + BP_FREE_GRACE_MS + 1000;
    /* A load under way may finish first (bounded: it cannot wait for a client); past a second
     * the watcher is left behind, as the process is about to end. */
    char q = 'q';
    if (write(S.wake[1], &q, 1) == 1) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_timedjoin_np(watcher, NULL, &until) != 0) say("a plugin load under way was abandoned at the stop");
    }
    pthread_mutex_lock(&S.mu);
    struct generation *last = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (last) last->state = DRAINING;
    pthread_mutex_unlock(&S.mu);
    if (last) retire(last);
    pthread_mutex_lock(&S.mu);
    int drained = wait_until(no_drainers, deadline);
    pthread_mutex_unlock(&S.mu);
    clients_shutdown(SHUT_RDWR);
    pthread_mutex_lock(&S.mu);
    int closed = wait_until(no_clients, now_ms() + 1000);
    long swaps = S.swaps, refused = S.refused;
    int mapped = 0;
    for (struct generation *g = S.gens; g; g = g->next) mapped++;
    pthread_mutex_unlock(&S.mu);
    if (!drained) say("a generation was still draining at the deadline (a call into it had not returned)");
    if (!closed) say("a client's output could not be finished");
    say("stopped after %ld swaps (%ld refused); %d generations stay mapped", swaps, refused, mapped);
    rmdir(S.dir);
    return 0;
}
