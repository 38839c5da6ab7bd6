/*
 * bedrock_plugin.h — the C ABI of bedrock-plugin, the Amazon Bedrock model provider.
 *
 * This header is the whole contract (ABI version 1.8). Load the plugin with dlopen, check
 * bp_abi_version() before anything else, and refuse a plugin whose major version differs; a host
 * that loads more than one copy (hot swap) takes every function from bp_get_api(BP_ABI_VERSION_MAJOR).
 * Minor versions add functions and fields: 1.1 added bp_discover; 1.2 gave the terminal "error"
 * event pi-ai's exact shape (see bp_event_fn), the one change to existing JSON, made so that a
 * pi-ai host reads every event unchanged; 1.3 added bp_get_api; 1.4 added bp_embed;
 * 1.5 added bp_stream_start_batched; 1.6 added bp_set_log_callback; 1.7 added the mailbox
 * (bp_mailbox_new, bp_stream_start_mailbox, bp_mailbox_wait, bp_mailbox_close, bp_mailbox_free);
 * 1.8 added bp_stream_start_inline.
 *
 * Ownership: bp_provider_new -> bp_provider_free; bp_stream_start -> bp_stream_release; every
 * char * the plugin returns -> bp_string_free. Strings are UTF-8 and NUL-terminated. No function
 * keeps state on the calling thread: any host thread may call any function.
 *
 * Errors: functions return a bp_status; on failure *err_json (when err_json is not NULL) receives
 * {"code": "...", "message": "...", "retryable": bool, ...}, to be freed with bp_string_free.
 */
#ifndef BEDROCK_PLUGIN_H
#define BEDROCK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BP_ABI_VERSION_MAJOR 1
#define BP_ABI_VERSION_MINOR 8
/* The most bp_provider_free takes beyond its drain_timeout_ms, whatever the host's callbacks do. */
#define BP_FREE_GRACE_MS 2000u
/* Largest config_json / request_json accepted, in bytes (larger input: BP_ERR_TOO_LARGE). */
#define BP_MAX_CONFIG_BYTES (4u << 20)
#define BP_MAX_REQUEST_BYTES (32u << 20)

typedef enum bp_status {
    BP_OK = 0,
    BP_ERR_INVALID_ARGUMENT = 1,  /* NULL pointer, malformed JSON, invalid UTF-8, bad field   */
    BP_ERR_CONFIG = 2,            /* the init config is invalid (the message names the field) */
    BP_ERR_AUTH = 3,              /* credentials missing, invalid or not permitted             */
    BP_ERR_NOT_FOUND = 4,         /* unknown model                                             */
    BP_ERR_THROTTLED = 5,
    BP_ERR_UNAVAILABLE = 6,
    BP_ERR_CANCELLED = 7,         /* bp_provider_free: some streams had to be cancelled        */
    BP_ERR_SHUTTING_DOWN = 8,     /* the provider is being freed: no new call is taken         */
    BP_ERR_INTERNAL = 9,          /* a bug in the plugin                                       */
    BP_ERR_TIMEOUT = 10,
    BP_ERR_INVALID_REQUEST = 11,  /* Bedrock refused the request (ValidationException)         */
    BP_ERR_MODEL = 12,
    BP_ERR_NETWORK = 13,
    BP_ERR_CONTENT_FILTERED = 14,
    BP_ERR_TOO_LARGE = 15,
    BP_ERR_BUSY = 16              /* bp_provider_free: a callback had not returned; plugin pinned;
                                     bp_mailbox_wait: another wait on the mailbox is under way */
} bp_status;

typedef struct bp_provider bp_provider;
typedef struct bp_stream bp_stream;

/*
 * Receives one event: a JSON object in pi-ai's AssistantMessageEvent vocabulary ("start",
 * "text_start", "text_delta", "text_end", "thinking_*", "toolcall_*", then exactly one terminal
 * event). The terminal event carries the final AssistantMessage:
 *   {"type": "done", "reason": "stop" | "length" | "toolUse", "message": {...}}
 *   {"type": "error", "reason": "error" | "aborted", "error": {...}}
 * where the "error" member *is* the final message (since 1.2): its content so far, usage,
 * "stopReason" equal to "reason", "errorMessage" worded as pi-ai words it ("Throttling error: ...")
 * and "errorInfo": {"code", "retryable", "httpStatus"?, "requestId"?, "awsErrorType"?, "retryAfterMs"?}, "code"
 * being the same stable string as in err_json ("throttled", "network", "cancelled", ...).
 * event_json is NUL-terminated, len excludes the NUL, and it is valid only during the call.
 * Called on a plugin thread, in order, never twice at once for one stream; callbacks of
 * different streams may run at the same time. A callback that blocks delays only its own stream
 * (up to 512 blocked at once; not so for bp_stream_start_inline's). Return 0 to continue;
 * non-zero cancels the stream (it then ends with error/aborted).
 */
