// bp-host-cpp — the C++ example host: the plugin through include/bedrock_plugin.hpp, with RAII
// owners, lambdas as callbacks and exceptions for errors.
//
//   bp-host-cpp --plugin PATH --config FILE models
//   bp-host-cpp --plugin PATH --config FILE chat [--inline] --model ID PROMPT
//   bp-host-cpp --plugin PATH --config FILE swap --next PATH --model ID PROMPT
//   bp-host-cpp --plugin PATH --config FILE fanout --count N --model ID PROMPT
//
// `swap` streams on a private copy of one build, loads a private copy of the other while the first
// stream runs, streams on it, then frees and unloads the first copy once its stream has ended.
// `chat --inline` takes the events on the plugin's runtime thread (ABI 1.8): the handler only
// appends to the text and prints it once the stream has ended.
// `fanout` streams N chats into one mailbox (ABI 1.7) and takes their events on the main thread:
// no code of this host runs on the plugin's threads.
#include "bedrock_plugin.hpp"

#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string read_file(const std::string &path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
            continue;
        }
        out += c;
    }
    return out + "\"";
}

std::string request(const std::string &model, const std::string &prompt) {
    return "{\"model\":" + json_string(model) + ",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":" + json_string(prompt) + "}]}}";
}

/* One stream's text and its end, filled on a plugin thread. */
class chat_result {
public:
    bedrock_plugin::event_handler handler(bool echo) {
        return [this, echo](std::string_view event) {
            std::lock_guard<std::mutex> lock(mu_);
            if (event.rfind("{\"type\":\"text_delta\"", 0) == 0) {
                std::string delta = bedrock_plugin::detail::member(event, "delta");
                text_ += delta;
                if (echo) std::cout << delta << std::flush;
            } else if (event.rfind("{\"type\":\"done\"", 0) == 0 || event.rfind("{\"type\":\"error\"", 0) == 0) {
                reason_ = bedrock_plugin::detail::member(event, "reason");
                message_ = bedrock_plugin::detail::member(event, "errorMessage");
                ended_ = true;
                cv_.notify_all();
            }
            return true;
        };
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return ended_; });
    }
    const std::string &text() const { return text_; }
    const std::string &reason() const { return reason_; }
    const std::string &message() const { return message_; }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool ended_ = false;
    std::string text_, reason_, message_;
};

int usage() {
    std::cerr << "usage: bp-host-cpp --plugin PATH --config FILE models\n"
                 "       bp-host-cpp --plugin PATH --config FILE chat [--inline] --model ID PROMPT\n"
                 "       bp-host-cpp --plugin PATH --config FILE swap --next PATH --model ID PROMPT\n"
                 "       bp-host-cpp --plugin PATH --config FILE fanout --count N --model ID PROMPT\n";
    return 2;
}

std::string version_of(const bedrock_plugin::library &lib) {
    return bedrock_plugin::detail::member(lib.info(), "version");
}

} // namespace

