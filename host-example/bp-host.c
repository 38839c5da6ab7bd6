/*
 * bp-host — the example gateway host for bedrock-plugin.
 *
 *   bp-host [--plugin PATH] [--config FILE] models [list] [--json] [--refresh]
 *   bp-host [--plugin PATH] [--config FILE] chat --model ID [--max-tokens N] PROMPT
 *   bp-host [--plugin PATH] [--config FILE] serve [--socket PATH] [--socket-mode OCTAL]
 *           [--drain-ms N] [--client-buffer BYTES] [--no-digest]
 *
 * Loads the plugin with dlopen (default: ../target/release/libbedrock_plugin.so next to this
 * program, or $BP_PLUGIN), refuses a different ABI major version, and streams text to stdout as
 * it arrives. The config file is the plugin's init JSON ({"provider": {...}}); without one the
 * host uses real Amazon Bedrock with a few well-known models.
 */
#define _GNU_SOURCE
#include "bedrock_plugin.h"
#include "json.h"
#include "serve.h"
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __APPLE__
#define PLUGIN_SUFFIX ".dylib"
#else
#define PLUGIN_SUFFIX ".so"
#endif

static const char DEFAULT_CONFIG[] =
    "{\"provider\":{\"api\":\"bedrock-converse-stream\",\"auth\":\"aws-sdk\",\"models\":["
    "{\"id\":\"us.anthropic.claude-sonnet-4-5-20250929-v1:0\",\"name\":\"Claude Sonnet 4.5\",\"reasoning\":true,"
    "\"input\":[\"text\",\"image\"],\"cost\":{\"input\":3,\"output\":15,\"cacheRead\":0.3,\"cacheWrite\":3.75},"
    "\"contextWindow\":200000,\"maxTokens\":8192},"
    "{\"id\":\"us.amazon.nova-pro-v1:0\",\"name\":\"Nova Pro\",\"input\":[\"text\",\"image\"],"
    "\"cost\":{\"input\":0.8,\"output\":3.2},\"contextWindow\":300000,\"maxTokens\":5000}]}}";

struct api {
    uint32_t (*abi_version)(void);
    int32_t (*provider_new)(const char *, bp_provider **, char **);
    int32_t (*stream_start)(bp_provider *, const char *, bp_event_fn, void *, bp_stream **, char **);
    void (*stream_release)(bp_stream *);
    int32_t (*provider_free)(bp_provider *, uint32_t);
    void (*string_free)(char *);
    int32_t (*discover)(bp_provider *, const char *, char **, char **); /* ABI 1.1 */
    int32_t (*embed)(bp_provider *, const char *, char **, char **);    /* ABI 1.4 */
};

/* ---- commands ---- */

static void print_model_row(const char *m) {
    char id[512], name[256], input[64] = "";
    read_string(member(m, "id"), id, sizeof id);
    const char *n = member(m, "name");
    if (n) read_string(n, name, sizeof name); else snprintf(name, sizeof name, "%.*s", (int)sizeof name - 1, id);
    const char *in = member(m, "input");
    if (!in) snprintf(input, sizeof input, "text");
    else {
        if (strstr(in, "\"text\"") && strstr(in, "\"text\"") < value_end(in)) strcat(input, "text");
        if (strstr(in, "\"image\"") && strstr(in, "\"image\"") < value_end(in)) strcat(input, input[0] ? "+image" : "image");
    }
    const char *r = member(m, "reasoning");
    printf("%-48s %-28s %-11s %8.0f %8.0f %s\n", id, name, input, number(member(m, "contextWindow")),
           number(member(m, "maxTokens")), r && strncmp(r, "true", 4) == 0 ? "yes" : "no");
}