typedef int32_t (*bp_event_fn)(void *user_data, const char *event_json, size_t len);

/* (major << 16) | minor. */
uint32_t bp_abi_version(void);

/* Static JSON: name, version, abiVersion, provider, api. Never freed. */
const char *bp_plugin_info(void);

/*
 * Init. config_json: {"provider": <models.providers["amazon-bedrock"]>, "discovery": {...}}.
 * On success *out owns a provider until bp_provider_free.
 */
int32_t bp_provider_new(const char *config_json, bp_provider **out, char **err_json);

/*
 * Starts a Bedrock ConverseStream call and returns at once. request_json:
 * {"model": "<id>" | {model}, "context": <pi-ai Context>, "options": {...}}.
 * On BP_OK the callback will be called (ending with one terminal event, after which user_data
 * is never touched again); on any other status it is never called. out may be NULL.
 */
int32_t bp_stream_start(bp_provider *provider, const char *request_json, bp_event_fn on_event,
                        void *user_data, bp_stream **out, char **err_json);

/*
 * Receives every event queued for one stream at once (ABI 1.5): events_ndjson holds count events,
 * each one line of JSON ending in '\n', in order; the whole is NUL-terminated, len excludes the
 * NUL, and it is valid only during the call. Same threading, order, terminal and cancel rules as
 * bp_event_fn: the terminal event is the last line of the last call.
 */
typedef int32_t (*bp_events_fn)(void *user_data, const char *events_ndjson, size_t len, size_t count);

/*
 * As bp_stream_start, with one callback per batch of events instead of one per event (ABI 1.5):
 * for hosts where each call is a costly hop to another thread (Node, Python, ...).
 */
int32_t bp_stream_start_batched(bp_provider *provider, const char *request_json, bp_events_fn on_events,
                                void *user_data, bp_stream **out, char **err_json);

/*
 * Lists the models this provider can stream (ABI 1.1): the configured models first, then those
 * found through Bedrock's ListFoundationModels / ListInferenceProfiles, cached for
 * discovery.refreshInterval seconds. Blocks until answered; safe from any thread and
 * concurrently with streams (not from inside an inline callback). options_json: NULL or
 * {"refresh": true} to bypass the cache. On BP_OK, *out_json (free with bp_string_free) is the
 * implicit provider config:
 * {"baseUrl", "api": "bedrock-converse-stream", "auth": "aws-sdk", "models": [...],
 *  "discovery": {"status": "discovered" | "cached" | "disabled", "region", "regionSource",
 *                "authSource": {"kind", "origin", "ignored"}, ...}}.
 * Models it returns can be streamed by id right away.
 */
int32_t bp_discover(bp_provider *provider, const char *options_json, char **out_json, char **err_json);

/*
 * Embeds texts through Bedrock InvokeModel (ABI 1.4). Blocks until answered; safe from any
 * thread and concurrently with streams (not from inside an event callback). request_json:
 * {"model": "<id; default amazon.titan-embed-text-v2:0; a leading amazon-bedrock/ or bedrock/ is
 *   stripped>", "texts": ["...", ...], "purpose": "query" | "document" (default),
 *  "dimensions": N (one the model offers; the model's default otherwise)}.
 * Families: Titan Text Embeddings G1/V2, Cohere Embed v3/v4 (up to 96 texts per call), Nova
 * Multimodal Embeddings, TwelveLabs Marengo. On BP_OK, *out_json (free with bp_string_free) is
 * {"model", "dimensions", "embeddings": [[...], ...]} in input order, every vector L2-normalized;
 * a blank text gets [] without a call.
 */
int32_t bp_embed(bp_provider *provider, const char *request_json, char **out_json, char **err_json);

/* Cancels a stream: idempotent, any thread, also after the end. NULL is ignored. */
void bp_stream_cancel(bp_stream *stream);

/* Releases the host's handle (the stream runs on to its end). Valid after bp_provider_free. */
void bp_stream_release(bp_stream *stream);

