/*
 * The `bp-host serve` line protocol: one JSON object per line in, one per line out.
 *   in:  {"id": "r1", "model": ..., "context": ..., "options": ...}   start a stream
 *        {"cancel": "r1"}                                             cancel it
 *        {"op": "models"} | {"op": "status"} | {"op": "swap"}
 *   out: {"id": "r1", "generation": N, "event": <plugin event>}        in order per request; the
 *        last one carries the terminal done/error event
 *        {"id": "r1", "generation": N, "startError": <err_json>}       the request's only line
 *        {"op": ..., ...} answers; {"error": "..."} for a line that could not be read
 */
#define _GNU_SOURCE
#include "serve_internal.h"
#include "json.h"
#include <stdlib.h>
#include <string.h>

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

/* The plugin's callback, on its delivery threads: formats the line and queues it (never waits
 * for the client). */
static int32_t on_event(void *user, const char *json, size_t len) {
    struct request *r = user;
    struct buf b = {0};
    puts_(&b, "{\"id\":");
    puts_(&b, r->id);
    putf(&b, ",\"generation\":%d,\"event\":", r->gen->number);
    put(&b, json, len);
    put(&b, "}", 1);
    client_send(r->client, &b);
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

/* The line without its "id" member: what bp_stream_start takes (NULL when out of memory). */
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
    if (b.failed) { free(b.p); return NULL; }
    return b.p;
}

static void start_request(struct client *c, const char *line) {
    const char *idp = member(line, "id");
    const char *id_end = string_end(idp);
    if (!id_end) { send_error(c, "a request needs a string \"id\""); return; }
    struct generation *g = enter_serving();
    if (!g) { send_error(c, "no plugin generation is serving"); return; }
    struct request *r = calloc(1, sizeof *r);
    char *body = request_body(line);
    char *id = strndup(idp, (size_t)(id_end - idp));
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
        client_send(c, &b);
        g->api->string_free(err);
    }
    leave(g);
    request_release(r);
}

int cancel_requests(struct client *c, const char *id, size_t id_len) {
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

static void answer_status(struct client *c) {
    struct buf b = {0};
    pthread_mutex_lock(&S.mu);
    static const char *const STATE_NAMES[] = {"serving", "draining", "pinned"};
    struct generation *serving = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    int mapped = 0, pinned = 0, clients = 0;
    for (struct client *k = S.clients; k; k = k->next) clients++;
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
    putf(&b, "],\"swaps\":%ld,\"refused\":%ld,\"unloaded\":%ld,\"oldStillMapped\":%d,\"pinned\":%d,", S.swaps, S.refused, S.unloaded,
         mapped, pinned);
    putf(&b, "\"clients\":%d,\"stalledClients\":%ld,\"lastSwapMs\":%.3f,\"lastDrainMs\":%.3f,", clients, S.stalled_clients,
         S.last_swap_ms, S.last_drain_ms);
    pthread_mutex_unlock(&S.mu);
    putf(&b, "\"headroom\":{\"freePthreadKeys\":%d,\"rssKiB\":%ld}}", free_pthread_keys(), rss_kib());
    client_send(c, &b);
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
    g->api->string_free(out);
    g->api->string_free(err);
    leave(g);
    client_send(c, &b);
}

void handle_line(struct client *c, const char *line) {
    const char *p = skip_ws(line);
    if (!*p) return;
    if (*p != '{') { send_error(c, "each line must be one JSON object"); return; }
    const char *cancel = member(p, "cancel");
    const char *op = member(p, "op");
    if (cancel) {
        const char *end = string_end(cancel);
        if (!end || !cancel_requests(c, cancel, (size_t)(end - cancel))) {
            struct buf b = {0};
            puts_(&b, "{\"cancel\":");
            puts_(&b, end ? "" : "null");
            if (end) put(&b, cancel, (size_t)(end - cancel));
            puts_(&b, ",\"error\":\"no stream of this client is in flight with this id\"}");
            client_send(c, &b);
        }
    } else if (op) {
        char name[32];
        read_string(op, name, sizeof name);
        if (strcmp(name, "status") == 0) answer_status(c);
        else if (strcmp(name, "models") == 0) answer_models(c);
        else if (strcmp(name, "swap") == 0) {
            request_swap();
            struct buf b = {0};
            puts_(&b, "{\"op\":\"swap\",\"queued\":true}");
            client_send(c, &b);
        } else send_error(c, "unknown op (status, models, swap)");
    } else {
        start_request(c, p);
    }
}
