/* C test of the core layer (rop2p_router_*): routing, rendering, and misuse. Built and run by
 * adapters/ffi/tests/c_abi.rs with the system C compiler. Exit status 0 means every check held. */
#include "check.h"

static const RoP2pRouteContext ALL_READY = {true, true, true, true, true};

/* 0x035F CZ_REQUEST_MOVE to (150, 200), PACKETVER 20211103. */
static const uint8_t WALK[] = {0x5F, 0x03, 0x25, 0x8C, 0x80};
/* 0x00F3 public chat "Me : hi" (no NUL at 20211103). */
static const uint8_t CHAT[] = {0xF3, 0x00, 11, 0x00, 'M', 'e', ' ', ':', ' ', 'h', 'i'};
/* 0x00BF emote 5. */
static const uint8_t EMOTE[] = {0xBF, 0x00, 5};

static size_t put_u16(uint8_t *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; return 2; }
static size_t put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF;
    return 4;
}

/* What the server sends on map entry: ZC_AID (own account 1), player 7 standing (0x09FF, 108
 * bytes at 20211103), and ZC_NOTIFY_TIME. */
static size_t server_hello(uint8_t *p) {
    size_t n = 0;
    n += put_u16(p + n, 0x0283);
    n += put_u32(p + n, 1);
    uint8_t *idle = p + n;
    memset(idle, 0, 108);
    put_u16(idle, 0x09FF);
    put_u16(idle + 2, 108);
    idle[4] = 0; /* a player */
    put_u32(idle + 5, 7);
    idle[63] = 0x25; idle[64] = 0x8C; idle[65] = 0x84; /* PosDir (150, 200), dir 4 */
    n += 108;
    n += put_u16(p + n, 0x007F);
    n += put_u32(p + n, 123456);
    return n;
}

static void test_names_and_version(void) {
    CHECK(strlen(rop2p_version()) > 0);
    CHECK(strcmp(rop2p_status_name(RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL),
                 "RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL") == 0);
    CHECK(strcmp(rop2p_status_name(12345), "RO_P2P_STATUS_UNKNOWN") == 0);
}

