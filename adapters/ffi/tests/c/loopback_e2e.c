/* End to end through the C ABI: four batteries handles ("game clients") in one process, a real
 * coordinator (argv[1], its WebSocket URL; adapters/ffi/tests/c_abi.rs runs the coordinator
 * service in-process on 127.0.0.1:0) and real WebRTC links on 127.0.0.1 (host candidates
 * only). Accounts 2000001..2000003 play in prontera, 2000004 in geffen; the map server is
 * played by this program: it hands each handle's receive hook what rAthena would send on map
 * entry (the player's account id, the server tick, the other players of the map standing).
 *
 * Checked, in order, each wait bounded:
 * 1. the three in prontera join one session and link to each other (LINK_UP by callback, on
 *    the library's thread; peers_connected in the stats); the one in geffen links to nobody;
 * 2. a walk and a public chat line sent through one handle's send hook come back whole in its
 *    server bytes (mirror policy) and come out of the other two receive hooks as the walking
 *    packet 0x09FD and the chat packet 0x008D of that account; geffen sees nothing;
 * 3. the third player's policy sends chat and emotes to peers only: its server bytes are
 *    empty, the others draw them, and its own receive hook gets the echo rAthena would have
 *    sent (0x008E for its chat line, its own 0x00C0);
 * 4. an NPC click and an `@` command go only to the server bytes: no peer frame is sent;
 * 5. a handle that stops is reported as PEER_LEFT to the others; every call on a stopped
 *    handle returns RO_P2P_STATUS_ERR_CLOSED, a second stop too.
 * argv[2] is a scratch directory for the log files. */
#define _POSIX_C_SOURCE 199309L
#include <time.h>

#include "check.h"

#define N 4
#define WAIT_S 40.0

static const char *IDS[N] = {"2000001", "2000002", "2000003", "2000004"};
static const uint32_t AIDS[N] = {2000001, 2000002, 2000003, 2000004};
static const char *ZONES[N] = {"prontera", "prontera", "prontera", "geffen"};

/* Written by the callback (another thread), read by main: atomics. */
struct seen {
    int link_up;
    int link_down;
    int peer_left;
    int session_joined;
    int fallback_off;
};
static struct seen seen[N];

