/* A plugin of a future ABI major (2.0): a host speaking 1.x must refuse it before calling anything else. */
#include <stddef.h>
#include <stdint.h>

uint32_t bp_abi_version(void) { return 2u << 16; }
const void *bp_get_api(uint32_t abi_major) { (void)abi_major; return NULL; }
