/*
 * The bad-input table as a C host meets it, to run under valgrind: every row must get its status
 * code and a JSON error naming the problem, and nothing may read or write out of bounds or leak.
 * usage: bad_input <plugin.so> <emulator endpoint>; prints "N passed, M failed".
 */
#include "bedrock_plugin.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static const bp_api *api;

static void check(int ok, const char *what, const char *detail) {
    if (ok) passed++;
    else { failed++; fprintf(stderr, "FAILED: %s%s%s\n", what, detail ? ": " : "", detail ? detail : ""); }
}

/* One call's outcome: its status, and err_json freed after checking it names `says`. */
static void expect(int32_t rc, char *err, int32_t want, const char *says, const char *what) {
    int ok = rc == want && (want == BP_OK || (err != NULL && strstr(err, says) != NULL && strstr(err, "\"code\"") != NULL));
    check(ok, what, err);
    api->string_free(err);
}

/* `call` may use `&err`; it runs before err_json is read (an argument list would not say). */
#define EXPECT(call, want, says, what) do { char *err = NULL; int32_t rc_ = (call); expect(rc_, err, want, says, what); } while (0)

struct row { const char *json; int32_t code; const char *says; };

static const struct row configs[] = {
    {"{not json", BP_ERR_CONFIG, "config is not valid JSON"},
    {"{\"provider\":", BP_ERR_CONFIG, "config is not valid JSON"},
    {"[]", BP_ERR_CONFIG, "expected an object, got an array"},
    {"{}", BP_ERR_CONFIG, "provider: is required"},
    {"{\"provider\":{},\"extra\":1}", BP_ERR_CONFIG, "extra: unknown field"},
    {"{\"provider\":{\"baseUrl\":\"ftp://x\"}}", BP_ERR_CONFIG, "provider.baseUrl"},
    {"{\"provider\":{\"apiKey\":42}}", BP_ERR_CONFIG, "provider.apiKey: expected a string"},
    {"{\"provider\":{\"region\":\"Not A Region\"}}", BP_ERR_CONFIG, "provider.region"},
    {"{\"provider\":{\"models\":[{\"id\":\"a\",\"contextWindow\":\"big\"}]}}", BP_ERR_CONFIG, "contextWindow: expected an integer"},
    {"{\"provider\":{\"models\":[{\"id\":\"..\"}]}}", BP_ERR_CONFIG, "is not a model id"},
    {"{\"provider\":{\"models\":[{\"id\":\"a\"},{\"id\":\"a\"}]}}", BP_ERR_CONFIG, "duplicate model id"},
    {"{\"provider\":{\"caBundle\":\"/nonexistent/ca.pem\"}}", BP_ERR_CONFIG, "provider.caBundle: cannot read"},
    {"{\"provider\":{},\"discovery\":{\"refreshInterval\":-1}}", BP_ERR_CONFIG, "discovery.refreshInterval"},
    {"{\"provider\":{\"baseUrl\":\"http://\xff\"}}", BP_ERR_INVALID_ARGUMENT, "not valid UTF-8"},
};

static const struct row requests[] = {
    {"{\"model\":", BP_ERR_INVALID_ARGUMENT, "request is not valid JSON"},
    {"\"just a string\"", BP_ERR_INVALID_ARGUMENT, "expected an object"},
    {"{\"model\":\"nope\",\"context\":{\"messages\":[]}}", BP_ERR_NOT_FOUND, "unknown model"},
    {"{\"model\":5,\"context\":{\"messages\":[]}}", BP_ERR_INVALID_ARGUMENT, "model: expected a model id or a model object"},
    {"{\"model\":\"emulator.echo\"}", BP_ERR_INVALID_ARGUMENT, "context: is required"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[]}}", BP_ERR_INVALID_ARGUMENT, "at least one user message"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}}", BP_ERR_INVALID_ARGUMENT, "context.messages[0].role"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":7}]}}", BP_ERR_INVALID_ARGUMENT, "expected a string or an array"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}}", BP_ERR_INVALID_ARGUMENT, "context.messages[0].content[0]"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},\"options\":{\"maxTokens\":0}}", BP_ERR_INVALID_ARGUMENT, "options.maxTokens: must be at least 1"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},\"options\":{\"temperature\":1.5}}", BP_ERR_INVALID_ARGUMENT, "options.temperature"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},\"options\":{\"maxTokens\":1e300}}", BP_ERR_INVALID_ARGUMENT, "options.maxTokens"},
    {"{\"model\":{\"id\":\"..\"},\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}}", BP_ERR_INVALID_ARGUMENT, "is not a model id"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"name\":\"\",\"parameters\":{}}]}}", BP_ERR_INVALID_ARGUMENT, "context.tools[0].name"},
    {"{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}}", BP_ERR_INVALID_ARGUMENT, "not valid UTF-8"},
};

/* A stream's callback: counts events, remembers the terminal one, and cancels and releases its
 * own stream from inside on the first event when asked (re-entering the ABI). */
struct watch {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int events, terminal, reenter;
    bp_stream *self;
};