/*
 * Frees a provider. In order: every later call on it (from any thread) is refused with
 * BP_ERR_SHUTTING_DOWN; discoveries and embeddings in flight return BP_ERR_SHUTTING_DOWN at
 * once; streams get up to drain_timeout_ms to end (a stream has ended when its terminal
 * callback has *returned*); streams still running are cancelled and end with error/aborted;
 * the plugin's threads are stopped and joined. Returns within drain_timeout_ms +
 * BP_FREE_GRACE_MS in every case:
 *   BP_OK             every stream ended on its own; nothing of the provider is left.
 *   BP_ERR_CANCELLED  streams were cancelled (only then); nothing of the provider is left.
 *   BP_ERR_BUSY       something could not be stopped in time (a callback, event or log, that
 *                     had not returned, or a plugin thread that had not exited: one that needs
 *                     the dynamic loader's lock waits while other host threads hold it with
 *                     dlopen/dlclose, so do not dlclose a pile of old copies at once while
 *                     freeing another). The plugin pinned itself (dlclose is safe but leaves
 *                     it mapped) and finishes the stop on its own once that callback returns
 *                     (or those threads exit):
 *                     callbacks of streams that had not ended may still arrive, each stream's
 *                     terminal event included, so their user_data must stay valid until then.
 *   BP_ERR_SHUTTING_DOWN  another bp_provider_free of this provider is under way.
 * bp_provider_free does not return while another host thread is inside a call on this
 * provider (up to the bound above; past it BP_ERR_BUSY, and the provider's memory is kept):
 * those calls are cut short and have stopped using the provider when it returns. Once it has
 * returned (whatever its status) the handle is gone: the host must not pass it again, so it
 * must order its own threads' calls before that return. Before dlclose, the host must also see
 * every call it made into this copy return (the plugin cannot know when a host thread has left
 * its code): count calls per loaded copy, as bp-host serve and the Node binding do. Must not be
 * called from inside an event or log callback (BP_ERR_INVALID_ARGUMENT).
 */
int32_t bp_provider_free(bp_provider *provider, uint32_t drain_timeout_ms);

/* Frees a string returned by the plugin. NULL is ignored. */
void bp_string_free(char *s);

/* Log levels of bp_set_log_callback and bp_log_fn. */
#define BP_LOG_OFF 0u
#define BP_LOG_ERROR 1u
#define BP_LOG_WARN 2u
#define BP_LOG_INFO 3u
#define BP_LOG_DEBUG 4u

/* One log record: level (BP_LOG_ERROR..BP_LOG_DEBUG), target (the part of the plugin: "provider",
 * "discovery", "converse", "auth", "log"), message; both strings valid only during the call. Never
 * carries a secret. */
typedef void (*bp_log_fn)(void *user_data, uint32_t level, const char *target, const char *message);

/*
 * Routes the plugin's log records at level and more severe to on_record instead of stderr (ABI
 * 1.6); on_record NULL goes back to stderr at that level. Process-wide for this loaded copy.
 * Records logged on plugin threads reach on_record on one plugin log thread, in order, through a
 * bounded queue: a slow callback never holds a stream, and records beyond the queue are dropped
 * and counted in a later "log" record. With no provider alive, on_record runs on the calling
 * thread. BP_ERR_INVALID_ARGUMENT for a level above BP_LOG_DEBUG or a call from inside on_record.
 * Before dlclose, free every provider (the log thread ends with the last one) or pass NULL.
 */
int32_t bp_set_log_callback(uint32_t level, bp_log_fn on_record, void *user_data);

/*
 * A mailbox (ABI 1.7): the events of many streams gathered for a host that takes them on a thread
 * of its own (an event loop, a koffi or ctypes worker) instead of being called on plugin threads;
 * one wake-up of the host per take instead of one callback per stream per delivery. No host code
 * ever runs on a plugin thread for a mailbox stream. A mailbox belongs to no provider: streams of
 * every provider of this loaded copy may file into one, and what they filed can still be taken
 * after their provider was freed.
 */
typedef struct bp_mailbox bp_mailbox;

/*
 * A new, open mailbox; *out owns it until bp_mailbox_free. capacity_bytes: how much it holds
 * before the plugin waits for the host to take (0: 8 MiB); a stream whose events wait stops
 * reading the network, as behind a callback that blocks. A terminal event never waits.
 */
int32_t bp_mailbox_new(uint32_t capacity_bytes, bp_mailbox **out);

/*
 * As bp_stream_start_batched, but the stream's events are filed into mailbox, each one line:
 *   {"stream":<tag>, <the event's members, as bp_event_fn receives them>}\n
 * so one JSON parse per line gives the tag and the event (keep tags below 2^53 for JavaScript
 * hosts). Per stream the lines keep their order and end with exactly one terminal event, which
 * counts as delivered (for bp_provider_free's drain) once filed. Cancel with bp_stream_cancel: a
 * cancelled stream's later events are dropped and it ends with error/aborted.
 */
int32_t bp_stream_start_mailbox(bp_provider *provider, const char *request_json, bp_mailbox *mailbox,
                                uint64_t tag, bp_stream **out, char **err_json);

/*
 * Takes every event filed, waiting up to timeout_ms for the first. On BP_OK, *events_ndjson holds
 * *count lines (0 when the time ran out), *len bytes without its NUL; it is valid until the next
 * bp_mailbox_wait on this mailbox or its bp_mailbox_free. BP_ERR_SHUTTING_DOWN once the mailbox is
 * closed and everything was taken; BP_ERR_BUSY while another wait on it is under way (one taker
 * at a time); BP_ERR_INVALID_ARGUMENT for a NULL argument or a call from inside an event callback.
 * Each take wakes the host's thread once whatever it carries: a host that waits again only a
 * few milliseconds after its last take (sleeping meanwhile) gets several events per take with
 * few streams open, and costs the plugin no wake-up call per event.
 */