int main(int argc, char **argv) {
    std::string plugin, config_path, model, next, command, prompt;
    unsigned long count = 0;
    bool inline_events = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--plugin" && i + 1 < argc) plugin = argv[++i];
        else if (arg == "--config" && i + 1 < argc) config_path = argv[++i];
        else if (arg == "--model" && i + 1 < argc) model = argv[++i];
        else if (arg == "--next" && i + 1 < argc) next = argv[++i];
        else if (arg == "--count" && i + 1 < argc) count = std::strtoul(argv[++i], nullptr, 10);
        else if (arg == "--inline") inline_events = true;
        else if (command.empty()) command = arg;
        else if (prompt.empty()) prompt = arg;
        else return usage();
    }
    if (plugin.empty() || config_path.empty() || command.empty()) return usage();
    try {
        const std::string config = read_file(config_path);
        if (command == "models") {
            auto lib = bedrock_plugin::library::load(plugin);
            auto provider = lib.new_provider(config);
            std::string answer = provider.discover();
            // Each model object of the "models" array has an "id" (the members come in any order).
            auto models = answer.find("\"models\":[");
            for (auto at = answer.find("\"id\":\"", models); models != std::string::npos && at != std::string::npos; at = answer.find("\"id\":\"", at + 1))
                std::cout << bedrock_plugin::detail::member(std::string_view(answer).substr(at), "id") << "\n";
            return 0;
        }
        if (command == "chat" && !model.empty() && !prompt.empty()) {
            auto lib = bedrock_plugin::library::load(plugin);
            auto provider = lib.new_provider(config);
            chat_result result;
            // An inline handler runs on the runtime thread: it must not wait on the terminal.
            auto stream = inline_events ? provider.start_inline(request(model, prompt), result.handler(false))
                                        : provider.start(request(model, prompt), result.handler(true));
            result.wait();
            if (inline_events) std::cout << result.text();
            std::cout << "\n[" << result.reason() << "]" << (result.message().empty() ? "" : " " + result.message()) << "\n";
            return result.reason() == "stop" ? 0 : 1;
        }
        if (command == "swap" && !next.empty() && !model.empty() && !prompt.empty()) {
            const char *tmp = std::getenv("TMPDIR");
            std::string dir = tmp && *tmp ? tmp : "/tmp";
            auto first = bedrock_plugin::library::load_private_copy(plugin, dir);
            auto old_provider = first.new_provider(config);
            chat_result on_old, on_new;
            auto old_stream = old_provider.start(request(model, "emulator: chunks=20 delay_ms=20"), on_old.handler(false));
            // The new copy serves while the old one still streams.
            auto second = bedrock_plugin::library::load_private_copy(next, dir);
            auto new_provider = second.new_provider(config);
            auto new_stream = new_provider.start(request(model, prompt), on_new.handler(false));
            on_new.wait();
            on_old.wait();
            old_stream.reset();
            int32_t freed = old_provider.free(10000);
            std::string old_version = version_of(first);
            first = std::move(second); // the old copy is unloaded here
            std::cout << "old copy " << old_version << ": " << on_old.reason() << " (" << on_old.text().size() << " bytes), freed with status " << freed << "\n";
            std::cout << "new copy " << version_of(first) << ": " << on_new.reason() << " " << on_new.text() << "\n";
            return on_old.reason() == "stop" && on_new.reason() == "stop" && freed == BP_OK ? 0 : 1;
        }
        if (command == "fanout" && count > 0 && !model.empty() && !prompt.empty()) {
            auto lib = bedrock_plugin::library::load(plugin);
            auto provider = lib.new_provider(config);
            auto box = lib.new_mailbox();
            std::vector<bedrock_plugin::stream> streams;
            for (uint64_t tag = 0; tag < count; tag++) streams.push_back(provider.start(request(model, prompt), box, tag));
            std::vector<std::string> text(count), reason(count);
            unsigned long ended = 0;
            while (ended < count) {
                auto taken = box.wait(10000);
                if (!taken || taken->count() == 0) break; // closed, or nothing for 10 s
                taken->for_each([&](uint64_t tag, std::string_view event) {
                    std::string type = bedrock_plugin::detail::member(event, "type");
                    if (type == "text_delta") text.at(tag) += bedrock_plugin::detail::member(event, "delta");
                    else if (type == "done" || type == "error") {
                        reason.at(tag) = bedrock_plugin::detail::member(event, "reason");
                        ended++;
                    }
                });
            }
            bool all_stopped = ended == count;
            for (uint64_t tag = 0; tag < count; tag++) {
                std::cout << tag << ": " << text[tag] << "[" << reason[tag] << "]\n";
                all_stopped = all_stopped && reason[tag] == "stop";
            }
            return all_stopped ? 0 : 1;
        }
        return usage();
    } catch (const bedrock_plugin::error &e) {
        std::cerr << "error (" << e.code() << ", status " << e.status() << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