/* Prints a models array as a table: global cross-region profiles first, like `openclaw models list`. */
static int print_models(const char *models) {
    printf("%-48s %-28s %-11s %8s %8s %s\n", "ID", "NAME", "INPUT", "CONTEXT", "MAX OUT", "REASONING");
    if (!models || *models != '[') return 0;
    int count = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = skip_ws(models + 1);
        while (*p == '{') {
            const char *id = member(p, "id");
            int global = id && strncmp(id, "\"global.", 8) == 0;
            if (global == (pass == 0)) { print_model_row(p); count++; }
            p = skip_ws(value_end(p));
            if (*p == ',') p = skip_ws(p + 1);
        }
    }
    return count;
}

/* One line on stderr saying where the list came from (discovery status, region, identity). */
static void print_discovery_summary(const char *out, int count) {
    const char *d = member(out, "discovery");
    char status[32] = "?", region[64] = "?", region_source[64] = "?", auth[256] = "?", reason[512] = "";
    if (d) {
        read_string(member(d, "status"), status, sizeof status);
        read_string(member(d, "region"), region, sizeof region);
        read_string(member(d, "regionSource"), region_source, sizeof region_source);
        const char *a = member(d, "authSource");
        if (a) read_string(member(a, "origin"), auth, sizeof auth);
        const char *r = member(d, "reason");
        if (r) read_string(r, reason, sizeof reason);
    }
    fprintf(stderr, "%d models; discovery %s%s%s; region %s (from %s); auth from %s\n", count, status, reason[0] ? ": " : "",
            reason, region, region_source, auth);
}

static int cmd_models(struct api *api, const char *config, int json, int refresh) {
    if (!api->discover) {
        /* An ABI 1.0 plugin cannot discover: list the configured models only. */
        const char *provider = member(config, "provider");
        print_models(provider ? member(provider, "models") : NULL);
        return 0;
    }
    char *err = NULL, *out = NULL;
    bp_provider *provider = NULL;
    if (api->provider_new(config, &provider, &err) != BP_OK) {
        fprintf(stderr, "init: %s\n", err ? err : "failed");
        api->string_free(err);
        return 1;
    }
    int status = 0;
    if (api->discover(provider, refresh ? "{\"refresh\":true}" : NULL, &out, &err) != BP_OK) {
        fprintf(stderr, "discover: %s\n", err ? err : "failed");
        api->string_free(err);
        status = 1;
    } else if (json) {
        printf("%s\n", out);
    } else {
        print_discovery_summary(out, print_models(member(out, "models")));
    }
    api->string_free(out);
    api->provider_free(provider, 10000);
    return status;
}

struct chat {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
    int failed;
    char *buf; /* decoding buffer, reused */
    size_t cap;
};

