/*
 * bedrock_plugin.hpp — a header-only C++17 face over the C ABI in bedrock_plugin.h.
 *
 *   auto lib = bedrock_plugin::library::load("/usr/local/lib/libbedrock_plugin.so");
 *   auto provider = lib.new_provider(R"({"provider": {"models": [...]}})");
 *   auto stream = provider.start(request_json, [](std::string_view event) {
 *       std::cout << event << "\n";   // pi-ai AssistantMessageEvent JSON
 *       return true;                  // false cancels the stream
 *   });
 *
 * Or, with no host code on plugin threads (ABI 1.7), streams file into a mailbox that one
 * thread of the host's takes from:
 *
 *   auto box = lib.new_mailbox();
 *   auto a = provider.start(request_a, box, 1), b = provider.start(request_b, box, 2);
 *   while (auto taken = box.wait(1000))        // std::nullopt once closed and emptied
 *       taken->for_each([](uint64_t tag, std::string_view event) { ... });
 *
 * Or, for a handler that only copies or queues the event and returns at once, with no thread hop
 * per event (ABI 1.8): provider.start_inline(request_json, handler) runs it on the plugin's
 * runtime thread, where blocking would hold back other streams.
 *
 * Owners are move-only RAII types: `library` dlcloses its copy, `provider` frees the provider
 * (bp_provider_free with its drain time), `stream` releases the handle, `mailbox` closes and
 * frees its box, `plugin_string` frees a returned string. Failures throw `bedrock_plugin::error`, carrying err_json's code and message.
 * Everything goes through the copy's bp_api table (bp_get_api), so a host can load a second copy
 * with `library::load_private_copy` and swap without mixing functions of the two. The owners must
 * be destroyed in reverse order of creation (streams, then providers, then the library), as the
 * C rules require; a callback runs on a plugin thread and must not throw.
 * No dependency beyond the C++17 standard library and libdl; C hosts keep the C header alone.
 */
#ifndef BEDROCK_PLUGIN_HPP
#define BEDROCK_PLUGIN_HPP

#include "bedrock_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace bedrock_plugin {

/* A string the plugin returned, freed through the copy that returned it. */
class plugin_string {
public:
    plugin_string() = default;
    plugin_string(char *s, void (*free_fn)(char *)) : s_(s, free_fn ? free_fn : noop) {}
    std::string_view view() const { return s_ ? std::string_view(s_.get()) : std::string_view(); }
    std::string str() const { return std::string(view()); }
    explicit operator bool() const { return static_cast<bool>(s_); }

private:
    static void noop(char *) {}
    std::unique_ptr<char, void (*)(char *)> s_{nullptr, noop};
};

namespace detail {
/* The string value of a top-level member of a small JSON object such as err_json (enough for
 * "code" and "message"; escapes decoded, \u sequences outside ASCII kept as written). */
inline std::string member(std::string_view json, std::string_view key) {
    std::string needle = "\"" + std::string(key) + "\":\"";
    auto at = json.find(needle);
    if (at == std::string_view::npos) return {};
    std::string out;
    for (auto i = at + needle.size(); i < json.size() && json[i] != '"'; i++) {
        char c = json[i];
        if (c == '\\' && i + 1 < json.size()) {
            c = json[++i];
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'u') { out += "\\u"; continue; }
        }
        out += c;
    }
    return out;
}
} // namespace detail

/* A failed call: the bp_status, and err_json's code and message. */
class error : public std::runtime_error {
public:
    error(int32_t status, std::string code, const std::string &message, std::string json)
        : std::runtime_error(message), status_(status), code_(std::move(code)), json_(std::move(json)) {}
    int32_t status() const noexcept { return status_; }
    const std::string &code() const noexcept { return code_; }
    /* err_json as the plugin wrote it. */
    const std::string &json() const noexcept { return json_; }

    static error from(int32_t status, plugin_string err, std::string_view what) {
        std::string json = err ? err.str() : std::string();
        std::string code = detail::member(json, "code"), message = detail::member(json, "message");
        if (message.empty()) message = std::string(what) + " failed with status " + std::to_string(status);
        return error(status, code.empty() ? "unknown" : code, std::string(what) + ": " + message, json);
    }

private:
    int32_t status_;
    std::string code_;
    std::string json_;
};

/* A callback: any callable taking the event JSON; true goes on, false cancels the stream. */
using event_handler = std::function<bool(std::string_view event_json)>;