static void on_event(const RoP2pEvent *event, void *user_data) {
    struct seen *s = (struct seen *)user_data;
    int *counter = NULL;
    switch (event->kind) {
    case RO_P2P_EVENT_KIND_LINK_UP: counter = &s->link_up; break;
    case RO_P2P_EVENT_KIND_LINK_DOWN: counter = &s->link_down; break;
    case RO_P2P_EVENT_KIND_PEER_LEFT: counter = &s->peer_left; break;
    case RO_P2P_EVENT_KIND_SESSION_JOINED: counter = &s->session_joined; break;
    case RO_P2P_EVENT_KIND_FALLBACK_OFF: counter = &s->fallback_off; break;
    default: break;
    }
    if (counter) __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

static int load(int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static size_t put_u16(uint8_t *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; return 2; }
static size_t put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF;
    return 4;
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* What the map server sends handle i on entry: ZC_AID, ZC_NOTIFY_TIME, and 0x09FF (idle
 * player, 108 bytes at 20211103) for every other player of its map. */
static size_t map_entry(int i, uint8_t *p) {
    size_t n = 0;
    n += put_u16(p + n, 0x0283);
    n += put_u32(p + n, AIDS[i]);
    n += put_u16(p + n, 0x007F);
    n += put_u32(p + n, 500000);
    for (int j = 0; j < N; j++) {
        if (j == i || strcmp(ZONES[i], ZONES[j]) != 0) continue;
        uint8_t *idle = p + n;
        memset(idle, 0, 108);
        put_u16(idle, 0x09FF);
        put_u16(idle + 2, 108);
        idle[4] = 0; /* a player */
        put_u32(idle + 5, AIDS[j]);
        idle[63] = 0x25; idle[64] = 0x8C; idle[65] = 0x84; /* PosDir (150, 200), dir 4 */
        n += 108;
    }
    return n;
}

/* Everything each game client was given by its receive hook. */
static uint8_t shown[N][1 << 16];
static size_t shown_len[N];

static void read_game(uint64_t h, int i) {
    for (;;) {
        uint8_t buf[4096];
        size_t len = 0;
        CHECK_STATUS(rop2p_on_server_recv(h, NULL, 0, buf, sizeof buf, &len), RO_P2P_STATUS_OK);
        if (len == 0) return;
        if (shown_len[i] + len > sizeof shown[i]) { CHECK(!"game stream overflow"); return; }
        memcpy(shown[i] + shown_len[i], buf, len);
        shown_len[i] += len;
    }
}

static size_t zc_len(const uint8_t *p, size_t left) {
    if (left < 2) return 0;
    switch (p[0] | p[1] << 8) {
    case 0x0283: case 0x007F: return 6;
    case 0x09FF: return 108;
    case 0x09FD: return 114;
    case 0x0086: return 16;
    case 0x0087: return 12;
    case 0x009C: return 9;
    case 0x00C0: return 7;
    case 0x008D: case 0x008E: return left >= 4 ? (size_t)(p[2] | p[3] << 8) : 0;
    default: return 0;
    }
}

/* How many whole packets `id` the game client i was shown, from account `aid` (at `aid_at`),
 * containing `text` if not NULL; -1 if the stream does not frame. */
static int count_shown(int i, uint16_t id, size_t aid_at, uint32_t aid, const char *text) {
    int count = 0;
    size_t at = 0;
    while (at < shown_len[i]) {
        const uint8_t *p = shown[i] + at;
        size_t len = zc_len(p, shown_len[i] - at);
        if (len < 4 || at + len > shown_len[i]) return -1;
        if ((p[0] | p[1] << 8) == id && len >= aid_at + 4 && get_u32(p + aid_at) == aid) {
            if (!text) count++;
            else {
                size_t tl = strlen(text);
                for (size_t k = aid_at + 4; k + tl <= len; k++)
                    if (memcmp(p + k, text, tl) == 0) { count++; break; }
            }
        }
        at += len;
    }
    return count;
}

/* How many whole packets `id` the game client i was shown that contain `text`. */
static int count_text(int i, uint16_t id, const char *text) {
    int count = 0;
    size_t at = 0, tl = strlen(text);
    while (at < shown_len[i]) {
        const uint8_t *p = shown[i] + at;
        size_t len = zc_len(p, shown_len[i] - at);
        if (len < 4 || at + len > shown_len[i]) return -1;
        if ((p[0] | p[1] << 8) == id)
            for (size_t k = 4; k + tl <= len; k++)
                if (memcmp(p + k, text, tl) == 0) { count++; break; }
        at += len;
    }
    return count;
}

static RoP2pStats stats_of(uint64_t h) {
    RoP2pStats st;
    memset(&st, 0, sizeof st);
    CHECK_STATUS(rop2p_stats(h, &st), RO_P2P_STATUS_OK);
    return st;
}

/* Sends `bytes` through handle h's send hook; checks that the server gets exactly them back
 * (mirror policy, or server-only packets). */
static void send_mirrored(uint64_t h, const uint8_t *bytes, size_t len, const char *what) {
    uint8_t out[512];
    size_t out_len = 0;
    CHECK_STATUS(rop2p_on_game_send(h, bytes, len, out, sizeof out, &out_len), RO_P2P_STATUS_OK);
    if (out_len != len || memcmp(out, bytes, len) != 0) {
        fprintf(stderr, "%s: the server bytes differ from what the game sent\n", what);
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: loopback_e2e WS_URL SCRATCH_DIR\n"); return 2; }
    setvbuf(stdout, NULL, _IONBF, 0);
    uint64_t h[N];
    for (int i = 0; i < N; i++) {
        char config[1024];
        snprintf(config, sizeof config,
                 "{ \"coordinator\": { \"websocket_url\": \"%s\", \"reconnect_delay_ms\": 100 },\n"
                 "  \"p2p\": { \"policy\": \"%s\" },\n"
                 "  \"security\": { \"enable_authentication\": false },\n"
                 "  \"logging\": { \"level\": \"debug\" },\n"
                 "  \"zones\": { \"p2p_enabled_zones\": [\"prontera\", \"geffen\"] } }\n",
                 argv[1],
                 i == 2 ? "movement=mirror,chat=peers,emote=peers"
                        : "movement=mirror,chat=mirror,emote=mirror");
        char log_path[1024];
        snprintf(log_path, sizeof log_path, "%s/e2e-%s.log", argv[2], IDS[i]);
        remove(log_path);
        RoP2pStartOptions options = {NULL, IDS[i], "127.0.0.1", 0, NULL};
        CHECK_STATUS(rop2p_start_with(config, RO_P2P_CONFIG_FORMAT_JSON, log_path, &options, &h[i]),
                     RO_P2P_STATUS_OK);
        CHECK_STATUS(rop2p_set_event_callback(h[i], on_event, &seen[i]), RO_P2P_STATUS_OK);
        CHECK_STATUS(rop2p_set_zone(h[i], ZONES[i]), RO_P2P_STATUS_OK);
        uint8_t entry[1024];
        size_t entry_len = map_entry(i, entry), len = 0;
        uint8_t out[1024];
        CHECK_STATUS(rop2p_on_server_recv(h[i], entry, entry_len, out, sizeof out, &len), RO_P2P_STATUS_OK);
        CHECK(len == entry_len && memcmp(out, entry, len) == 0);
    }
    if (failures) return 1;

    /* 1. The three in prontera link to each other. */
    double start = now_s();
    int linked = 0;
    while (!linked && now_s() - start < WAIT_S) {
        linked = 1;
        for (int i = 0; i < 3; i++)
            if (load(&seen[i].link_up) < 2 || stats_of(h[i]).peers_connected < 2) linked = 0;
        if (!linked) sleep_ms(50);
    }
    printf("linked after %.2f s\n", now_s() - start);
    CHECK(linked);
    for (int i = 0; i < 3; i++) {
        RoP2pStats st = stats_of(h[i]);
        CHECK(st.p2p_active == 1 && st.peers_connected == 2);
        CHECK(load(&seen[i].session_joined) >= 1 && load(&seen[i].fallback_off) >= 1);
    }
    CHECK(stats_of(h[3]).peers_connected == 0 && stats_of(h[3]).p2p_active == 0);
    CHECK(load(&seen[3].link_up) == 0);
    if (failures) return 1;

    /* 2. Walk and chat from the first player, mirrored to the server, drawn for the others. */
    const uint8_t walk[] = {0x5F, 0x03, 0x28, 0x0C, 0xD0}; /* to (160, 205) */
    const char *line = "Alice : hello from the send hook";
    uint8_t chat[128];
    size_t chat_len = 4 + strlen(line);
    put_u16(chat, 0x00F3);
    put_u16(chat + 2, (uint16_t)chat_len);
    memcpy(chat + 4, line, strlen(line));
    send_mirrored(h[0], walk, sizeof walk, "walk");
    send_mirrored(h[0], chat, chat_len, "chat");
    start = now_s();
    int drawn = 0;
    while (!drawn && now_s() - start < WAIT_S) {
        drawn = 1;
        for (int i = 1; i < 3; i++) {
            read_game(h[i], i);
            if (count_shown(i, 0x09FD, 5, AIDS[0], NULL) < 1 ||
                count_shown(i, 0x008D, 4, AIDS[0], line) < 1)
                drawn = 0;
        }
        if (!drawn) sleep_ms(20);
    }
    printf("walk and chat drawn after %.3f s\n", now_s() - start);
    CHECK(drawn);
    for (int i = 1; i < 3; i++) {
        CHECK(count_shown(i, 0x09FD, 5, AIDS[0], NULL) == 1);
        CHECK(count_shown(i, 0x008D, 4, AIDS[0], line) == 1);
        RoP2pStats st = stats_of(h[i]);
        CHECK(st.router.rendered == 2 && st.peer_frames_received == 2);
    }
    RoP2pStats sender = stats_of(h[0]);
    CHECK(sender.router.packets == 2 && sender.router.to_server == 2 && sender.router.to_peers == 2);
    CHECK(sender.peer_frames_sent == 4); /* two packets, two peers each */
    read_game(h[0], 0);
    CHECK(count_shown(0, 0x09FD, 5, AIDS[0], NULL) == 0); /* nobody draws the player itself */

    /* 3. Peers-only chat and emote from the third player: echoed locally, drawn for others. */
    const char *secret = "Carol : peers only";
    uint8_t pchat[64];
    size_t pchat_len = 4 + strlen(secret);
    put_u16(pchat, 0x00F3);
    put_u16(pchat + 2, (uint16_t)pchat_len);
    memcpy(pchat + 4, secret, strlen(secret));
    const uint8_t emote[] = {0xBF, 0x00, 5};
    {
        uint8_t out[256];
        size_t out_len = 99;
        CHECK_STATUS(rop2p_on_game_send(h[2], pchat, pchat_len, out, sizeof out, &out_len), RO_P2P_STATUS_OK);
        CHECK(out_len == 0);
        CHECK_STATUS(rop2p_on_game_send(h[2], emote, sizeof emote, out, sizeof out, &out_len), RO_P2P_STATUS_OK);
        CHECK(out_len == 0);
    }
    read_game(h[2], 2);
    CHECK(count_text(2, 0x008E, secret) == 1);
    CHECK(count_shown(2, 0x00C0, 2, AIDS[2], NULL) == 1);
    CHECK(stats_of(h[2]).router.local_echoes == 2);
    start = now_s();
    drawn = 0;
    while (!drawn && now_s() - start < WAIT_S) {
        drawn = 1;
        for (int i = 0; i < 2; i++) {
            read_game(h[i], i);
            if (count_shown(i, 0x008D, 4, AIDS[2], secret) < 1 ||
                count_shown(i, 0x00C0, 2, AIDS[2], NULL) < 1)
                drawn = 0;
        }
        if (!drawn) sleep_ms(20);
    }
    CHECK(drawn);

    /* 4. An NPC click and an @ command: server only. */
    const uint8_t npc[] = {0x90, 0x00, 0x10, 0x27, 0x00, 0x00, 1}; /* NPC 10000 */
    const char *command = "Alice : @where";
    uint8_t cmd[64];
    size_t cmd_len = 4 + strlen(command);
    put_u16(cmd, 0x00F3);
    put_u16(cmd + 2, (uint16_t)cmd_len);
    memcpy(cmd + 4, command, strlen(command));
    send_mirrored(h[0], npc, sizeof npc, "npc click");
    send_mirrored(h[0], cmd, cmd_len, "@ command");
    RoP2pStats after = stats_of(h[0]);
    CHECK(after.router.packets == 4 && after.router.to_server == 4 && after.router.to_peers == 2);
    CHECK(after.peer_frames_sent == 4);

    /* A marker chat from the second player: once it is drawn for the first, anything sent
     * before it would have arrived too (one ordered chat channel per link). */
    const char *marker = "Bob : marker";
    uint8_t mchat[64];
    size_t mchat_len = 4 + strlen(marker);
    put_u16(mchat, 0x00F3);
    put_u16(mchat + 2, (uint16_t)mchat_len);
    memcpy(mchat + 4, marker, strlen(marker));
    send_mirrored(h[1], mchat, mchat_len, "marker chat");
    start = now_s();
    while (count_shown(2, 0x008D, 4, AIDS[1], marker) < 1 && now_s() - start < WAIT_S) {
        read_game(h[2], 2);
        sleep_ms(20);
    }
    CHECK(count_shown(2, 0x008D, 4, AIDS[1], marker) == 1);
    read_game(h[1], 1);
    CHECK(count_shown(1, 0x008D, 4, AIDS[0], "@where") == 0);
    CHECK(count_shown(2, 0x008D, 4, AIDS[0], "@where") == 0);
    CHECK(stats_of(h[2]).peer_frames_received == 3);

    /* The one in geffen was shown nothing but its map entry. */
    read_game(h[3], 3);
    CHECK(shown_len[3] == 0);
    CHECK(stats_of(h[3]).peer_frames_received == 0);

    /* 5. Stop the first: the others hear it left; calls on it are refused. */
    CHECK_STATUS(rop2p_stop(h[0]), RO_P2P_STATUS_OK);
    start = now_s();
    while ((load(&seen[1].peer_left) < 1 || load(&seen[2].peer_left) < 1) && now_s() - start < WAIT_S)
        sleep_ms(20);
    CHECK(load(&seen[1].peer_left) == 1 && load(&seen[2].peer_left) == 1);
    CHECK_STATUS(rop2p_stop(h[0]), RO_P2P_STATUS_ERR_CLOSED);
    uint8_t out[64];
    size_t len = 0;
    CHECK_STATUS(rop2p_on_game_send(h[0], walk, sizeof walk, out, sizeof out, &len), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_on_server_recv(h[0], NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_set_zone(h[0], "prontera"), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_new_map_connection(h[0]), RO_P2P_STATUS_ERR_CLOSED);
    RoP2pStats st;
    CHECK_STATUS(rop2p_stats(h[0], &st), RO_P2P_STATUS_ERR_CLOSED);
    for (int i = 1; i < N; i++) CHECK_STATUS(rop2p_stop(h[i]), RO_P2P_STATUS_OK);
    printf("stopped after %.2f s\n", now_s() - start);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("loopback e2e: all checks passed\n");
    return 0;
}