static int32_t on_event(void *user, const char *json, size_t len) {
    struct chat *c = user;
    if (len + 8 > c->cap) {
        char *bigger = realloc(c->buf, len + 8);
        if (!bigger) return 1;
        c->buf = bigger;
        c->cap = len + 8;
    }
    char type[32];
    read_string(member(json, "type"), type, sizeof type);
    if (strcmp(type, "text_delta") == 0) {
        size_t n = read_string(member(json, "delta"), c->buf, c->cap);
        fwrite(c->buf, 1, n, stdout);
        fflush(stdout);
    } else if (strcmp(type, "done") == 0 || strcmp(type, "error") == 0) {
        /* As in pi-ai, "done" carries the final message in "message" and "error" in "error". */
        int failed = strcmp(type, "error") == 0;
        const char *message = member(json, failed ? "error" : "message");
        const char *usage = message ? member(message, "usage") : NULL;
        char reason[32];
        read_string(member(json, "reason"), reason, sizeof reason);
        printf("\n\n");
        if (failed) {
            char code[64] = "?";
            const char *info = message ? member(message, "errorInfo") : NULL;
            if (info) read_string(member(info, "code"), code, sizeof code);
            read_string(message ? member(message, "errorMessage") : NULL, c->buf, c->cap);
            fprintf(stderr, "error (%s, %s): %s\n", reason, code, c->buf);
            c->failed = 1;
        }
        printf("stop reason: %s\n", reason);
        if (usage) {
            printf("tokens: %.0f in, %.0f out, %.0f cache read, %.0f cache write (%.0f total)\n",
                   number(member(usage, "input")), number(member(usage, "output")), number(member(usage, "cacheRead")),
                   number(member(usage, "cacheWrite")), number(member(usage, "totalTokens")));
            printf("cost: $%.6f\n", number(member(member(usage, "cost"), "total")));
        }
        pthread_mutex_lock(&c->mu);
        c->finished = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return 0;
}

static int cmd_chat(struct api *api, bp_provider *provider, const char *model, long max_tokens, const char *prompt) {
    size_t cap = strlen(prompt) * 6 + strlen(model) * 6 + 256;
    char *req = malloc(cap);
    if (!req) return 1;
    snprintf(req, cap, "{\"model\":");
    json_string(req, cap, model);
    strcat(req, ",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":");
    json_string(req, cap, prompt);
    snprintf(req + strlen(req), cap - strlen(req), "}]},\"options\":{\"maxTokens\":%ld}}", max_tokens);

    struct chat c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0};
    char *err = NULL;
    bp_stream *stream = NULL;
    int32_t rc = api->stream_start(provider, req, on_event, &c, &stream, &err);
    free(req);
    if (rc != BP_OK) {
        fprintf(stderr, "chat: %s\n", err ? err : "failed");
        api->string_free(err);
        return 1;
    }
    pthread_mutex_lock(&c.mu);
    while (!c.finished) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    api->stream_release(stream);
    free(c.buf);
    return c.failed;
}

/* Embeds texts and prints each vector's length and first values. */
static int cmd_embed(struct api *api, bp_provider *provider, const char *model, long dimensions, char **texts, int count) {
    size_t cap = 256 + (model ? strlen(model) * 6 : 0);
    for (int i = 0; i < count; i++) cap += strlen(texts[i]) * 6 + 4;
    char *req = malloc(cap);
    if (!req) return 1;
    snprintf(req, cap, "{\"texts\":[");
    for (int i = 0; i < count; i++) {
        if (i) strcat(req, ",");
        json_string(req, cap, texts[i]);
    }
    strcat(req, "]");
    if (model) {
        strcat(req, ",\"model\":");
        json_string(req, cap, model);
    }
    if (dimensions > 0) snprintf(req + strlen(req), cap - strlen(req), ",\"dimensions\":%ld", dimensions);
    strcat(req, "}");
    char *out = NULL, *err = NULL;
    int32_t rc = api->embed(provider, req, &out, &err);
    free(req);
    if (rc != BP_OK) {
        fprintf(stderr, "embed: %s\n", err ? err : "failed");
        api->string_free(err);
        return 1;
    }
    char name[512] = "";
    read_string(member(out, "model"), name, sizeof name);
    printf("model: %s, dimensions: %.0f\n", name, number(member(out, "dimensions")));
    const char *vector = member(out, "embeddings");
    vector = vector ? skip_ws(vector + 1) : NULL; /* the first vector, inside the outer list */
    for (int i = 0; i < count && vector && *vector == '['; i++) {
        const char *end = value_end(vector), *x = skip_ws(vector + 1);
        int values = 0;
        printf("[%d]", i);
        while (x < end && *x != ']') {
            if (values < 5) printf(" %.6f", number(x));
            values++;
            x = skip_ws(value_end(x));
            if (*x == ',') x = skip_ws(x + 1);
        }
        printf("%s  (%d values) %s\n", values > 5 ? " ..." : "", values, texts[i]);
        vector = skip_ws(end);
        if (*vector == ',') vector = skip_ws(vector + 1);
    }
    api->string_free(out);
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, f) != (size_t)size) { free(text); text = NULL; }
    if (text) text[size] = 0;
    fclose(f);
    return text;
}

