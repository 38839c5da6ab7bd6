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
 * Owners are move-only RAII types: `library` dlcloses its copy, `provider` frees the provider
 * (bp_provider_free with its drain time), `stream` releases the handle, `plugin_string` frees a
 * returned string. Failures throw `bedrock_plugin::error`, carrying err_json's code and message.
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
