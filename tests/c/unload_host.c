/*
 * Unload check: each cycle, a short-lived thread dlopens the plugin, calls every export, streams a
 * chat, cancels a second stream, frees the provider and dlcloses; after that thread exits the main
 * thread checks that the image is gone from /proc/self/maps and the thread count is back.
 * usage: unload_host <plugin.so> <endpoint> <cycles>
 */
#define _GNU_SOURCE
#include "bedrock_plugin.h"
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *plugin_path, *endpoint;

struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int terminal;
    int deltas;
    char last_type[32];
};

static int32_t on_event(void *user, const char *json, size_t len) {
    struct sink *s = user;
    (void)len;
    pthread_mutex_lock(&s->mu);
    if (strstr(json, "\"type\":\"text_delta\"")) s->deltas++;
    if (strstr(json, "\"type\":\"done\"") || strstr(json, "\"type\":\"error\"")) {
        const char *t = strstr(json, "\"type\":\"") + 8;
        snprintf(s->last_type, sizeof s->last_type, "%.*s", (int)(strchr(t, '"') - t), t);
        s->terminal++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void wait_terminal(struct sink *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->terminal) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

#define LOAD(name) name##_t name = (name##_t)dlsym(h, #name); if (!name) { fprintf(stderr, "missing %s\n", #name); return (void *)1; }
typedef uint32_t (*bp_abi_version_t)(void);
typedef const char *(*bp_plugin_info_t)(void);
typedef int32_t (*bp_provider_new_t)(const char *, bp_provider **, char **);
typedef int32_t (*bp_stream_start_t)(bp_provider *, const char *, bp_event_fn, void *, bp_stream **, char **);
typedef void (*bp_stream_cancel_t)(bp_stream *);
typedef void (*bp_stream_release_t)(bp_stream *);
typedef int32_t (*bp_provider_free_t)(bp_provider *, uint32_t);
typedef void (*bp_string_free_t)(char *);

static void *cycle(void *arg) {
    (void)arg;
    void *h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return (void *)1; }
    LOAD(bp_abi_version) LOAD(bp_plugin_info) LOAD(bp_provider_new) LOAD(bp_stream_start)
    LOAD(bp_stream_cancel) LOAD(bp_stream_release) LOAD(bp_provider_free) LOAD(bp_string_free)
    if (bp_abi_version() >> 16 != BP_ABI_VERSION_MAJOR) return (void *)2;
    if (!strstr(bp_plugin_info(), "amazon-bedrock")) return (void *)3;

    char *err = NULL;
    bp_provider *p = NULL;
    if (bp_provider_new("{\"provider\":{\"bogus\":1}}", &p, &err) != BP_ERR_CONFIG || !err) return (void *)4;
    bp_string_free(err);

    char config[1024];
    snprintf(config, sizeof config,
             "{\"provider\":{\"baseUrl\":\"%s\",\"api\":\"bedrock-converse-stream\",\"auth\":\"aws-sdk\","
             "\"models\":[{\"id\":\"emulator.echo\",\"name\":\"Echo\"}]}}", endpoint);
    if (bp_provider_new(config, &p, &err) != BP_OK) { fprintf(stderr, "new: %s\n", err); return (void *)5; }

    struct sink chat = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};
    struct sink slow = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};
    const char *req = "{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"emulator: chunks=20\"}]}}";
    const char *long_req = "{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"emulator: chunks=100 delay_ms=50\"}]}}";
    bp_stream *s1 = NULL, *s2 = NULL;
    if (bp_stream_start(p, req, on_event, &chat, &s1, &err) != BP_OK) return (void *)6;
    if (bp_stream_start(p, long_req, on_event, &slow, &s2, &err) != BP_OK) return (void *)7;
    wait_terminal(&chat);
    bp_stream_cancel(s2);
    wait_terminal(&slow);
    if (chat.deltas != 20 || strcmp(chat.last_type, "done") != 0) return (void *)8;
    if (strcmp(slow.last_type, "error") != 0) return (void *)9;
    bp_stream_release(s1);
    if (bp_provider_free(p, 5000) != BP_OK) return (void *)10;
    bp_stream_release(s2); /* valid after free */
    if (dlclose(h) != 0) return (void *)11;
    return NULL;
}

static int count_threads(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int image_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f)) if (strstr(line, "bedrock_plugin")) found = 1;
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: unload_host <plugin.so> <endpoint> <cycles>\n"); return 2; }
    plugin_path = argv[1];
    endpoint = argv[2];
    int cycles = atoi(argv[3]), passed = 0, failed = 0;
    int base = count_threads();
    for (int i = 0; i < cycles; i++) {
        pthread_t t;
        void *rc = NULL;
        pthread_create(&t, NULL, cycle, NULL);
        pthread_join(t, &rc);
        /* pthread_join (ours, and the plugin's of its own threads) returns when the kernel clears
         * the thread id, a moment before it drops the task from /proc/self/task: give the count
         * that moment. A thread the plugin really left behind stays and fails the cycle. */
        int threads = count_threads();
        for (int wait_ms = 0; threads != base && wait_ms < 2000; wait_ms += 10) {
            usleep(10 * 1000);
            threads = count_threads();
        }
        int mapped = image_mapped();
        int ok = rc == NULL && threads == base && !mapped;
        printf("cycle %d: rc=%ld threads=%d (start %d) mapped=%d %s\n", i + 1, (long)rc, threads, base, mapped, ok ? "ok" : "FAILED");
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