static void usage(void) {
    fprintf(stderr, "usage: bp-host [-v] [--plugin PATH] [--config FILE] models [list] [--json] [--refresh]\n"
                    "       bp-host [-v] [--plugin PATH] [--config FILE] chat --model ID [--max-tokens N] PROMPT\n"
                    "       bp-host [--plugin PATH] [--config FILE] serve [--socket PATH] [--socket-mode OCTAL]\n"
                    "               [--drain-ms N] [--client-buffer BYTES] [--no-digest]\n"
                    "       bp-host [-v] [--plugin PATH] [--config FILE] embed [--model ID] [--dimensions N] TEXT...\n"
                    "  -v: the plugin's log records, debug level included, on stderr as \"[level target] message\"\n");
}

/* The plugin's log records (bp_set_log_callback, ABI 1.6), on the plugin's log thread. */
static void on_log(void *user_data, uint32_t level, const char *target, const char *message) {
    static const char *const names[] = {"off", "error", "warn", "info", "debug"};
    (void)user_data;
    fprintf(stderr, "[%s %s] %s\n", level <= BP_LOG_DEBUG ? names[level] : "?", target, message);
}

int main(int argc, char **argv) {
    char default_plugin[PATH_MAX + 64] = "";
    const char *plugin = getenv("BP_PLUGIN"), *config_path = getenv("BP_CONFIG"), *model = NULL, *prompt = NULL, *command = NULL;
    long max_tokens = 1024, drain_ms = 30000, dimensions = 0, socket_mode = 0600, client_buffer = 4L << 20;
    char **texts = calloc((size_t)argc, sizeof *texts);
    int text_count = 0;
    const char *socket_path = NULL;
    int json = 0, refresh = 0, verbose = 0, require_digest = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "-v") == 0) verbose = 1;
        else if (strcmp(argv[i], "--refresh") == 0) refresh = 1;
        else if (strcmp(argv[i], "--no-digest") == 0) require_digest = 0;
        else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) plugin = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config_path = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--max-tokens") == 0 && i + 1 < argc) max_tokens = atol(argv[++i]);
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket_path = argv[++i];
        else if (strcmp(argv[i], "--drain-ms") == 0 && i + 1 < argc) drain_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--socket-mode") == 0 && i + 1 < argc) socket_mode = strtol(argv[++i], NULL, 8);
        else if (strcmp(argv[i], "--client-buffer") == 0 && i + 1 < argc) client_buffer = atol(argv[++i]);
        else if (strcmp(argv[i], "--dimensions") == 0 && i + 1 < argc) dimensions = atol(argv[++i]);
        else if (!command) command = argv[i];
        else if (strcmp(command, "embed") == 0 && texts) texts[text_count++] = argv[i];
        else if (!prompt) prompt = argv[i];
        else { usage(); return 2; }
    }
    int is_models = command && strcmp(command, "models") == 0 && (!prompt || strcmp(prompt, "list") == 0);
    int is_serve = command && strcmp(command, "serve") == 0 && !prompt && drain_ms >= 0 && drain_ms <= UINT32_MAX &&
                   socket_mode > 0 && socket_mode <= 0777 && client_buffer >= 4096;
    int is_embed = command && strcmp(command, "embed") == 0 && text_count > 0 && dimensions >= 0;
    if (!command || (strcmp(command, "chat") == 0 && (!model || !prompt)) || (strcmp(command, "chat") && !is_models && !is_serve && !is_embed)) {
        usage();
        free(texts);
        return 2;
    }
    if (!plugin) {
        /* The build beside this program: host-example/../target/release. */
        char exe[PATH_MAX] = "";
#ifdef __linux__
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
#else
        if (!realpath(argv[0], exe)) exe[0] = 0;
#endif
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(default_plugin, sizeof default_plugin, "%s/../target/release/libbedrock_plugin" PLUGIN_SUFFIX, exe);
        plugin = default_plugin;
    }
    char *config = config_path ? read_file(config_path) : NULL;
    if (config_path && !config) { fprintf(stderr, "cannot read config %s\n", config_path); free(texts); return 1; }

    if (is_serve) {
        /* serve loads (and reloads) the plugin itself, from private copies of this file. */
        struct serve_options options = {plugin, config ? config : DEFAULT_CONFIG, socket_path, (uint32_t)drain_ms, (int)socket_mode,
                                        (size_t)client_buffer, require_digest};
        int status = cmd_serve(&options);
        free(config);
        free(texts);
        return status;
    }
    void *handle = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
    if (!handle) { fprintf(stderr, "cannot load plugin: %s\n", dlerror()); free(config); free(texts); return 1; }
    struct api api;
    *(void **)&api.abi_version = dlsym(handle, "bp_abi_version");
    *(void **)&api.provider_new = dlsym(handle, "bp_provider_new");
    *(void **)&api.stream_start = dlsym(handle, "bp_stream_start");
    *(void **)&api.stream_release = dlsym(handle, "bp_stream_release");
    *(void **)&api.provider_free = dlsym(handle, "bp_provider_free");
    *(void **)&api.string_free = dlsym(handle, "bp_string_free");
    *(void **)&api.discover = (api.abi_version && (api.abi_version() & 0xFFFF) >= 1) ? dlsym(handle, "bp_discover") : NULL;
    *(void **)&api.embed = (api.abi_version && (api.abi_version() & 0xFFFF) >= 4) ? dlsym(handle, "bp_embed") : NULL;
    int32_t (*set_log_callback)(uint32_t, bp_log_fn, void *) = NULL;
    *(void **)&set_log_callback = (api.abi_version && (api.abi_version() & 0xFFFF) >= 6) ? dlsym(handle, "bp_set_log_callback") : NULL;
    if (verbose && set_log_callback) set_log_callback(BP_LOG_DEBUG, on_log, NULL);
    else if (verbose) fprintf(stderr, "plugin ABI %u.%u has no bp_set_log_callback (1.6 or later is needed for -v)\n", api.abi_version() >> 16, api.abi_version() & 0xFFFF);
    int status = 1;
    if (!api.abi_version || !api.provider_new || !api.stream_start || !api.stream_release || !api.provider_free || !api.string_free) {
        fprintf(stderr, "%s is not a bedrock-plugin (missing exports)\n", plugin);
    } else if (api.abi_version() >> 16 != BP_ABI_VERSION_MAJOR) {
        fprintf(stderr, "plugin ABI %u.%u is not compatible with this host (ABI %d.x)\n", api.abi_version() >> 16,
                api.abi_version() & 0xFFFF, BP_ABI_VERSION_MAJOR);
    } else if (is_models) {
        status = cmd_models(&api, config ? config : DEFAULT_CONFIG, json, refresh);
    } else if (is_embed && !api.embed) {
        fprintf(stderr, "plugin ABI %u.%u has no bp_embed (1.4 or later is needed)\n", api.abi_version() >> 16, api.abi_version() & 0xFFFF);
    } else {
        char *err = NULL;
        bp_provider *provider = NULL;
        if (api.provider_new(config ? config : DEFAULT_CONFIG, &provider, &err) != BP_OK) {
            fprintf(stderr, "init: %s\n", err ? err : "failed");
            api.string_free(err);
        } else {
            status = is_embed ? cmd_embed(&api, provider, model, dimensions, texts, text_count) : cmd_chat(&api, provider, model, max_tokens, prompt);
            api.provider_free(provider, 10000);
        }
    }
    /* BP_HOST_KEEP_LOADED=1 keeps the image mapped at exit, so a leak checker can tell the
     * plugin's process statics (still reachable) from real leaks; unloaded, they look lost. */
    const char *keep = getenv("BP_HOST_KEEP_LOADED");
    if (!keep || strcmp(keep, "1") != 0) dlclose(handle);
    free(config);
    free(texts);
    return status;
}
