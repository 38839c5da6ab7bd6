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
#include "sha256.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
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


/* Whether two looks at a file saw the same file in the same state. */
static int same_state(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Copies the plugin file to `to`, computing its SHA-256 on the way (hex into digest). The file
 * must be the same file in the same state before and after (inode, size, mtime, ctime): one
 * being written while it is copied (rsync --inplace, dd conv=notrunc) is refused, and the
 * watcher's next look retries once it has settled.
 */
static int copy_file(const char *from, const char *to, char digest[65], char *why, size_t cap) {
    struct stat before, after;
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0 || fstat(in, &before) != 0) {
        snprintf(why, cap, "cannot read %s: %s", from, strerror(errno));
        if (in >= 0) close(in);
        return -1;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) { snprintf(why, cap, "cannot create %s: %s", to, strerror(errno)); close(in); return -1; }
    struct sha256 sha;
    sha256_init(&sha);
    char chunk[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, chunk, sizeof chunk)) > 0) {
        sha256_update(&sha, chunk, (size_t)n);
        if (write(out, chunk, (size_t)n) != n) { rc = -1; break; }
    }
    if (n < 0 || rc != 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    close(in);
    if (close(out) != 0 && rc == 0) { snprintf(why, cap, "copying %s failed: %s", from, strerror(errno)); rc = -1; }
    if (rc == 0 && (stat(from, &after) != 0 || !same_state(&before, &after))) {
        snprintf(why, cap, "the file changed while it was copied (still being written?); it is taken once it settles");
        rc = -1;
    }
    if (rc != 0) unlink(to);
    else sha256_hex(&sha, digest);
    return rc;
}

/*
 * The build's digest, from "<plugin file>.sha256" (sha256sum's format: 64 hex digits first),
 * which `make ship` and `make install` write beside the library: a file that is not the one
 * consistent build its digest names (a half-written file, a mix of two builds) is refused
 * before it is mapped. Without the digest file the load is refused too, unless --no-digest.
 */
static int check_digest(const char *digest, char *why, size_t cap) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s.sha256", S.opt->plugin_path);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (!S.opt->require_digest) return 0;
        snprintf(why, cap, "no digest beside it (%s: %s); deploy with `make install`, or write one with sha256sum (or run serve with --no-digest)",
                 path, strerror(errno));
        return -1;
    }
    char want[65] = "";
    int ok = fscanf(f, "%64[0-9a-fA-F]", want) == 1 && strlen(want) == 64;
    fclose(f);
    if (!ok) { snprintf(why, cap, "%s does not start with a SHA-256 digest", path); return -1; }
    for (char *c = want; *c; c++) *c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
    if (strcmp(want, digest) != 0) {
        snprintf(why, cap, "its SHA-256 %.12s… is not the %.12s… of %s (a build still being written, or a mix of two builds)", digest, want, path);
        return -1;
    }
    return 0;
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

/* Loads the plugin file as a new generation, or says why not. */
struct generation *load_generation(const char *same_as, char *why, size_t cap, enum load_failure *failure) {
    /* Only the watcher loads (and main, before the watcher starts): no one else moves the number. */
    int number = S.next_number + 1;
    char copy[PATH_MAX + 64];
    snprintf(copy, sizeof copy, "%s/generation-%d.so", S.dir, number);
    char digest[65];
    *failure = LOAD_TRANSIENT;
    if (copy_file(S.opt->plugin_path, copy, digest, why, cap) != 0) return NULL;
    if (check_digest(digest, why, cap) != 0) { unlink(copy); return NULL; }
    *failure = LOAD_REFUSED;
    if (same_as && strcmp(same_as, digest) == 0) {
        unlink(copy);
        *failure = LOAD_UNCHANGED;
        return NULL;
    }
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
    memcpy(g->digest, digest, sizeof g->digest);
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

/* Free pthread keys, read from glibc's key table (an entry is in use while its sequence number
 * is odd): counting by creating keys would take them from every other thread for a moment, and a
 * plugin copy starting a thread then would abort. -1 where the table cannot be read. */
int free_pthread_keys(void) {
    struct slot { uintptr_t seq; void *destructor; };
    const struct slot *table = dlsym(RTLD_DEFAULT, "__pthread_keys");
    if (!table) return -1;
    int n = 0;
    for (int i = 0; i < PTHREAD_KEYS_MAX; i++) n += !(table[i].seq & 1);
    return n;
}

long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

/* Drains g on a detached thread of its own (on this one if no thread can be had). */
void retire(struct generation *g) {
    pthread_mutex_lock(&S.mu);
    S.drainers++;
    pthread_mutex_unlock(&S.mu);
    if (start_detached(drainer_main, g) != 0) drainer_main(g);
}

enum swap_result swap(int final, int requested) {
    double started = now_ms();
    char why[1024] = "";
    char serving[65] = "";
    int serving_number = 0;
    pthread_mutex_lock(&S.mu);
    if (S.gens && S.gens->state == SERVING) {
        memcpy(serving, S.gens->digest, sizeof serving);
        serving_number = S.gens->number;
    }
    pthread_mutex_unlock(&S.mu);
    enum load_failure failure = LOAD_REFUSED;
    struct generation *g = load_generation(requested || !serving_number ? NULL : serving, why, sizeof why, &failure);
    if (!g && failure == LOAD_TRANSIENT && !final) {
        say("swap waits for the file to settle: %s", why);
        return SWAP_LATER;
    }
    if (!g && failure == LOAD_UNCHANGED) {
        say("the plugin file holds the build generation %d serves (%.12s…); no swap", serving_number, serving);
        return SWAP_UNCHANGED;
    }
    pthread_mutex_lock(&S.mu);
    struct generation *old = S.gens && S.gens->state == SERVING ? S.gens : NULL;
    if (!g) {
        S.refused++;
        pthread_mutex_unlock(&S.mu);
        say("swap refused, generation %d keeps serving: %s", old ? old->number : 0, why);
        return SWAP_REFUSED;
    }
    g->next = S.gens;
    S.gens = g;
    if (old) old->state = DRAINING;
    S.swaps++;
    S.last_swap_ms = now_ms() - started;
    double ms = S.last_swap_ms;
    pthread_mutex_unlock(&S.mu);
    say("generation %d serving %s (ready %.1f ms after the change)", g->number, g->info, ms);
    /* Each copy needs a pthread key while it is loaded (std's, given back at unload); warn well
     * before the process has none left, when loads start being refused. */
    int keys = free_pthread_keys();
    if (keys >= 0 && keys < 64) say("warning: %d pthread keys left in this process; loads are refused below 4", keys);
    if (old) retire(old);
    return SWAP_DONE;
}
