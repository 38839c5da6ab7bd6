/*
 * Swap endurance, as a gateway lives it: each cycle loads a private copy of the build (copied,
 * dlopened, unlinked), starts a provider, streams one chat to its end, frees the provider and
 * dlcloses the copy. Past glibc's 1,024 pthread keys a copy that keeps one key per load aborts
 * the process ("out of TLS keys"); here the free keys are counted every 100 cycles (created
 * until EAGAIN, then deleted) with the RSS, and no copy may stay mapped.
 * usage: swap_endurance <plugin.so> <emulator endpoint> <cycles> <scratch dir> [keys to hold]
 * With keys to hold, the host first takes that many pthread keys of its own: a load that cannot
 * have a key must then be refused by bp_provider_new ("pthread keys"), never abort the process.
 * prints "cycle N: free keys K, rss R KiB" lines, then "N passed, M failed" and "refused N".
 */
#define _GNU_SOURCE
#include "bedrock_plugin.h"
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

static void check(int ok, const char *what, long cycle) {
    if (ok) passed++;
    else { failed++; fprintf(stderr, "FAILED at cycle %ld: %s\n", cycle, what); }
}

static int free_keys(void) {
    static pthread_key_t keys[1100];
    int n = 0;
    while (n < 1100 && pthread_key_create(&keys[n], NULL) == 0) n++;
    for (int i = 0; i < n; i++) pthread_key_delete(keys[i]);
    return n;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

static int mapped(const char *path) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, path)) found = 1;
    if (f) fclose(f);
    return found;
}

static int copy(const char *from, const char *to) {
    int in = open(from, O_RDONLY | O_CLOEXEC), out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
    struct stat st;
    int ok = in >= 0 && out >= 0 && fstat(in, &st) == 0;
    off_t off = 0;
    while (ok && off < st.st_size) ok = sendfile(out, in, &off, (size_t)(st.st_size - off)) > 0;
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0) ok = 0;
    return ok ? 0 : -1;
}

struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ended;
    int done;
};

static int32_t on_event(void *user, const char *json, size_t len) {
    struct sink *s = user;
    (void)len;
    int terminal = strncmp(json, "{\"type\":\"done\"", 14) == 0 || strncmp(json, "{\"type\":\"error\"", 15) == 0;
    if (terminal) {
        pthread_mutex_lock(&s->mu);
        s->ended = 1;
        s->done = json[9] == 'd';
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) { fprintf(stderr, "usage: %s <plugin.so> <endpoint> <cycles> <dir> [keys to hold]\n", argv[0]); return 2; }
    long cycles = atol(argv[3]);
    int hold = argc == 6 ? atoi(argv[5]) : 0, held = 0, refused = 0;
    static pthread_key_t mine[1100];
    while (held < hold && held < 1100 && pthread_key_create(&mine[held], NULL) == 0) held++;
    char config[512];
    snprintf(config, sizeof config, "{\"provider\":{\"baseUrl\":\"%s\",\"models\":[{\"id\":\"emulator.echo\"}]},\"discovery\":{\"enabled\":false}}", argv[2]);
    const char *request = "{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"emulator: chunks=2\"}]}}";
    int keys_at_start = free_keys();
    printf("cycle 0: free keys %d, rss %ld KiB\n", keys_at_start, rss_kib());
    for (long cycle = 1; cycle <= cycles; cycle++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/copy-%ld.so", argv[4], cycle);
        if (copy(argv[1], path) != 0) { check(0, "copy the build", cycle); break; }
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        unlink(path);
        if (!h) { check(0, dlerror(), cycle); break; }
        const bp_api *(*get_api)(uint32_t);
        *(void **)&get_api = dlsym(h, "bp_get_api");
        const bp_api *api = get_api ? get_api(BP_ABI_VERSION_MAJOR) : NULL;
        bp_provider *p = NULL;
        char *err = NULL;
        int32_t rc = api ? api->provider_new(config, &p, &err) : -1;
        if (rc != BP_OK && err && strstr(err, "pthread keys")) {
            /* Refused cleanly: the host keeps serving with what it has. */
            refused++;
            api->string_free(err);
            dlclose(h);
            continue;
        }
        if (rc != BP_OK) { check(0, err ? err : "provider_new", cycle); break; }
        struct sink s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
        bp_stream *stream = NULL;
        if (api->stream_start(p, request, on_event, &s, &stream, &err) != BP_OK) { check(0, err ? err : "stream_start", cycle); break; }
        pthread_mutex_lock(&s.mu);
        while (!s.ended) pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        check(s.done, "the stream ends with done", cycle);
        api->stream_release(stream);
        check(api->provider_free(p, 5000) == BP_OK, "free answers OK", cycle);
        dlclose(h);
        if (cycle % 100 == 0 || cycle == cycles) {
            int keys = free_keys();
            check(!mapped(path), "the copy is unmapped after dlclose", cycle);
            check(keys >= keys_at_start - 1, "pthread keys stay flat", cycle);
            printf("cycle %ld: free keys %d, rss %ld KiB\n", cycle, keys, rss_kib());
            fflush(stdout);
        }
    }
    printf("%d passed, %d failed\nrefused %d (held %d keys)\n", passed, failed, refused, held);
    return failed ? 1 : 0;
}
