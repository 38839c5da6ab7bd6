/*
 * Generations of `bp-host serve`: each load of the plugin is a generation, dlopened from a
 * private copy of the plugin file (glibc hands back the already-loaded image for the same path
 * or inode, so a copy is the only way to get a second one) and unlinked at once. A swap loads
 * the next generation; if anything fails the old one keeps serving. New requests go to the new
 * generation at once; the old one is drained on a thread of its own (bp_provider_free with the
 * drain deadline, which returns within drain + BP_FREE_GRACE_MS whatever the callbacks do),
 * then dlclosed once every call into it has returned and every stream handle is released,
 * unless it reports BP_ERR_BUSY, in which case it stays mapped and `status` counts it. Every
 * call into a generation goes through the bp_api table of that copy, so functions of two
 * copies are never mixed.
 */
#define _GNU_SOURCE
#include "serve_internal.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <elf.h>
#endif

/* The serving generation, held for one call (NULL when none serves). */
struct generation *enter_serving(void) {
    pthread_mutex_lock(&S.mu);
    struct generation *g = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (g) g->calls++;
    pthread_mutex_unlock(&S.mu);
    return g;
}

void leave(struct generation *g) {
    pthread_mutex_lock(&S.mu);
    g->calls--;
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
}


static int copy_file(const char *from, const char *to, char *why, size_t cap) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) { snprintf(why, cap, "cannot read %s: %s", from, strerror(errno)); return -1; }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) { snprintf(why, cap, "cannot create %s: %s", to, strerror(errno)); close(in); return -1; }
    char chunk[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, chunk, sizeof chunk)) > 0) {
        if (write(out, chunk, (size_t)n) != n) { rc = -1; break; }
    }
    if (n < 0 || rc != 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    close(in);
    if (close(out) != 0 && rc == 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    if (rc != 0) unlink(to);
    return rc;
}

#ifdef __linux__
/*
 * dlopen maps an ELF file's segments as its headers describe them; a truncated file (a deploy or
 * a build caught half-way) maps pages past its end, and touching them kills the process with
 * SIGBUS. So every segment and the section table must lie inside the file before it is loaded.
 */
static int check_elf(const char *path, char *why, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    Elf64_Ehdr eh;
    if (fd < 0 || fstat(fd, &st) != 0) { snprintf(why, cap, "cannot read it: %s", strerror(errno)); if (fd >= 0) close(fd); return -1; }
    int rc = -1;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(why, cap, "not a shared object (no ELF header)");
    } else if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN) {
        snprintf(why, cap, "not a 64-bit ELF shared object");
    } else if (eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize > (uint64_t)st.st_size ||
               eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > (uint64_t)st.st_size) {
        snprintf(why, cap, "the file is truncated (%lld bytes; its headers describe more)", (long long)st.st_size);
    } else {
        rc = 0;
        for (int i = 0; i < eh.e_phnum && rc == 0; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph ||
                ph.p_offset + ph.p_filesz > (uint64_t)st.st_size) {
                snprintf(why, cap, "the file is truncated (%lld bytes; segment %d ends at %llu)", (long long)st.st_size, i,
                         (unsigned long long)(ph.p_offset + ph.p_filesz));
                rc = -1;
            }
        }
    }
    close(fd);
    return rc;
}
#endif

