/* A stand-in RO game client for the drop-in DLL (cross-built for i686 and x86_64, run under
 * wine). It uses Winsock the way the RO client does (non-blocking sockets, a select/recv loop)
 * and walks the login -> char -> map flow of PACKETVER 20211103 (CA_LOGIN, AC_ACCEPT_LOGIN
 * 0x0AC4, CH_ENTER, the raw account id, CH_SELECT_CHAR, HC_NOTIFY_ZONESVR 0x0AC5, CZ_ENTER
 * 0x0436). It knows nothing of P2P: ro_p2p_ffi.dll is in its import table (what a NEMO/WARP
 * "load DLL" patch does to the real client), so the loader maps it and its DllMain hooks this
 * program's Winsock imports. The one call into the DLL, rop2p_hook_installed(), only puts it in
 * the import table and reports whether the hooks are in.
 *
 * On the map server it waits for the DLL's "[P2P] on" notice, then walks, chats, emotes, clicks
 * an NPC and sends an @ command, and waits until the other player's walk, chat and emote were
 * drawn into its own stream (they come only over the peer link: each client has its own map
 * server). Every recv must end on a packet boundary (the hook hands over whole packets only).
 * It prints the time each send/recv call took (p50, p99, max) and "stand-in client done".
 *
 * With "close-mid-packet" it ends by sending half a packet and closing the socket; with
 * "no-peers" (the coordinator is down) it acts as soon as the map server spoke and does not
 * wait for the other player.
 *
 * Usage: game_client LOGIN_PORT USER OTHER_ACCOUNT_ID [close-mid-packet|no-peers]
 */
#include <winsock2.h>
#include <windows.h>
#include <psapi.h>
#include <tlhelp32.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned int rop2p_hook_installed(void);

#define WAIT_MS 60000
#define TIMES_MAX 100000

static double times_us[TIMES_MAX];
static int times_n;
static LARGE_INTEGER freq;

static void fail(const char *what) {
    printf("FAIL: %s (WSA error %d)\n", what, WSAGetLastError());
    fflush(stdout);
    exit(1);
}

static double now_ms(void) {
    LARGE_INTEGER t;
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart * 1000.0 / (double)freq.QuadPart;
}

static void timed(double started_ms) {
    if (times_n < TIMES_MAX) times_us[times_n++] = (now_ms() - started_ms) * 1000.0;
}

static uint16_t u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put16(unsigned char *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF;
}

static SOCKET connect_to(uint32_t ip_be, uint16_t port) {
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) fail("socket");
    u_long on = 1;
    ioctlsocket(s, FIONBIO, &on);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = ip_be;
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0 && WSAGetLastError() != WSAEWOULDBLOCK)
        fail("connect");
    fd_set w;
    FD_ZERO(&w);
    FD_SET(s, &w);
    struct timeval tv = {WAIT_MS / 1000, 0};
    if (select(0, NULL, &w, NULL, &tv) != 1) fail("connect did not complete");
    return s;
}

static void send_all(SOCKET s, const unsigned char *p, int n) {
    double deadline = now_ms() + WAIT_MS;
    while (n > 0) {
        double t = now_ms();
        int k = send(s, (const char *)p, n, 0);
        timed(t);
        if (k > 0) {
            p += k;
            n -= k;
        } else if (WSAGetLastError() != WSAEWOULDBLOCK || now_ms() > deadline) {
            fail("send");
        }
    }
}

/* Reads exactly n bytes with select/recv; a recv of a login or char reply may return
 * "would block" while the DLL holds a partial reply back. */
static void read_exact(SOCKET s, unsigned char *p, int n) {
    double deadline = now_ms() + WAIT_MS;
    while (n > 0) {
        fd_set r;
        FD_ZERO(&r);
        FD_SET(s, &r);
        struct timeval tv = {0, 100000};
        select(0, &r, NULL, NULL, &tv);
        double t = now_ms();
        int k = recv(s, (char *)p, n, 0);
        timed(t);
        if (k > 0) {
            p += k;
            n -= k;
        } else if (k == 0) {
            fail("server closed during the gate flow");
        } else if (WSAGetLastError() != WSAEWOULDBLOCK) {
            fail("recv");
        }
        if (now_ms() > deadline) fail("timed out in the gate flow");
    }
}