static void test_create_errors(void) {
    uint64_t h = 0;
    /* A date rAthena has no obfuscation keys for; Ragexe where it builds only RagexeRE. */
    CHECK_STATUS(rop2p_router_new(20150105, NULL, -1, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "unsupported PACKETVER") != NULL);
    CHECK_STATUS(rop2p_router_new_for_client(20180620, "main", NULL, -1, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "RagexeRE") != NULL);
    CHECK_STATUS(rop2p_router_new_for_client(20200401, "ragexe", NULL, -1, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    /* Any version rAthena builds, in each family. */
    CHECK_STATUS(rop2p_router_new(20200401, NULL, -1, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_new_for_client(20200401, "zero", NULL, -1, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_new_for_client(20200401, NULL, NULL, -1, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_new(20211103, "npc=peers", -1, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK(strstr(last_error(), "npc") != NULL);
    CHECK_STATUS(rop2p_router_new(20211103, "walking=mirror", -1, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK_STATUS(rop2p_router_new(20211103, NULL, 7, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_router_new(20211103, NULL, -1, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    const char bad_utf8[] = {(char)0xFF, 0};
    CHECK_STATUS(rop2p_router_new(20211103, bad_utf8, -1, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
}

static void test_routing(void) {
    uint64_t h = 0;
    uint8_t out[256];
    size_t len = 99;
    CHECK_STATUS(rop2p_router_new(20211103, NULL, -1, &h), RO_P2P_STATUS_OK);

    /* No context yet: everything to the server, nothing for peers. */
    CHECK_STATUS(rop2p_router_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK && memcmp(out, WALK, len) == 0);
    CHECK_STATUS(rop2p_router_poll_peer_event(h, out, sizeof out, &len), RO_P2P_STATUS_NO_DATA);
    CHECK(len == 0);

    /* Peers usable, default policy mirror: server gets the walk, peers the Move event. */
    CHECK_STATUS(rop2p_router_set_context(h, ALL_READY), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK && memcmp(out, WALK, len) == 0);
    CHECK_STATUS(rop2p_router_poll_peer_event(h, out, sizeof out, &len), RO_P2P_STATUS_OK);
    const uint8_t move[] = {0x11, 150, 0, 200, 0};
    CHECK(len == sizeof move && memcmp(out, move, len) == 0);

    /* Split packets are held until whole. */
    CHECK_STATUS(rop2p_router_on_game_send(h, CHAT, 3, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 0);
    CHECK_STATUS(rop2p_router_on_game_send(h, CHAT + 3, sizeof CHAT - 3, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof CHAT && memcmp(out, CHAT, len) == 0);

    /* Too small: the size needed, nothing lost; then read it with an empty call. */
    CHECK_STATUS(rop2p_router_poll_peer_event(h, out, 2, &len), RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 1 + 2 + 7);
    CHECK(strstr(last_error(), "10 bytes needed") != NULL);
    CHECK_STATUS(rop2p_router_poll_peer_event(h, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 10 && out[0] == 0x13 && memcmp(out + 3, "Me : hi", 7) == 0);
    CHECK_STATUS(rop2p_router_on_game_send(h, EMOTE, sizeof EMOTE, out, 1, &len), RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof EMOTE);
    CHECK_STATUS(rop2p_router_on_game_send(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof EMOTE && memcmp(out, EMOTE, len) == 0);

    /* Garbage: the stream desyncs, bytes pass untouched, an event says so. */
    const uint8_t garbage[] = {0xFF, 0xFF, 1, 2, 3};
    CHECK_STATUS(rop2p_router_on_game_send(h, garbage, sizeof garbage, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof garbage && memcmp(out, garbage, len) == 0);
    CHECK_STATUS(rop2p_router_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK);
    RoP2pEvent ev;
    CHECK_STATUS(rop2p_router_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_SEND_DESYNC && ev.value == 2 * sizeof WALK + sizeof CHAT + sizeof EMOTE);
    CHECK_STATUS(rop2p_router_poll_event(h, &ev), RO_P2P_STATUS_NO_DATA);

    RoP2pRouterStats st;
    CHECK_STATUS(rop2p_router_stats(h, &st), RO_P2P_STATUS_OK);
    CHECK(st.packets == 4 && st.to_server == 4 && st.to_peers == 3 && st.send_desynced == 1);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
}

static void test_peers_only_echoes_locally(void) {
    uint64_t h = 0;
    uint8_t out[256];
    size_t len = 0;
    CHECK_STATUS(rop2p_router_new(20211103, "chat=peers", -1, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_set_context(h, ALL_READY), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_on_game_send(h, CHAT, sizeof CHAT, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 0); /* not for the server */
    CHECK_STATUS(rop2p_router_on_server_recv(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    const uint8_t echo[] = {0x8E, 0x00, 12, 0, 'M', 'e', ' ', ':', ' ', 'h', 'i', 0};
    CHECK(len == sizeof echo && memcmp(out, echo, len) == 0);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
}

static void test_rendering(void) {
    uint64_t h = 0;
    uint8_t hello[256], out[512];
    size_t len = 0, pending = 0;
    CHECK_STATUS(rop2p_router_new(20211103, NULL, -1, &h), RO_P2P_STATUS_OK);
    size_t n = server_hello(hello);

    /* Server bytes reach the game unchanged, in any split, read in any size. */
    CHECK_STATUS(rop2p_router_on_server_recv(h, hello, 10, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 6); /* ZC_AID whole; the idle packet is partial */
    size_t got = len;
    CHECK_STATUS(rop2p_router_on_server_recv(h, hello + 10, n - 10, out + got, 5, &len), RO_P2P_STATUS_OK);
    CHECK(len == 5);
    got += len;
    CHECK_STATUS(rop2p_router_pending_game_bytes(h, &pending), RO_P2P_STATUS_OK);
    CHECK(pending == n - got);
    CHECK_STATUS(rop2p_router_on_server_recv(h, NULL, 0, out + got, sizeof out - got, &len), RO_P2P_STATUS_OK);
    got += len;
    CHECK(got == n && memcmp(out, hello, n) == 0);

    /* A peer's emote and turn are drawn with its account id. */
    const uint8_t emote_event[] = {0x14, 5};
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, emote_event, sizeof emote_event), RO_P2P_STATUS_OK);
    const uint8_t turn_event[] = {0x12, 1, 6};
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, turn_event, sizeof turn_event), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_on_server_recv(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    const uint8_t drawn[] = {0xC0, 0x00, 7, 0, 0, 0, 5, 0x9C, 0x00, 7, 0, 0, 0, 1, 0, 6};
    CHECK(len == sizeof drawn && memcmp(out, drawn, len) == 0);

    /* A walk becomes the 114-byte unit-walking packet. */
    const uint8_t move_event[] = {0x11, 152, 0, 201, 0};
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, move_event, sizeof move_event), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_on_server_recv(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 114 && out[0] == 0xFD && out[1] == 0x09 && out[5] == 7);

    /* The server's copy of that emote is dropped. */
    const uint8_t server_emote[] = {0xC0, 0x00, 7, 0, 0, 0, 5};
    CHECK_STATUS(rop2p_router_on_server_recv(h, server_emote, sizeof server_emote, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == 0);

    /* Rejections: unknown unit, own account, garbage event bytes. */
    CHECK_STATUS(rop2p_router_on_peer_event(h, 8, emote_event, sizeof emote_event), RO_P2P_STATUS_ERR_REJECTED);
    CHECK(strstr(last_error(), "8") != NULL);
    CHECK_STATUS(rop2p_router_on_peer_event(h, 1, emote_event, sizeof emote_event), RO_P2P_STATUS_ERR_REJECTED);
    const uint8_t mute[] = {0x14, 34};
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, mute, sizeof mute), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    const uint8_t junk[] = {0x99, 1, 2, 3};
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, junk, sizeof junk), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, junk, 0), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);

    /* Server garbage: untouched pass-through, injection stops, an event says so. */
    const uint8_t garbage[] = {0xFF, 0xFF, 9, 9};
    CHECK_STATUS(rop2p_router_on_server_recv(h, garbage, sizeof garbage, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof garbage && memcmp(out, garbage, len) == 0);
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, emote_event, sizeof emote_event), RO_P2P_STATUS_ERR_REJECTED);
    RoP2pEvent ev;
    CHECK_STATUS(rop2p_router_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_RECV_DESYNC && strstr(ev.text, "desynced") != NULL);

    RoP2pRouterStats st;
    CHECK_STATUS(rop2p_router_stats(h, &st), RO_P2P_STATUS_OK);
    CHECK(st.rendered == 3 && st.render_rejected == 3 && st.server_duplicates_dropped == 1);
    CHECK(st.recv_desynced == 1);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
}

static void test_misuse(void) {
    uint64_t h = 0;
    uint8_t out[64];
    size_t len = 0;
    RoP2pEvent ev;
    RoP2pRouterStats st;
    CHECK_STATUS(rop2p_router_new(20120410, "movement=server,chat=mirror,emote=peers", 1, &h), RO_P2P_STATUS_OK);

    /* NULL pointers. */
    CHECK_STATUS(rop2p_router_on_game_send(h, WALK, sizeof WALK, out, sizeof out, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_on_game_send(h, NULL, 5, out, sizeof out, &len), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK(strstr(last_error(), "data is NULL") != NULL);
    CHECK_STATUS(rop2p_router_on_server_recv(h, NULL, 0, NULL, 10, &len), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_on_peer_event(h, 7, NULL, 2), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_poll_event(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_stats(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_pending_game_bytes(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_router_poll_peer_event(h, out, sizeof out, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    /* NULL output with capacity 0 is fine when nothing is due. */
    CHECK_STATUS(rop2p_router_on_game_send(h, NULL, 0, NULL, 0, &len), RO_P2P_STATUS_OK);
    CHECK(len == 0);

    /* Garbage in quantity never crashes; bytes still reach the server. */
    uint8_t noise[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof noise; i++) { x = x * 1103515245u + 12345u; noise[i] = (uint8_t)(x >> 16); }
    static uint8_t big[1 << 16];
    CHECK_STATUS(rop2p_router_on_game_send(h, noise, sizeof noise, big, sizeof big, &len), RO_P2P_STATUS_OK);
    CHECK(len <= sizeof noise);
    CHECK_STATUS(rop2p_router_on_server_recv(h, noise, sizeof noise, big, sizeof big, &len), RO_P2P_STATUS_OK);
    for (int i = 0; i < 64; i++) {
        CHECK(rop2p_router_on_peer_event(h, (uint32_t)i, noise + i, (size_t)i) <= 0);
    }

    /* Forged and wrong handles. */
    CHECK_STATUS(rop2p_router_stats(12345, &st), RO_P2P_STATUS_ERR_INVALID_HANDLE);
    CHECK_STATUS(rop2p_router_stats(0, &st), RO_P2P_STATUS_ERR_INVALID_HANDLE);
    CHECK_STATUS(rop2p_router_free(h + 1000), RO_P2P_STATUS_ERR_INVALID_HANDLE);

    /* Double free and calls after free. */
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_ERR_CLOSED);
    CHECK(strstr(last_error(), "already freed") != NULL);
    CHECK_STATUS(rop2p_router_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_router_poll_event(h, &ev), RO_P2P_STATUS_ERR_CLOSED);

    /* The last error itself: too small says how large. */
    char tiny[4];
    CHECK_STATUS(rop2p_last_error(tiny, sizeof tiny, &len), RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len > sizeof tiny);
    char *fit = malloc(len);
    size_t msg_len = 0;
    CHECK_STATUS(rop2p_last_error(fit, len, &msg_len), RO_P2P_STATUS_OK);
    CHECK(msg_len == len - 1 && fit[msg_len] == 0);
    free(fit);
    CHECK_STATUS(rop2p_last_error(tiny, sizeof tiny, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);

    /* A panic inside is caught and reported; the library keeps working. */
    CHECK_STATUS(rop2p_test_panic(), RO_P2P_STATUS_ERR_PANIC);
    CHECK(strstr(last_error(), "panic") != NULL);
    CHECK_STATUS(rop2p_router_new(20151104, NULL, -1, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_router_free(h), RO_P2P_STATUS_OK);
}

int main(void) {
    test_names_and_version();
    test_create_errors();
    test_routing();
    test_peers_only_echoes_locally();
    test_rendering();
    test_misuse();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("core layer: all checks passed\n");
    return 0;
}