/* Loads the plugin file as a new generation, or says why not in why. */
struct generation *load_generation(char *why, size_t cap) {
    /* Only the watcher loads (and main, before the watcher starts): no one else moves the number. */
    int number = S.next_number + 1;
    char copy[PATH_MAX + 64];
    snprintf(copy, sizeof copy, "%s/generation-%d.so", S.dir, number);
    if (copy_file(S.opt->plugin_path, copy, why, cap) != 0) return NULL;
#ifdef __linux__
    if (check_elf(copy, why, cap) != 0) { unlink(copy); return NULL; }
#endif
    void *handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    unlink(copy); /* the mapping stays; nothing is left on disk if the host dies */
    if (!handle) { snprintf(why, cap, "cannot load it: %s", dlerror()); return NULL; }
    uint32_t (*abi_version)(void);
    const bp_api *(*get_api)(uint32_t);
    *(void **)&abi_version = dlsym(handle, "bp_abi_version"); /* POSIX's way round ISO C's object/function pointer split */
    *(void **)&get_api = dlsym(handle, "bp_get_api");
    const bp_api *api = NULL;
    if (!abi_version) {
        snprintf(why, cap, "not a bedrock-plugin (no bp_abi_version)");
    } else if (abi_version() >> 16 != BP_ABI_VERSION_MAJOR) {
        snprintf(why, cap, "plugin ABI %u.%u; this host speaks %d.x", abi_version() >> 16, abi_version() & 0xFFFF, BP_ABI_VERSION_MAJOR);
    } else if (!get_api || !(api = get_api(BP_ABI_VERSION_MAJOR))) {
        snprintf(why, cap, "plugin ABI %u.%u has no bp_get_api table (1.3 or later is needed)", abi_version() >> 16, abi_version() & 0xFFFF);
    } else if (api->size < offsetof(bp_api, string_free) + sizeof api->string_free) {
        snprintf(why, cap, "the plugin's function table is too short (%u bytes)", api->size);
        api = NULL;
    }
    bp_provider *provider = NULL;
    if (api) {
        char *err = NULL;
        if (api->provider_new(S.opt->config, &provider, &err) != BP_OK) {
            snprintf(why, cap, "bp_provider_new: %s", err ? err : "failed");
            api->string_free(err);
            api = NULL;
        }
    }
    struct generation *g = api ? calloc(1, sizeof *g) : NULL;
    char *info = g ? strdup(api->plugin_info()) : NULL;
    if (!g || !info) {
        free(g);
        if (provider) api->provider_free(provider, 0);
        dlclose(handle);
        if (api) snprintf(why, cap, "out of memory");
        return NULL;
    }
    S.next_number = number; /* a refused load leaves no gap in the numbers */
    g->number = number;
    g->handle = handle;
    g->api = api;
    g->provider = provider;
    g->info = info;
    g->state = SERVING;
    return g;
}

/* Frees an old generation's provider once nobody is inside a call, then unmaps it. */
static void drain(struct generation *g) {
    double started = now_ms();
    pthread_mutex_lock(&S.mu);
    while (g->calls > 0) pthread_cond_wait(&S.changed, &S.mu);
    int in_flight = g->streams;
    pthread_mutex_unlock(&S.mu);
    int32_t rc = g->api->provider_free(g->provider, S.opt->drain_ms);
    /* BP_ERR_BUSY: a callback never returned, so its stream may never end; the copy stays mapped
     * (and g allocated) for good, and its handles are released through it whenever they end. */
    int pinned = rc == BP_ERR_BUSY;
    pthread_mutex_lock(&S.mu);
    while (!pinned && g->streams > 0) pthread_cond_wait(&S.changed, &S.mu);
    pthread_mutex_unlock(&S.mu);
    double ms = now_ms() - started;
    if (!pinned) dlclose(g->handle);
    pthread_mutex_lock(&S.mu);
    if (pinned) {
        g->state = PINNED;
    } else {
        for (struct generation **p = &S.gens; *p; p = &(*p)->next)
            if (*p == g) { *p = g->next; break; }
        S.unloaded++;
    }
    S.last_drain_ms = ms;
    pthread_mutex_unlock(&S.mu);
    say("generation %d drained in %.0f ms (%d streams in flight%s)%s", g->number, ms, in_flight,
        rc == BP_ERR_CANCELLED ? ", the rest cancelled at the deadline" : "",
        pinned ? "; a callback never returned, so it stays mapped" : ", unloaded");
    if (!pinned) {
        free(g->info);
        free(g);
    }
}

static void *drainer_main(void *arg) {
    drain(arg);
    pthread_mutex_lock(&S.mu);
    S.drainers--;
    pthread_cond_broadcast(&S.changed);
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

/* Drains g on a detached thread of its own (on this one if no thread can be had). */
void retire(struct generation *g) {
    pthread_mutex_lock(&S.mu);
    S.drainers++;
    pthread_mutex_unlock(&S.mu);
    if (start_detached(drainer_main, g) != 0) drainer_main(g);
}

void swap(void) {
    double started = now_ms();
    char why[1024] = "";
    struct generation *g = load_generation(why, sizeof why);
    pthread_mutex_lock(&S.mu);
    struct generation *old = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (!g) {
        S.refused++;
        pthread_mutex_unlock(&S.mu);
        say("swap refused, generation %d keeps serving: %s", old ? old->number : 0, why);
        return;
    }
    g->next = S.gens;
    S.gens = g;
    if (old) old->state = DRAINING;
    S.swaps++;
    S.last_swap_ms = now_ms() - started;
    double ms = S.last_swap_ms;
    pthread_mutex_unlock(&S.mu);
    say("generation %d serving %s (ready %.1f ms after the change)", g->number, g->info, ms);
    if (old) retire(old);
}
