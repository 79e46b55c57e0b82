/* C test of the batteries layer (rop2p_start ... rop2p_stop): configuration from both formats,
 * hooks, events by callback and by polling, stats, the log file, and misuse. argv[1] is a
 * scratch directory for log files. Built and run by adapters/ffi/tests/c_abi.rs. */
#include "check.h"

/* The published production p2p_config.json, comments included. */
static const char *JSON_CONFIG =
    "{\n"
    "  \"coordinator\": {\n"
    "    \"rest_api_url\": \"https://your-server.com:8001/api/v1\",\n"
    "    \"websocket_url\": \"wss://your-server.com:8001/api/v1/signaling/ws\",\n"
    "    \"timeout_seconds\": 30\n"
    "  },\n"
    "  \"p2p\": { \"enabled\": true, \"max_peers\": 50 },\n"
    "  \"security\": { \"enable_encryption\": true, // REQUIRED in production\n"
    "    \"enable_authentication\": true, \"certificate_validation\": true, \"tls_version\": \"1.3\" },\n"
    "  \"logging\": { \"level\": \"debug\", \"console_output\": false, \"file\": \"p2p_dll.log\" },\n"
    "  \"zones\": { \"p2p_enabled_zones\": [\"prontera\", \"geffen\"], \"fallback_on_failure\": true }\n"
    "}\n";

static const char *INI_CONFIG =
    "[Game]\nWidth=1024\n\n[P2P]\n; Enable P2P hosting\nEnableP2P=1\nMainServerFallback=1\n"
    "CoordinatorURL=ws://localhost:8001/api/signaling/ws\nConnectionTimeout=5000\n";

static const uint8_t WALK[] = {0x5F, 0x03, 0x25, 0x8C, 0x80};

struct seen { int count; int fallback_on; };

static void on_event(const RoP2pEvent *event, void *user_data) {
    struct seen *s = (struct seen *)user_data;
    s->count++;
    if (event->kind == RO_P2P_EVENT_KIND_FALLBACK_ON && strstr(event->text, "map server") != NULL)
        s->fallback_on++;
}

/* Calls back into the library from the callback: reads the stats, then stops its own
 * instance (allowed: no lock is held while a callback runs). */
struct reentrant { uint64_t handle; int calls; RoP2pStatus stats_status; RoP2pStatus stop_status; };

static void reenter(const RoP2pEvent *event, void *user_data) {
    struct reentrant *r = (struct reentrant *)user_data;
    (void)event;
    RoP2pStats st;
    if (r->calls++ == 0) {
        r->stats_status = rop2p_stats(r->handle, &st);
        r->stop_status = rop2p_stop(r->handle);
    }
}