int32_t bp_mailbox_wait(bp_mailbox *mailbox, uint32_t timeout_ms, const char **events_ndjson,
                        size_t *len, size_t *count);

/* Closes a mailbox: a wait under way returns, what was filed can still be taken, what streams
 * file from now on is dropped. Idempotent, any thread; NULL is ignored. */
void bp_mailbox_close(bp_mailbox *mailbox);

/* Closes the mailbox and releases the host's handle; streams still filing drop their events.
 * No bp_mailbox_wait on it may be under way (close it and let the wait return first). Free every
 * mailbox before dlclose. NULL is ignored. */
void bp_mailbox_free(bp_mailbox *mailbox);

/*
 * As bp_stream_start, but on_event runs on the runtime thread that decoded the events, with no
 * hand-over to a delivery thread (ABI 1.8): the cheapest way to receive events (no thread
 * wake-up per event), for a callback that returns at once, because it copies or queues the event
 * and signals its own thread. Same order, terminal, cancel and user_data rules as bp_stream_start.
 * The difference is isolation. While the callback runs, that runtime thread serves no other
 * stream (each of provider.runtimeThreads, default 2, runs its share of the streams): a callback
 * that blocks delays every stream on its thread, and one that never returns makes
 * bp_provider_free return BP_ERR_BUSY. From inside it, bp_stream_start*, bp_stream_cancel and
 * bp_stream_release may be called; bp_discover, bp_embed, bp_mailbox_wait and bp_provider_free
 * return BP_ERR_INVALID_ARGUMENT (each would wait; bp_provider_free for the very thread the
 * callback holds).
 */
int32_t bp_stream_start_inline(bp_provider *provider, const char *request_json, bp_event_fn on_event,
                               void *user_data, bp_stream **out, char **err_json);

/*
 * Every function of one loaded copy of the plugin (ABI 1.8). Fields are only ever appended:
 * a field lies beyond a copy's table when offsetof(bp_api, field) >= size, and must then not be
 * read. The functions behave exactly as the exports of the same name.
 */
typedef struct bp_api {
    uint32_t abi_version; /* (major << 16) | minor of this copy, as bp_abi_version()   */
    uint32_t size;        /* sizeof(bp_api) as this copy was built                      */
    const char *(*plugin_info)(void);
    int32_t (*provider_new)(const char *config_json, bp_provider **out, char **err_json);
    int32_t (*stream_start)(bp_provider *provider, const char *request_json, bp_event_fn on_event,
                            void *user_data, bp_stream **out, char **err_json);
    int32_t (*discover)(bp_provider *provider, const char *options_json, char **out_json, char **err_json);
    void (*stream_cancel)(bp_stream *stream);
    void (*stream_release)(bp_stream *stream);
    int32_t (*provider_free)(bp_provider *provider, uint32_t drain_timeout_ms);
    void (*string_free)(char *s);
    int32_t (*embed)(bp_provider *provider, const char *request_json, char **out_json, char **err_json); /* 1.4 */
    int32_t (*stream_start_batched)(bp_provider *provider, const char *request_json, bp_events_fn on_events,
                                    void *user_data, bp_stream **out, char **err_json); /* 1.5 */
    int32_t (*set_log_callback)(uint32_t level, bp_log_fn on_record, void *user_data); /* 1.6 */
    int32_t (*mailbox_new)(uint32_t capacity_bytes, bp_mailbox **out); /* 1.7, and the four below */
    int32_t (*stream_start_mailbox)(bp_provider *provider, const char *request_json, bp_mailbox *mailbox,
                                    uint64_t tag, bp_stream **out, char **err_json);
    int32_t (*mailbox_wait)(bp_mailbox *mailbox, uint32_t timeout_ms, const char **events_ndjson,
                            size_t *len, size_t *count);
    void (*mailbox_close)(bp_mailbox *mailbox);
    void (*mailbox_free)(bp_mailbox *mailbox);
    int32_t (*stream_start_inline)(bp_provider *provider, const char *request_json, bp_event_fn on_event,
                                   void *user_data, bp_stream **out, char **err_json); /* 1.8 */
} bp_api;

/*
 * The function table of this copy for ABI major abi_major (pass BP_ABI_VERSION_MAJOR), or NULL
 * when the copy does not implement that major. Static: never freed, valid until dlclose. One
 * dlsym per loaded copy, so that functions of two copies are never mixed.
 */
const bp_api *bp_get_api(uint32_t abi_major);

#ifdef __cplusplus
}
#endif

#endif /* BEDROCK_PLUGIN_H */
