/* A C host built only from what `make install` put in place: found through pkg-config, linked
 * against the installed library. Prints the ABI version and the plugin's info. */
#include <bedrock_plugin.h>
#include <stdio.h>

int main(void) {
    uint32_t v = bp_abi_version();
    printf("abi %u.%u\n%s\n", v >> 16, v & 0xFFFF, bp_plugin_info());
    return v >> 16 == BP_ABI_VERSION_MAJOR ? 0 : 1;
}