static int32_t on_event(void *user, const char *json, size_t len) {
    struct watch *w = user;
    pthread_mutex_lock(&w->lock);
    w->events++;
    if (w->reenter && w->events == 1) {
        api->stream_cancel(w->self);
    }
    if (strncmp(json, "{\"type\":\"done\"", 14) == 0 || strncmp(json, "{\"type\":\"error\"", 15) == 0) w->terminal++;
    (void)len;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* reenter: cancel from inside the callback; no_handle: start with out NULL (allowed: a stream the
 * host will never cancel or release). */
static void run_stream(bp_provider *p, const char *request, int reenter, int no_handle, const char *want_terminal, const char *what) {
    struct watch w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, reenter, NULL};
    char *err = NULL;
    pthread_mutex_lock(&w.lock);
    int32_t rc = api->stream_start(p, request, on_event, &w, no_handle ? NULL : &w.self, &err);
    check(rc == BP_OK, what, err);
    api->string_free(err);
    if (rc != BP_OK) { pthread_mutex_unlock(&w.lock); return; }
    while (!w.terminal) pthread_cond_wait(&w.cv, &w.lock);
    pthread_mutex_unlock(&w.lock);
    api->stream_release(w.self);
    check(w.terminal == 1, what, want_terminal);
    /* The callback may still be returning from the terminal event; w lives on this stack. */
    pthread_mutex_lock(&w.lock);
    pthread_mutex_unlock(&w.lock);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: bad_input <plugin.so> <endpoint>\n"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    const bp_api *(*get_api)(uint32_t) = (const bp_api *(*)(uint32_t))dlsym(h, "bp_get_api");
    api = get_api ? get_api(BP_ABI_VERSION_MAJOR) : NULL;
    if (!api) { fprintf(stderr, "no bp_get_api table\n"); return 2; }

    bp_provider *p = NULL;
    char *err = NULL;
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        err = NULL;
        int32_t rc = api->provider_new(configs[i].json, &p, &err);
        check(p == NULL, "no provider for a bad config", configs[i].json);
        expect(rc, err, configs[i].code, configs[i].says, configs[i].json);
    }
    EXPECT(api->provider_new(NULL, &p, &err), BP_ERR_INVALID_ARGUMENT, "config_json is NULL", "NULL config");
    check(api->provider_new(NULL, &p, NULL) == BP_ERR_INVALID_ARGUMENT, "NULL config, NULL err_json", NULL);

    char config[512];
    snprintf(config, sizeof config,
             "{\"provider\":{\"baseUrl\":\"%s\",\"models\":[{\"id\":\"emulator.echo\",\"name\":\"Echo\"}]},\"discovery\":{\"enabled\":false}}", argv[2]);
    EXPECT(api->provider_new(config, NULL, &err), BP_ERR_INVALID_ARGUMENT, "out is NULL", "NULL out");
    EXPECT(api->provider_new(config, &p, &err), BP_OK, NULL, "a good config");
    if (!p) return 1;

    bp_stream *s = NULL;
    const char *good = "{\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"emulator: chunks=5\"}]}}";
    for (size_t i = 0; i < sizeof requests / sizeof *requests; i++) {
        err = NULL;
        s = NULL;
        int32_t rc = api->stream_start(p, requests[i].json, on_event, NULL, &s, &err);
        check(s == NULL, "no stream for a bad request", requests[i].json);
        expect(rc, err, requests[i].code, requests[i].says, requests[i].json);
    }
    EXPECT(api->stream_start(NULL, good, on_event, NULL, &s, &err), BP_ERR_INVALID_ARGUMENT, "provider is NULL", "NULL provider");
    EXPECT(api->stream_start(p, NULL, on_event, NULL, &s, &err), BP_ERR_INVALID_ARGUMENT, "request_json is NULL", "NULL request");
    EXPECT(api->stream_start(p, good, NULL, NULL, &s, &err), BP_ERR_INVALID_ARGUMENT, "on_event is NULL", "NULL callback");
    char *out = NULL;
    EXPECT(api->discover(p, "[1,2]", &out, &err), BP_ERR_INVALID_ARGUMENT, "options", "discover with bad options");
    EXPECT(api->embed(p, "{\"texts\":3}", &out, &err), BP_ERR_INVALID_ARGUMENT, "texts", "embed with bad texts");
    api->stream_cancel(NULL);
    api->stream_release(NULL);
    api->string_free(NULL);
    check(api->set_log_callback(9, NULL, NULL) == BP_ERR_INVALID_ARGUMENT, "log level 9 refused", NULL);

    run_stream(p, good, 0, 0, "one terminal event", "a good stream");
    run_stream(p, good, 1, 0, "one terminal event after cancelling from inside", "a stream cancelled from its callback");
    run_stream(p, good, 0, 1, "one terminal event", "a stream started without a handle");

    check(api->provider_free(p, 5000) == BP_OK, "provider_free", NULL);
    check(api->provider_free(NULL, 0) == BP_ERR_INVALID_ARGUMENT, "provider_free(NULL)", NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
