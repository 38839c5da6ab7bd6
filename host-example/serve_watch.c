/*
 * The watcher of `bp-host serve`: swaps on SIGHUP, on {"op":"swap"}, and when the plugin file
 * changes on disk (inotify on its directory, since a deploy renames a new file over the old
 * one; elsewhere the file's status is polled). A change is loaded once the file has been quiet
 * for 100 ms, so a writer can finish; a change that leaves the build serving in place (an event
 * that outlived the deploy already loaded, the same build redeployed) is no swap.
 */
#define _GNU_SOURCE
#include "serve_internal.h"
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif


/* From the SIGHUP handler and {"op":"swap"}: async-signal-safe (one write to a pipe). */
void request_swap(void) {
    char h = 'h';
    ssize_t ignored = write(S.wake[1], &h, 1);
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

#ifdef __linux__
/* Reads what the watch has queued; true if any of it names the build or its digest (a deploy
 * may write the digest after the build). */
static int read_events(struct watch *w) {
    int named = 0;
    size_t len = strlen(w->name);
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(w->fd, events, sizeof events)) > 0) {
        for (char *p = events; p < events + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->len && strncmp(e->name, w->name, len) == 0 && (!e->name[len] || strcmp(e->name + len, ".sha256") == 0)) named = 1;
            p += sizeof *e + e->len;
        }
    }
    return named;
}
#endif

/* Whether the plugin file changed, reading what the watch has queued (waits up to timeout_ms). */
static int file_changed(struct watch *w, int timeout_ms) {
#ifdef __linux__
    if (w->fd >= 0) {
        /* Events for other files in the directory (a deploy's temporary file being closed, just
         * before it is renamed over the build) are no sign of quiet: wait out the whole time. */
        double deadline = now_ms() + timeout_ms;
        for (double left = timeout_ms; left >= 0; left = deadline - now_ms()) {
            struct pollfd pfd = {w->fd, POLLIN, 0};
            if (poll(&pfd, 1, (int)left) <= 0) return 0;
            if (read_events(w)) return 1;
        }
        return 0;
    }
#endif
    if (timeout_ms > 0) usleep((useconds_t)timeout_ms * 1000);
    struct stat now;
    if (stat(S.opt->plugin_path, &now) != 0 || same_file_state(&now, &w->last)) return 0;
    w->last = now;
    return 1;
}

/* Starts watching the plugin file. Done before serve answers anything, so that a change made
 * right after its first answer cannot be missed. */
struct watch *watch_start(void) {
    static struct watch watch;
    struct watch *w = &watch;
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
    return w;
}

void *watcher_main(void *arg) {
    struct watch *w = arg;
    for (;;) {
        struct pollfd fds[2] = {{S.wake[0], POLLIN, 0}, {w->fd, POLLIN, 0}};
        int pending = 0, requested = 0;
        if (poll(fds, w->fd >= 0 ? 2 : 1, w->fd >= 0 ? -1 : 500) < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            char c;
            while (read(S.wake[0], &c, 1) == 1) {
                if (c == 'q') goto out;
                pending = requested = 1;
            }
        }
        if (file_changed(w, 0)) pending = 1;
        if (!pending) continue;
        for (int tries = 0;; tries++) {
            /* Let a writer finish: load once the file has been quiet for 100 ms. */
            while (file_changed(w, 100)) {}
            if (swap(tries >= 2, requested) != SWAP_LATER) break;
            /* The build or its digest looked half-written (it changed while copied, or does not
             * match): a deploy still at work changes the file again soon; look again then, or
             * after a second, and report the refusal on the third look. */
            file_changed(w, 1000);
        }
    }
out:
    if (w->fd >= 0) close(w->fd);
    return NULL;
}