static int file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: batteries_layer SCRATCH_DIR\n"); return 2; }
    char log_json[1024], log_ini[1024];
    snprintf(log_json, sizeof log_json, "%s/json.log", argv[1]);
    snprintf(log_ini, sizeof log_ini, "%s/ini.log", argv[1]);
    remove(log_json);
    remove(log_ini);

    uint64_t h = 0;
    uint8_t out[256];
    size_t len = 0;

    /* Bad configurations say what is wrong. */
    CHECK_STATUS(rop2p_start("{ \"coordinator\": { \"websocket_url\": \"ws://h/ws\" }, \"p2p\": { \"max_peers\": 5000 } }", RO_P2P_CONFIG_FORMAT_JSON, log_json, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK(strstr(last_error(), "max_peers") != NULL);
    CHECK(strstr(last_error(), "websocket_url") == NULL);
    CHECK_STATUS(rop2p_start("{ \"p2p\": { \"typo\": 1 } }", RO_P2P_CONFIG_FORMAT_JSON, log_json, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK_STATUS(rop2p_start("{ not json", RO_P2P_CONFIG_FORMAT_JSON, log_json, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK_STATUS(rop2p_start("[P2P]\nCoordinatorURL=ws://h/ws\nMaxRetries=lots\n", RO_P2P_CONFIG_FORMAT_INI, log_ini, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK(strstr(last_error(), "MaxRetries") != NULL);
    CHECK_STATUS(rop2p_start(JSON_CONFIG, 3, log_json, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_start(NULL, RO_P2P_CONFIG_FORMAT_JSON, log_json, &h), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_start(JSON_CONFIG, RO_P2P_CONFIG_FORMAT_JSON, log_json, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);

    /* Start from p2p_config.json: in fallback, the hooks pass everything through. */
    CHECK_STATUS(rop2p_start(JSON_CONFIG, RO_P2P_CONFIG_FORMAT_JSON, log_json, &h), RO_P2P_STATUS_OK);
    struct seen seen = {0, 0};
    CHECK_STATUS(rop2p_set_event_callback(h, on_event, &seen), RO_P2P_STATUS_OK);
    CHECK(seen.count == 1 && seen.fallback_on == 1); /* queued at start, delivered on set */
    CHECK_STATUS(rop2p_set_zone(h, "prontera"), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_set_zone(h, "a_map_name_far_too_long_to_be_one"), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_set_zone(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK && memcmp(out, WALK, len) == 0);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, 1, &len), RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL);
    CHECK(len == sizeof WALK);
    CHECK_STATUS(rop2p_on_game_send(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK);
    const uint8_t time_packet[] = {0x7F, 0x00, 1, 2, 3, 4};
    CHECK_STATUS(rop2p_on_server_recv(h, time_packet, sizeof time_packet, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof time_packet && memcmp(out, time_packet, len) == 0);
    /* Partial reads: the rest waits. */
    size_t pending = 99;
    CHECK_STATUS(rop2p_on_server_recv(h, time_packet, sizeof time_packet, out, 2, &len), RO_P2P_STATUS_OK);
    CHECK(len == 2);
    CHECK_STATUS(rop2p_pending_game_bytes(h, &pending), RO_P2P_STATUS_OK);
    CHECK(pending == sizeof time_packet - 2);
    CHECK_STATUS(rop2p_on_server_recv(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof time_packet - 2);
    CHECK_STATUS(rop2p_pending_game_bytes(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    /* Garbage from the server: passed untouched, a desync event reaches the callback. */
    const uint8_t garbage[] = {0xFF, 0xFF, 0xFF};
    CHECK_STATUS(rop2p_on_server_recv(h, garbage, sizeof garbage, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof garbage && memcmp(out, garbage, len) == 0);
    CHECK(seen.count == 2);

    RoP2pStats st;
    CHECK_STATUS(rop2p_stats(h, &st), RO_P2P_STATUS_OK);
    CHECK(st.router.packets == 2 && st.router.to_server == 2 && st.router.to_peers == 0);
    CHECK(st.p2p_active == 0 && st.router.recv_desynced == 1);
    CHECK_STATUS(rop2p_stats(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    /* A handle of another kind is refused. */
    uint64_t router = 0;
    CHECK_STATUS(rop2p_router_new(20211103, NULL, -1, &router), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stats(router, &st), RO_P2P_STATUS_ERR_INVALID_HANDLE);
    CHECK_STATUS(rop2p_router_stats(h, &st.router), RO_P2P_STATUS_ERR_INVALID_HANDLE);
    CHECK_STATUS(rop2p_stop(router), RO_P2P_STATUS_ERR_INVALID_HANDLE);
    CHECK_STATUS(rop2p_router_free(router), RO_P2P_STATUS_OK);

    /* Stop, then every call is refused as closed. */
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_on_server_recv(h, NULL, 0, out, sizeof out, &len), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_set_event_callback(h, NULL, NULL), RO_P2P_STATUS_ERR_CLOSED);
    RoP2pEvent ev;
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_ERR_CLOSED);
    CHECK(file_contains(log_json, "started: PACKETVER 20211103"));
    CHECK(file_contains(log_json, "[info] event FallbackOn"));
    CHECK(file_contains(log_json, "stopped (left the session): 2 packets"));

    /* Start from Data/config.ini; poll events instead of a callback. */
    CHECK_STATUS(rop2p_start(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_FALLBACK_ON);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_NO_DATA);
    CHECK_STATUS(rop2p_poll_event(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK(file_contains(log_ini, "started"));

    /* Start from config.ini plus resourceinfo.ini: its [P2P_HOSTS] are backups (the log says
     * how many URLs); a bad backup is a configuration error that names it. A web auth token
     * refresh must be a web auth token again. */
    RoP2pStartOptions web_ini = {NULL, NULL, NULL, 2000001, "0123456789abcdef"};
    CHECK_STATUS(rop2p_start_ini(INI_CONFIG, "[P2P_HOSTS]\n0=ws://backup.example/ws\n", log_ini, &web_ini, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_refresh_token(h, "fedcba9876543210"), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_refresh_token(h, "not-a-web-token"), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_refresh_token(h, ""), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rop2p_refresh_token(h, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_refresh_token(h, "fedcba9876543210"), RO_P2P_STATUS_ERR_CLOSED);
    CHECK(file_contains(log_ini, "2 coordinator URL(s)"));
    CHECK(file_contains(log_ini, "token refreshed"));
    CHECK_STATUS(rop2p_start_ini(INI_CONFIG, "[P2P_HOSTS]\n0=tcp://nope\n", log_ini, NULL, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK(strstr(last_error(), "P2P_HOSTS.0") != NULL);
    CHECK_STATUS(rop2p_start_ini("[Graphics]\nWidth=800\n", NULL, log_ini, NULL, &h), RO_P2P_STATUS_ERR_CONFIG);
    CHECK(strstr(last_error(), "[P2P]: missing") != NULL);

    /* A NULL callback: events stay for polling. */
    CHECK_STATUS(rop2p_start(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_set_event_callback(h, NULL, NULL), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_FALLBACK_ON);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, sizeof out, NULL), RO_P2P_STATUS_ERR_NULL_POINTER);
    CHECK_STATUS(rop2p_on_server_recv(h, NULL, 0, NULL, 8, &len), RO_P2P_STATUS_ERR_NULL_POINTER);
    /* Garbage from the game: passed to the server untouched, a send desync is reported. */
    const uint8_t game_garbage[] = {0xFF, 0xFF, 1, 2, 3};
    CHECK_STATUS(rop2p_on_game_send(h, game_garbage, sizeof game_garbage, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof game_garbage && memcmp(out, game_garbage, len) == 0);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_SEND_DESYNC);
    CHECK_STATUS(rop2p_stats(h, &st), RO_P2P_STATUS_OK);
    CHECK(st.router.send_desynced == 1);
    CHECK_STATUS(rop2p_new_map_connection(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_new_map_connection(h), RO_P2P_STATUS_ERR_CLOSED);
    CHECK_STATUS(rop2p_stats(h, &st), RO_P2P_STATUS_ERR_CLOSED);

    /* A callback that calls the library, and stops its own instance. */
    struct reentrant r = {0, 0, RO_P2P_STATUS_ERR_PANIC, RO_P2P_STATUS_ERR_PANIC};
    CHECK_STATUS(rop2p_start(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &r.handle), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_set_event_callback(r.handle, reenter, &r), RO_P2P_STATUS_OK);
    CHECK(r.calls == 1 && r.stats_status == RO_P2P_STATUS_OK && r.stop_status == RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stop(r.handle), RO_P2P_STATUS_ERR_CLOSED);

    /* P2P off in the configuration: the node stops at once, the hooks pass everything through,
     * and that is no error. */
    CHECK_STATUS(rop2p_start("[P2P]\nEnableP2P=0\n", RO_P2P_CONFIG_FORMAT_INI, log_ini, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_OK);
    CHECK(ev.kind == RO_P2P_EVENT_KIND_FALLBACK_ON && strstr(ev.text, "disabled") != NULL);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK && memcmp(out, WALK, len) == 0);
    CHECK_STATUS(rop2p_on_game_send(h, WALK, sizeof WALK, out, sizeof out, &len), RO_P2P_STATUS_OK);
    CHECK(len == sizeof WALK && memcmp(out, WALK, len) == 0);
    CHECK_STATUS(rop2p_poll_event(h, &ev), RO_P2P_STATUS_NO_DATA);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);

    /* Start options: a bad peer id or bind address is refused; NULL fields are defaults. */
    RoP2pStartOptions bad_id = {NULL, "not a valid peer id!", NULL, 0, NULL};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &bad_id, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "peer_id") != NULL);
    RoP2pStartOptions bad_ip = {NULL, NULL, "localhost:99", 0, NULL};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &bad_ip, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "udp_bind_ip") != NULL);
    /* rAthena's web auth token: 16 lowercase hex digits, with the account id, not with a token. */
    RoP2pStartOptions bad_web = {NULL, NULL, NULL, 2000001, "0123456789ABCDEF"};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &bad_web, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "web_auth_token") != NULL);
    RoP2pStartOptions web_no_aid = {NULL, NULL, NULL, 0, "0123456789abcdef"};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &web_no_aid, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "account_id") != NULL);
    RoP2pStartOptions web_and_jwt = {"jwt", NULL, NULL, 2000001, "0123456789abcdef"};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &web_and_jwt, &h), RO_P2P_STATUS_ERR_INVALID_ARGUMENT);
    RoP2pStartOptions web = {NULL, NULL, NULL, 2000001, "0123456789abcdef"};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &web, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK(file_contains(log_ini, "peer id 2000001"));
    CHECK(!file_contains(log_ini, "0123456789abcdef"));
    RoP2pStartOptions defaults = {NULL, NULL, NULL, 0, NULL};
    CHECK_STATUS(rop2p_start_with(INI_CONFIG, RO_P2P_CONFIG_FORMAT_INI, log_ini, &defaults, &h), RO_P2P_STATUS_OK);
    CHECK_STATUS(rop2p_stop(h), RO_P2P_STATUS_OK);
    CHECK(file_contains(log_ini, "stopped (left the session)"));

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("batteries layer: all checks passed\n");
    return 0;
}
