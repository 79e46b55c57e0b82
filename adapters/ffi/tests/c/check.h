/* Shared by the C tests of adapters/ffi: CHECK and CHECK_STATUS count failures instead of
 * stopping, so one run reports every broken check; main returns `failures != 0`. */
#ifndef RO_P2P_TEST_CHECK_H
#define RO_P2P_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ro_p2p.h"

static int failures = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define CHECK_STATUS(call, expected)                                                          \
    do {                                                                                      \
        RoP2pStatus s_ = (call);                                                              \
        if (s_ != (expected)) {                                                               \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, \
                    __LINE__, #call, rop2p_status_name(s_), rop2p_status_name(expected),      \
                    last_error());                                                            \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

static const char *last_error(void) {
    static char buf[512];
    size_t len = 0;
    if (rop2p_last_error(buf, sizeof buf, &len) != RO_P2P_STATUS_OK) return "(unreadable)";
    return buf;
}

#endif
