/*
 * bp_get_api as a C host sees it: the table of a copy holds exactly that copy's exports, its
 * size is the header's sizeof(bp_api), and an unknown major gets NULL.
 * usage: api_table <plugin.so>; prints "N passed, M failed".
 */
#include "bedrock_plugin.h"
#include <dlfcn.h>
#include <stdio.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) passed++; else { failed++; fprintf(stderr, "FAILED: %s\n", what); }
}

#define SAME(field) check((void *)api->field == dlsym(h, "bp_" #field), #field " is the export bp_" #field)

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: api_table <plugin.so>\n"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    const bp_api *(*get_api)(uint32_t) = (const bp_api *(*)(uint32_t))dlsym(h, "bp_get_api");
    uint32_t (*abi_version)(void) = (uint32_t (*)(void))dlsym(h, "bp_abi_version");
    check(get_api != NULL && abi_version != NULL, "bp_get_api and bp_abi_version are exported");
    if (!get_api || !abi_version) return 1;
    const bp_api *api = get_api(BP_ABI_VERSION_MAJOR);
    check(api != NULL, "a table for this major");
    if (!api) return 1;
    check(api == get_api(BP_ABI_VERSION_MAJOR), "the same static table every time");
    check(api->abi_version == abi_version(), "abi_version is bp_abi_version()");
    check(api->abi_version == ((BP_ABI_VERSION_MAJOR << 16) | BP_ABI_VERSION_MINOR), "abi_version is this header's");
    check(api->size == sizeof(bp_api), "size is the header's sizeof(bp_api)");
    SAME(plugin_info);
    SAME(provider_new);
    SAME(stream_start);
    SAME(discover);
    SAME(stream_cancel);
    SAME(stream_release);
    SAME(provider_free);
    SAME(string_free);
    SAME(embed);
    SAME(stream_start_batched);
    SAME(set_log_callback);
    SAME(mailbox_new);
    SAME(stream_start_mailbox);
    SAME(mailbox_wait);
    SAME(mailbox_close);
    SAME(mailbox_free);
    SAME(stream_start_inline);
    check(get_api(BP_ABI_VERSION_MAJOR + 1) == NULL, "no table for the next major");
    check(get_api(0) == NULL, "no table for major 0");
    /* The table is usable on its own: a call through it that needs no provider. */
    char *err = NULL;
    bp_provider *p = NULL;
    check(api->provider_new("not json", &p, &err) == BP_ERR_CONFIG && p == NULL && err != NULL, "provider_new through the table");
    api->string_free(err);
    dlclose(h);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