/* The map server's packets this client understands (PACKETVER 20211103). */
static int zc_len(const unsigned char *p, int avail) {
    if (avail < 2) return 0;
    switch (u16(p)) {
    case 0x007F: return 6;   /* ZC_NOTIFY_TIME */
    case 0x0283: return 6;   /* ZC_AID */
    case 0x0086: return 16;  /* ZC_NOTIFY_MOVE */
    case 0x0087: return 12;  /* ZC_NOTIFY_PLAYERMOVE */
    case 0x009C: return 9;   /* ZC_CHANGE_DIRECTION */
    case 0x00C0: return 7;   /* ZC_EMOTION */
    case 0x008D: case 0x008E: case 0x09FD: case 0x09FE: case 0x09FF:
        if (avail < 4) return 0;
        return u16(p + 2);
    default: return -1;
    }
}

/* Threads of this process and its memory, as Task Manager would show them. */
static void print_process(void) {
    DWORD pid = GetCurrentProcessId();
    int threads = 0;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    if (snap != INVALID_HANDLE_VALUE) {
        THREADENTRY32 te;
        te.dwSize = sizeof te;
        if (Thread32First(snap, &te)) {
            do {
                if (te.th32OwnerProcessID == pid) threads++;
            } while (Thread32Next(snap, &te));
        }
        CloseHandle(snap);
    }
    PROCESS_MEMORY_COUNTERS_EX mem;
    memset(&mem, 0, sizeof mem);
    K32GetProcessMemoryInfo(GetCurrentProcess(), (PROCESS_MEMORY_COUNTERS *)&mem, sizeof mem);
    printf("process: %d threads, working set %lu KiB, private %lu KiB\n", threads,
           (unsigned long)(mem.WorkingSetSize / 1024), (unsigned long)(mem.PrivateUsage / 1024));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        printf("usage: game_client LOGIN_PORT USER OTHER_ACCOUNT_ID [close-mid-packet|no-peers]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    QueryPerformanceFrequency(&freq);
    uint16_t login_port = (uint16_t)atoi(argv[1]);
    const char *user = argv[2];
    uint32_t other = (uint32_t)strtoul(argv[3], NULL, 10);
    int close_mid_packet = argc > 4 && strcmp(argv[4], "close-mid-packet") == 0;
    int no_peers = argc > 4 && strcmp(argv[4], "no-peers") == 0;
    printf("hooks installed: %u\n", rop2p_hook_installed());

    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) fail("WSAStartup");

    /* Login. */
    SOCKET s = connect_to(inet_addr("127.0.0.1"), login_port);
    unsigned char login[55];
    memset(login, 0, sizeof login);
    put16(login, 0x0064);
    put32(login + 2, 20211103);
    strncpy((char *)login + 6, user, 23);
    strncpy((char *)login + 30, "secret", 23);
    send_all(s, login, sizeof login);
    unsigned char reply[4096];
    read_exact(s, reply, 4);
    if (u16(reply) != 0x0AC4) fail("no AC_ACCEPT_LOGIN");
    int len = u16(reply + 2);
    if (len < 64 + 160 || len > (int)sizeof reply) fail("bad AC_ACCEPT_LOGIN length");
    read_exact(s, reply + 4, len - 4);
    uint32_t aid = u32(reply + 8), id1 = u32(reply + 4), id2 = u32(reply + 12);
    uint32_t char_ip;
    memcpy(&char_ip, reply + 64, 4);
    uint16_t char_port = u16(reply + 68);
    closesocket(s);
    printf("logged in: account %u, char server port %u\n", aid, char_port);

    /* Char server. */
    s = connect_to(char_ip, char_port);
    unsigned char enter[17];
    memset(enter, 0, sizeof enter);
    put16(enter, 0x0065);
    put32(enter + 2, aid);
    put32(enter + 6, id1);
    put32(enter + 10, id2);
    send_all(s, enter, sizeof enter);
    read_exact(s, reply, 4);
    if (u32(reply) != aid) fail("the char server sent another account id");
    unsigned char pick[3] = {0x66, 0x00, 0x00};
    send_all(s, pick, sizeof pick);
    read_exact(s, reply, 156);
    if (u16(reply) != 0x0AC5) fail("no HC_NOTIFY_ZONESVR");
    uint32_t cid = u32(reply + 2);
    uint32_t map_ip;
    memcpy(&map_ip, reply + 22, 4);
    uint16_t map_port = u16(reply + 26);
    printf("character %u selected: %s on map server port %u\n", cid, reply + 6, map_port);
    closesocket(s);

    /* Map server. */
    s = connect_to(map_ip, map_port);
    unsigned char cz_enter[23];
    memset(cz_enter, 0, sizeof cz_enter);
    put16(cz_enter, 0x0436);
    put32(cz_enter + 2, aid);
    put32(cz_enter + 6, cid);
    put32(cz_enter + 10, id1);
    send_all(s, cz_enter, sizeof cz_enter);

    static unsigned char stream[1 << 16];
    int have = 0, p2p_on = 0, acted = 0, saw_walk = 0, saw_chat = 0, saw_emote = 0;
    int recvs = 0, packets = 0;
    double deadline = now_ms() + WAIT_MS;
    char line[128];
    snprintf(line, sizeof line, "%s : hello from %s", user, user);
    while (!(acted && (no_peers || (saw_walk && saw_chat && saw_emote)))) {
        if (now_ms() > deadline) {
            printf("FAIL: timed out: p2p_on %d walk %d chat %d emote %d\n", p2p_on, saw_walk,
                   saw_chat, saw_emote);
            return 1;
        }
        fd_set r;
        FD_ZERO(&r);
        FD_SET(s, &r);
        struct timeval tv = {0, 50000};
        select(0, &r, NULL, NULL, &tv);
        double t = now_ms();
        int k = recv(s, (char *)stream + have, (int)sizeof stream - have, 0);
        timed(t);
        if (k == 0) fail("the map server closed");
        if (k < 0) {
            if (WSAGetLastError() != WSAEWOULDBLOCK) fail("recv on the map server");
        } else {
            recvs++;
            have += k;
            int at = 0;
            for (;;) {
                int n = zc_len(stream + at, have - at);
                if (n < 0) {
                    printf("FAIL: unknown packet 0x%04X\n", u16(stream + at));
                    return 1;
                }
                if (n == 0 || n > have - at) break;
                unsigned char *p = stream + at;
                uint16_t id = u16(p);
                packets++;
                if (id == 0x008E && strstr((char *)p + 4, "[P2P] on")) {
                    printf("notice: %s\n", p + 4);
                    p2p_on = 1;
                }
                if ((id == 0x09FD || id == 0x0086) && u32(p + (id == 0x0086 ? 2 : 5)) == other)
                    saw_walk = 1;
                if (id == 0x008D && u32(p + 4) == other) {
                    printf("chat from %u: %s\n", other, p + 8);
                    saw_chat = 1;
                }
                if (id == 0x00C0 && u32(p + 2) == other) saw_emote = 1;
                at += n;
            }
            if (at != have) {
                printf("FAIL: a recv ended mid-packet (%d of %d bytes framed)\n", at, have);
                return 1;
            }
            have = 0;
        }
        if ((p2p_on || (no_peers && packets > 0)) && !acted) {
            acted = 1;
            unsigned char walk[5] = {0x5F, 0x03, 0, 0, 0};
            walk[2] = 150 >> 2; /* (150, 180) packed as rAthena's WBUFPOS */
            walk[3] = (unsigned char)(((150 & 3) << 6) | (180 >> 4));
            walk[4] = (unsigned char)((180 & 0x0F) << 4);
            send_all(s, walk, sizeof walk);
            unsigned char chat[256];
            int n = (int)strlen(line);
            put16(chat, 0x00F3);
            put16(chat + 2, (uint16_t)(4 + n));
            memcpy(chat + 4, line, n);
            send_all(s, chat, 4 + n);
            unsigned char emote[3] = {0xBF, 0x00, 2};
            send_all(s, emote, sizeof emote);
            unsigned char npc[7] = {0x90, 0x00, 0x11, 0x22, 0x33, 0x44, 1};
            send_all(s, npc, sizeof npc);
            char cmd[64];
            snprintf(cmd, sizeof cmd, "%s : @where", user);
            n = (int)strlen(cmd);
            put16(chat + 2, (uint16_t)(4 + n));
            memcpy(chat + 4, cmd, n);
            send_all(s, chat, 4 + n);
            printf("acted: walk, chat, emote, npc click, @where\n");
        }
    }
    if (!no_peers) printf("saw the other player's walk, chat and emote over the peer link\n");
    print_process();
    if (close_mid_packet) {
        unsigned char half[2] = {0xF3, 0x00};
        send_all(s, half, sizeof half);
    }
    closesocket(s);

    qsort(times_us, times_n, sizeof times_us[0], cmp_double);
    printf("hooked calls: %d (map recvs %d, packets %d); time per call p50 %.1f us, p99 %.1f us, "
           "max %.1f us\n",
           times_n, recvs, packets, times_us[times_n / 2], times_us[times_n * 99 / 100],
           times_us[times_n - 1]);
    printf("stand-in client done\n");
    WSACleanup();
    return 0;
}
