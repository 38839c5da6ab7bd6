/* `bp-host serve`: a small long-running gateway that keeps serving while the plugin is replaced. */
#ifndef BP_HOST_SERVE_H
#define BP_HOST_SERVE_H

#include <stddef.h>
#include <stdint.h>

struct serve_options {
    const char *plugin_path; /* watched; every generation is loaded from a private copy of it   */
    const char *config;      /* the init JSON every generation is built with                    */
    const char *socket_path; /* NULL: one client on stdin/stdout                                */
    uint32_t drain_ms;       /* how long an old generation's streams may run before cancelled   */
    int socket_mode;         /* permissions of the socket file (default 0600: owner only)       */
    size_t client_buffer;    /* output bytes queued per client before it counts as stalled      */
    int require_digest;      /* refuse a build without "<plugin_path>.sha256" beside it (default) */
};

/* Runs until stdin ends (then waits for its streams) or, with a socket, until SIGTERM/SIGINT. */
int cmd_serve(const struct serve_options *options);

#endif
