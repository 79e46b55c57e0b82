/* Replays a capture of what a game client sent to the map server through ro-p2p's send hook
 * (core layer) and prints where each piece went.
 *
 *   replay [-v PACKETVER] [-p POLICY] [-o on|off] [-s] [-c CHUNK] [CAPTURE]
 *
 * CAPTURE is the raw client-to-map-server byte stream (as `ro-p2p classify` reads it); without
 * it a small built-in capture is used. -s replays as if no peer were reachable (everything to
 * the server). -c sets how many bytes each simulated send() carries (default 64). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ro_p2p.h"

/* 20211103: walk, chat, NPC click, emote, chat command, turn. */
static const uint8_t DEMO[] = {
    0x5F, 0x03, 0x25, 0x8C, 0x80,                                      /* walk to (150, 200) */
    0xF3, 0x00, 15, 0, 'A', 'l', 'i', 'c', 'e', ' ', ':', ' ', 'h', 'i', 0x21,
    0x90, 0x00, 0x10, 0x27, 0x00, 0x00, 0x01,                          /* NPC click */
    0xBF, 0x00, 0x05,                                                  /* emote 5 */
    0xF3, 0x00, 20, 0, 'A', 'l', 'i', 'c', 'e', ' ', ':', ' ', '@', 'w', 'a', 'r', 'p', 0x21, 0x21, 0x21,
    0x61, 0x03, 0x00, 0x00, 0x06,                                      /* turn east */
};

static void die(const char *what, RoP2pStatus s) {
    char msg[512];
    size_t len = 0;
    if (rop2p_last_error(msg, sizeof msg, &len) != RO_P2P_STATUS_OK) msg[0] = 0;
    fprintf(stderr, "%s: %s: %s\n", what, rop2p_status_name(s), msg);
    exit(1);
}

static void print_event(const uint8_t *e, size_t len) {
    switch (e[0] & 0x0F) {
    case 1: printf("move to (%u, %u)", e[1] | e[2] << 8, e[3] | e[4] << 8); break;
    case 2: printf("turn head %u body %u", e[1], e[2]); break;
    case 3: printf("chat \"%.*s\"", (int)(len - 3), (const char *)e + 3); break;
    case 4: printf("emote %u", e[1]); break;
    default: printf("event kind %u", e[0] & 0x0F);
    }
}

int main(int argc, char **argv) {
    uint32_t packetver = 20211103;
    const char *policy = NULL, *path = NULL;
    int obfuscation = -1, peers = 1;
    size_t chunk = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v") && i + 1 < argc) packetver = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) policy = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) obfuscation = !strcmp(argv[++i], "on");
        else if (!strcmp(argv[i], "-s")) peers = 0;
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) chunk = (size_t)strtoul(argv[++i], NULL, 10);
        else path = argv[i];
    }
    if (chunk == 0) chunk = 1;

    uint8_t *capture = (uint8_t *)DEMO;
    size_t size = sizeof DEMO;
    if (path) {
        FILE *f = fopen(path, "rb");
        if (!f) { perror(path); return 1; }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        capture = malloc(n > 0 ? (size_t)n : 1);
        size = fread(capture, 1, n > 0 ? (size_t)n : 0, f);
        fclose(f);
    }

    uint64_t router;
    RoP2pStatus s = rop2p_router_new(packetver, policy, obfuscation, &router);
    if (s != RO_P2P_STATUS_OK) die("rop2p_router_new", s);
    RoP2pRouteContext ctx = {peers, peers, peers, peers, peers};
    rop2p_router_set_context(router, ctx);
    printf("ro-p2p %s, PACKETVER %u, policy %s, peers %s\n", rop2p_version(), packetver,
           policy ? policy : "default (mirror)", peers ? "reachable" : "unreachable");

    size_t cap = chunk + 65536, out_len = 0;
    uint8_t *out = malloc(cap);
    uint8_t event[1024];
    size_t event_len;
    for (size_t at = 0; at < size; at += chunk) {
        size_t n = size - at < chunk ? size - at : chunk;
        s = rop2p_router_on_game_send(router, capture + at, n, out, cap, &out_len);
        if (s != RO_P2P_STATUS_OK) die("rop2p_router_on_game_send", s);
        printf("send() of %zu bytes at offset %zu: %zu bytes to the server", n, at, out_len);
        while (rop2p_router_poll_peer_event(router, event, sizeof event, &event_len) == RO_P2P_STATUS_OK) {
            printf("; to peers: ");
            print_event(event, event_len);
        }
        printf("\n");
    }
    RoP2pEvent ev;
    while (rop2p_router_poll_event(router, &ev) == RO_P2P_STATUS_OK) printf("event: %s\n", ev.text);

    RoP2pRouterStats st;
    rop2p_router_stats(router, &st);
    printf("packets %llu: %llu to the server, %llu to peers%s\n", (unsigned long long)st.packets,
           (unsigned long long)st.to_server, (unsigned long long)st.to_peers,
           st.send_desynced ? " (stream desynced: the rest went to the server untouched)" : "");
    rop2p_router_free(router);
    free(out);
    if (capture != DEMO) free(capture);
    return 0;
}
