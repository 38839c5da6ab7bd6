/*
 * bp_provider_free racing blocking calls, as a C host meets it, to run under valgrind: each
 * round, two threads are inside bp_discover and bp_embed (the emulator holds both answers for
 * 10 s) when the main thread frees the provider. free must cut both short (SHUTTING_DOWN),
 * wait for them to stop using the provider, answer OK well before the 10 s, and nothing may
 * touch freed memory. The copy is dlclosed only once every thread has returned (the header's
 * rule for hosts).
 * usage: free_race <plugin.so> <emulator endpoint> <rounds>; prints "N passed, M failed".
 */
#define _GNU_SOURCE
#include "bedrock_plugin.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
static const bp_api *api;

static void check(int ok, const char *what, const char *detail) {
    if (ok) passed++;
    else { failed++; fprintf(stderr, "FAILED: %s%s%s\n", what, detail ? ": " : "", detail ? detail : ""); }
}

struct caller {
    bp_provider *provider;
    int embed;
    int32_t rc;
    char *err;
    pthread_t thread;
};

static void *call(void *arg) {
    struct caller *c = arg;
    char *out = NULL;
    c->rc = c->embed ? api->embed(c->provider, "{\"texts\":[\"a\"]}", &out, &c->err) : api->discover(c->provider, NULL, &out, &c->err);
    api->string_free(out);
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s <plugin.so> <endpoint> <rounds>\n", argv[0]); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    const bp_api *(*get_api)(uint32_t);
    *(void **)&get_api = dlsym(h, "bp_get_api");
    api = get_api ? get_api(BP_ABI_VERSION_MAJOR) : NULL;
    if (!api) { fprintf(stderr, "no bp_get_api\n"); return 2; }
    char config[512];
    snprintf(config, sizeof config,
             "{\"provider\":{\"baseUrl\":\"%s\",\"models\":[{\"id\":\"emulator.echo\"}]}}", argv[2]);
    int rounds = atoi(argv[3]);
    for (int round = 0; round < rounds; round++) {
        bp_provider *p = NULL;
        char *err = NULL;
        if (api->provider_new(config, &p, &err) != BP_OK) { check(0, "provider_new", err); api->string_free(err); break; }
        struct caller callers[2] = {{.provider = p, .embed = 0}, {.provider = p, .embed = 1}};
        for (int i = 0; i < 2; i++) pthread_create(&callers[i].thread, NULL, call, &callers[i]);
        /* Both requests reach the emulator well within this, even under valgrind. */
        sleep(2);
        double began = now_s();
        int32_t rc = api->provider_free(p, 0);
        double took = now_s() - began;
        check(rc == BP_OK, "free answers OK with only calls in flight", NULL);
        check(took < 5.0, "free returns long before the emulator's answers", NULL);
        for (int i = 0; i < 2; i++) {
            pthread_join(callers[i].thread, NULL);
            check(callers[i].rc == BP_ERR_SHUTTING_DOWN && callers[i].err && strstr(callers[i].err, "cut short"),
                  callers[i].embed ? "bp_embed is cut short" : "bp_discover is cut short", callers[i].err);
            api->string_free(callers[i].err);
        }
    }
    dlclose(h);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