/* One stream; releasing it (destruction) does not stop it: cancel() does. */
class stream {
public:
    stream() = default;
    stream(const bp_api *api, bp_stream *s) : api_(api), s_(s) {}
    stream(stream &&o) noexcept : api_(o.api_), s_(std::exchange(o.s_, nullptr)) {}
    stream &operator=(stream &&o) noexcept {
        if (this != &o) {
            reset();
            api_ = o.api_;
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;
    ~stream() { reset(); }

    /* Idempotent; the stream ends with error/aborted. */
    void cancel() const {
        if (s_) api_->stream_cancel(s_);
    }
    void reset() {
        if (s_) api_->stream_release(std::exchange(s_, nullptr));
    }

private:
    const bp_api *api_ = nullptr;
    bp_stream *s_ = nullptr;
};

/* What one mailbox wait took: `count` lines of NDJSON, each {"stream":<tag>, <event members>};
 * valid until the mailbox's next wait or its destruction. */
class taken_events {
public:
    taken_events(std::string_view lines, size_t count) : lines_(lines), count_(count) {}
    std::string_view lines() const { return lines_; }
    size_t count() const { return count_; }

    /* Calls f(tag, event) for each line, in order; `event` is the line itself (the tag is its
     * first member), so any JSON parser reads it as it is. */
    template <class F> void for_each(F &&f) const {
        static constexpr std::string_view prefix = "{\"stream\":";
        for (size_t at = 0; at < lines_.size();) {
            size_t end = lines_.find('\n', at);
            if (end == std::string_view::npos) end = lines_.size();
            std::string_view line = lines_.substr(at, end - at);
            uint64_t tag = 0;
            size_t i = line.rfind(prefix, 0) == 0 ? prefix.size() : line.size();
            for (; i < line.size() && line[i] >= '0' && line[i] <= '9'; i++) tag = tag * 10 + static_cast<uint64_t>(line[i] - '0');
            f(tag, line);
            at = end + 1;
        }
    }

private:
    std::string_view lines_;
    size_t count_;
};

/* A mailbox (ABI 1.7): the events of every stream started into it, taken by one host thread at
 * a time. Closed and freed on destruction, which must come after any wait on it has returned
 * (close() ends a wait under way) and before the library's. */
class mailbox {
public:
    mailbox() = default;
    mailbox(const bp_api *api, bp_mailbox *m) : api_(api), m_(m) {}
    mailbox(mailbox &&o) noexcept : api_(o.api_), m_(std::exchange(o.m_, nullptr)) {}
    mailbox &operator=(mailbox &&o) noexcept {
        if (this != &o) {
            reset();
            api_ = o.api_;
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    mailbox(const mailbox &) = delete;
    mailbox &operator=(const mailbox &) = delete;
    ~mailbox() { reset(); }

    /* Takes everything filed, waiting up to timeout_ms for the first event (an empty take when
     * the time ran out); std::nullopt once the mailbox is closed and everything was taken.
     * Throws `error` otherwise (BP_ERR_BUSY: another thread is waiting on it). */
    std::optional<taken_events> wait(uint32_t timeout_ms) const {
        const char *lines = nullptr;
        size_t len = 0, count = 0;
        int32_t rc = api_->mailbox_wait(m_, timeout_ms, &lines, &len, &count);
        if (rc == BP_ERR_SHUTTING_DOWN) return std::nullopt;
        if (rc != BP_OK) throw error(rc, rc == BP_ERR_BUSY ? "busy" : "invalid_argument", "bp_mailbox_wait failed with status " + std::to_string(rc), "");
        return taken_events(count ? std::string_view(lines, len) : std::string_view(), count);
    }

    /* Ends a wait under way; what was filed can still be taken, later filings are dropped. Any
     * thread, idempotent. */
    void close() const {
        if (m_) api_->mailbox_close(m_);
    }

    bp_mailbox *get() const { return m_; }

    void reset() {
        if (m_) api_->mailbox_free(std::exchange(m_, nullptr));
    }

private:
    const bp_api *api_ = nullptr;
    bp_mailbox *m_ = nullptr;
};

/* A provider of one loaded copy; freed (drain_ms to let streams end) on destruction. */
class provider {
public:
    provider() = default;
    provider(const bp_api *api, bp_provider *p) : api_(api), p_(p) {}
    provider(provider &&o) noexcept : api_(o.api_), p_(std::exchange(o.p_, nullptr)), drain_ms_(o.drain_ms_) {}
    provider &operator=(provider &&o) noexcept {
        if (this != &o) {
            free();
            api_ = o.api_;
            p_ = std::exchange(o.p_, nullptr);
            drain_ms_ = o.drain_ms_;
        }
        return *this;
    }
    provider(const provider &) = delete;
    provider &operator=(const provider &) = delete;
    ~provider() { free(); }

    /* How long destruction lets streams run before they are cancelled. */
    void set_drain_ms(uint32_t ms) { drain_ms_ = ms; }

    /* bp_discover: the implicit provider config, as JSON. */
    std::string discover(bool refresh = false) const {
        char *out = nullptr, *err = nullptr;
        int32_t rc = api_->discover(p_, refresh ? "{\"refresh\":true}" : nullptr, &out, &err);
        return take(rc, out, err, "bp_discover");
    }

    /* bp_embed: {"model", "dimensions", "embeddings"} as JSON. */
    std::string embed(const std::string &request_json) const {
        char *out = nullptr, *err = nullptr;
        int32_t rc = api_->embed(p_, request_json.c_str(), &out, &err);
        return take(rc, out, err, "bp_embed");
    }

    /* Starts a stream; `on_event` gets every event in order, ending with one done/error event,
     * on a plugin thread. It is kept (and destroyed) by the stream's last event. */
    stream start(const std::string &request_json, event_handler on_event) const {
        auto *holder = new event_handler(std::move(on_event));
        bp_stream *s = nullptr;
        char *err = nullptr;
        int32_t rc = api_->stream_start(p_, request_json.c_str(), &trampoline, holder, &s, &err);
        if (rc != BP_OK) {
            delete holder; // the callback is never called on failure
            throw error::from(rc, plugin_string(err, api_->string_free), "bp_stream_start");
        }
        return stream(api_, s);
    }

    /* As start, but `on_event` runs on the runtime thread that decoded the events (ABI 1.8): no
     * thread hop per event, for a handler that returns at once (it copies or queues the event);
     * one that blocks delays every stream on that thread. See bp_stream_start_inline. */
    stream start_inline(const std::string &request_json, event_handler on_event) const {
        if ((api_->abi_version & 0xffff) < 8) throw error(BP_ERR_INVALID_ARGUMENT, "abi", "inline streams need ABI 1.8; this copy is older", "");
        auto *holder = new event_handler(std::move(on_event));
        bp_stream *s = nullptr;
        char *err = nullptr;
        int32_t rc = api_->stream_start_inline(p_, request_json.c_str(), &trampoline, holder, &s, &err);
        if (rc != BP_OK) {
            delete holder;
            throw error::from(rc, plugin_string(err, api_->string_free), "bp_stream_start_inline");
        }
        return stream(api_, s);
    }

    /* Starts a stream whose events are filed into `box` under `tag` (ABI 1.7); no host code
     * runs on plugin threads. */
    stream start(const std::string &request_json, const mailbox &box, uint64_t tag) const {
        bp_stream *s = nullptr;
        char *err = nullptr;
        int32_t rc = api_->stream_start_mailbox(p_, request_json.c_str(), box.get(), tag, &s, &err);
        if (rc != BP_OK) throw error::from(rc, plugin_string(err, api_->string_free), "bp_stream_start_mailbox");
        return stream(api_, s);
    }

    /* bp_provider_free now; returns its status (BP_OK, BP_ERR_CANCELLED or BP_ERR_BUSY). */
    int32_t free(uint32_t drain_ms) {
        if (!p_) return BP_OK;
        return api_->provider_free(std::exchange(p_, nullptr), drain_ms);
    }

private:
    void free() { free(drain_ms_); }

    std::string take(int32_t rc, char *out, char *err, std::string_view what) const {
        plugin_string o(out, api_->string_free), e(err, api_->string_free);
        if (rc != BP_OK) throw error::from(rc, std::move(e), what);
        return o.str();
    }

    static int32_t trampoline(void *user, const char *json, size_t len) {
        auto *handler = static_cast<event_handler *>(user);
        std::string_view event(json, len);
        bool go_on = false;
        try {
            go_on = (*handler)(event);
        } catch (...) {
            go_on = false; // an exception cannot cross the plugin's frame: cancel instead
        }
        // The terminal event is the last call with this user_data.
        if (event.rfind("{\"type\":\"done\"", 0) == 0 || event.rfind("{\"type\":\"error\"", 0) == 0) delete handler;
        return go_on ? 0 : 1;
    }

    const bp_api *api_ = nullptr;
    bp_provider *p_ = nullptr;
    uint32_t drain_ms_ = 30000;
};

/* One loaded copy of the plugin: dlclosed on destruction (after its providers are gone). */
class library {
public:
    /* dlopens path (glibc returns the copy already loaded for the same file). */
    static library load(const std::string &path) {
        void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) throw error(BP_ERR_INVALID_ARGUMENT, "load", std::string("dlopen ") + path + ": " + dlerror(), "");
        return library(h);
    }

    /* Loads a private copy of path (copied beside `dir`, mapped, unlinked at once): a second
     * copy of the same build, for a hot swap. */
    static library load_private_copy(const std::string &path, const std::string &dir) {
        static std::atomic<unsigned> next{0};
        std::string copy = dir + "/bedrock-plugin-" + std::to_string(getpid()) + "-" + std::to_string(next++) + ".so";
        std::FILE *in = std::fopen(path.c_str(), "rb");
        std::FILE *out = in ? std::fopen(copy.c_str(), "wb") : nullptr;
        bool ok = in && out;
        char buf[1 << 16];
        size_t n;
        while (ok && (n = std::fread(buf, 1, sizeof buf, in)) > 0) ok = std::fwrite(buf, 1, n, out) == n;
        if (in) std::fclose(in);
        if (out && std::fclose(out) != 0) ok = false;
        if (!ok) {
            unlink(copy.c_str());
            throw error(BP_ERR_INVALID_ARGUMENT, "load", "cannot copy " + path + " to " + copy, "");
        }
        void *h = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
        unlink(copy.c_str());
        if (!h) throw error(BP_ERR_INVALID_ARGUMENT, "load", std::string("dlopen ") + copy + ": " + dlerror(), "");
        return library(h);
    }

    library(library &&o) noexcept : h_(std::exchange(o.h_, nullptr)), api_(o.api_) {}
    library &operator=(library &&o) noexcept {
        if (this != &o) {
            close();
            h_ = std::exchange(o.h_, nullptr);
            api_ = o.api_;
        }
        return *this;
    }
    library(const library &) = delete;
    library &operator=(const library &) = delete;
    ~library() { close(); }

    const bp_api &api() const { return *api_; }
    /* bp_plugin_info(): name, version, abiVersion, provider, api. */
    std::string_view info() const { return api_->plugin_info(); }

    provider new_provider(const std::string &config_json) const {
        bp_provider *p = nullptr;
        char *err = nullptr;
        int32_t rc = api_->provider_new(config_json.c_str(), &p, &err);
        if (rc != BP_OK) throw error::from(rc, plugin_string(err, api_->string_free), "bp_provider_new");
        return provider(api_, p);
    }

    /* bp_mailbox_new (ABI 1.7); capacity_bytes 0: the plugin's default (8 MiB). */
    mailbox new_mailbox(uint32_t capacity_bytes = 0) const {
        if ((api_->abi_version & 0xffff) < 7) throw error(BP_ERR_INVALID_ARGUMENT, "abi", "mailboxes need ABI 1.7; this copy is older", "");
        bp_mailbox *m = nullptr;
        int32_t rc = api_->mailbox_new(capacity_bytes, &m);
        if (rc != BP_OK) throw error(rc, "invalid_argument", "bp_mailbox_new failed with status " + std::to_string(rc), "");
        return mailbox(api_, m);
    }

private:
    explicit library(void *h) : h_(h) {
        const bp_api *(*get_api)(uint32_t);
        *reinterpret_cast<void **>(&get_api) = dlsym(h, "bp_get_api");
        api_ = get_api ? get_api(BP_ABI_VERSION_MAJOR) : nullptr;
        if (!api_) {
            dlclose(h);
            h_ = nullptr;
            throw error(BP_ERR_INVALID_ARGUMENT, "abi", "not a bedrock-plugin of ABI major " + std::to_string(BP_ABI_VERSION_MAJOR), "");
        }
    }
    void close() {
        if (h_) dlclose(std::exchange(h_, nullptr));
    }

    void *h_ = nullptr;
    const bp_api *api_ = nullptr;
};

} // namespace bedrock_plugin

#endif
