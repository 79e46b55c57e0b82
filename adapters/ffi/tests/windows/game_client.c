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
 * MODE is a comma-separated list of flags. "close-mid-packet": it ends by sending half a packet
 * and closing the socket. "no-peers" (no other player, or the coordinator is down): it acts as
 * soon as the map server let it in and does not wait for another player. "rathena": the server
 * is a real rAthena: the login id is USER_M (rAthena registers it), the char server's list is
 * read (0x006B) and a character named USER made in slot 0 when the slot is empty (CH_MAKE_CHAR
 * 0x0A39), the map server gets CZ_NOTIFY_ACTORINIT after ZC_ACCEPT_ENTER, the client acts once
 * rAthena has put it on the map (ZC_MAPPROPERTY 0x099B, or 0x01D6), and it only
 * finishes once the server answered its walk (0x0087) and its chat (0x008E), then keeps reading
 * for 2 s to see that rAthena does not disconnect it.
 *
 * "bench=N" (scripted map server that answers each CZ_REQUEST_TIME 0x0360 with ZC_NOTIFY_TIME
 * 0x007F): after acting it sends N keep-alives, each followed by select/recv until the answer
 * is in, and prints the time per send, per recv that returned data and per recv that would
 * block (p50, p99), then the process's threads and memory.
 *
 * "reconnect": once done it closes the map connection, connects to the same map server again,
 * enters, and says "USER : back again". Whatever the mode, a ZC_NPCACK_SERVERMOVE (0x0AC7) makes
 * it close the map connection and enter the map server that packet names.
 *
 * OTHER_ACCOUNT_ID 0 means any account but its own. If `zc_lengths.txt` (lines "ID LEN", hex id,
 * -1 for variable) is in the working directory it frames the map stream with it (every id of
 * the PACKETVER); otherwise with the few ids the scripted servers send.
 *
 * Built with -DLOAD_BY_DINPUT (and -ldinput) it does not import the DLL at all: it calls
 * DirectInputCreateA the way the RO client does at start, so the proxy dinput.dll in its folder
 * (adapters/ffi/loader/dinput_proxy.c) loads ro_p2p.dll, and it then asks that DLL, found with
 * GetModuleHandle/GetProcAddress, whether the hooks are in: an unmodified executable.
 *
 * Usage: game_client LOGIN_PORT USER OTHER_ACCOUNT_ID [MODE]
 */
#include <winsock2.h>
#include <windows.h>
#include <psapi.h>
#include <tlhelp32.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LOAD_BY_DINPUT
HRESULT WINAPI DirectInputCreateA(HINSTANCE, DWORD, void **, void *);

/* What the game's DirectInput start-up does, then the hooks' answer from the loaded DLL. */
static unsigned int hooks_installed(void) {
    void *input = NULL;
    HRESULT hr = DirectInputCreateA(GetModuleHandleA(NULL), 0x0700, &input, NULL);
    printf("DirectInputCreateA: %s\n", SUCCEEDED(hr) ? "ok" : "failed");
    HMODULE p2p = GetModuleHandleA("ro_p2p.dll");
    if (!p2p) return 0;
    typedef unsigned int (*installed_fn)(void);
    installed_fn f = (installed_fn)(void *)GetProcAddress(p2p, "rop2p_hook_installed");
    return f ? f() : 0;
}
#else
unsigned int rop2p_hook_installed(void);
static unsigned int hooks_installed(void) { return rop2p_hook_installed(); }
#endif

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

/* The map server's packet lengths from zc_lengths.txt: 0 unknown, -1 variable, else fixed. */
static int zc_table[65536];
static int zc_table_loaded;

static void load_zc_lengths(void) {
    FILE *f = fopen("zc_lengths.txt", "r");
    if (!f) return;
    unsigned int id;
    int len;
    while (fscanf(f, "%x %d", &id, &len) == 2)
        if (id < 65536) zc_table[id] = len;
    fclose(f);
    zc_table_loaded = 1;
}

/* The map server's packets this client understands (PACKETVER 20211103). */
static int zc_len(const unsigned char *p, int avail) {
    if (avail < 2) return 0;
    if (zc_table_loaded) {
        int n = zc_table[u16(p)];
        if (n == 0) return -1;
        if (n > 0) return n;
        if (avail < 4) return 0;
        return u16(p + 2) >= 4 ? u16(p + 2) : -1;
    }
    switch (u16(p)) {
    case 0x007F: return 6;   /* ZC_NOTIFY_TIME */
    case 0x0283: return 6;   /* ZC_AID */
    case 0x0AC7: return 156; /* ZC_NPCACK_SERVERMOVE */
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

/* The char server's packets at 20211103: fixed length, -1 variable, 0 unknown. */
static int hc_len(uint16_t id) {
    switch (id) {
    case 0x082D: case 0x006B: case 0x020D: case 0x0840: return -1;
    case 0x09A0: return 6;   /* HC_CHARLIST_NOTIFY */
    case 0x08B9: return 12;  /* HC_SECOND_PASSWD_LOGIN */
    case 0x0B6F: return 177; /* HC_ACCEPT_MAKECHAR */
    case 0x006E: return 3;   /* HC_REFUSE_MAKECHAR */
    case 0x006C: return 3;   /* HC_REFUSE_ENTER */
    case 0x0081: return 3;   /* SC_NOTIFY_BAN */
    case 0x0AC5: return 156; /* HC_NOTIFY_ZONESVR */
    default: return 0;
    }
}

/* Reads char-server packets into buf until one with id `want`; fails on a refusal or an
 * unknown id. Returns its length. */
static int hc_wait(SOCKET s, unsigned char *buf, int cap, uint16_t want) {
    for (;;) {
        read_exact(s, buf, 2);
        uint16_t id = u16(buf);
        int n = hc_len(id);
        if (n == 0) {
            printf("FAIL: unknown char server packet 0x%04X\n", id);
            exit(1);
        }
        if (n < 0) {
            read_exact(s, buf + 2, 2);
            n = u16(buf + 2);
            if (n < 4 || n > cap) fail("bad char server packet length");
            read_exact(s, buf + 4, n - 4);
        } else {
            read_exact(s, buf + 2, n - 2);
        }
        if (id == want) return n;
        if (id == 0x006C || id == 0x006E || id == 0x0081 || id == 0x0840) {
            printf("FAIL: the char server refused: 0x%04X\n", id);
            exit(1);
        }
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

static void print_percentiles(const char *what, double *v, int n) {
    if (n == 0) {
        printf("bench: %s: no calls\n", what);
        return;
    }
    qsort(v, n, sizeof v[0], cmp_double);
    printf("bench: %s: %d calls, p50 %.1f us, p99 %.1f us, max %.1f us\n", what, n, v[n / 2],
           v[n * 99 / 100], v[n - 1]);
}

/* The keep-alive loop of "bench=N": returns after N answered keep-alives. */
static void bench(SOCKET s, int rounds) {
    static double send_us[TIMES_MAX], data_us[TIMES_MAX], block_us[TIMES_MAX];
    int sends = 0, datas = 0, blocks = 0;
    unsigned char ask[6] = {0x60, 0x03, 0, 0, 0, 0};
    unsigned char got[64];
    for (int i = 0; i < rounds && i < TIMES_MAX; i++) {
        put32(ask + 2, (uint32_t)i);
        double t = now_ms();
        if (send(s, (const char *)ask, sizeof ask, 0) != (int)sizeof ask) fail("bench send");
        send_us[sends++] = (now_ms() - t) * 1000.0;
        int have = 0;
        double deadline = now_ms() + WAIT_MS;
        while (have < 6) {
            fd_set r;
            FD_ZERO(&r);
            FD_SET(s, &r);
            struct timeval tv = {0, 50000};
            select(0, &r, NULL, NULL, &tv);
            t = now_ms();
            int k = recv(s, (char *)got + have, (int)sizeof got - have, 0);
            double us = (now_ms() - t) * 1000.0;
            if (k > 0) {
                if (datas < TIMES_MAX) data_us[datas++] = us;
                have += k;
            } else if (k == 0) {
                fail("the map server closed during the bench");
            } else if (WSAGetLastError() == WSAEWOULDBLOCK) {
                if (blocks < TIMES_MAX) block_us[blocks++] = us;
            } else {
                fail("bench recv");
            }
            if (now_ms() > deadline) fail("bench: no answer");
        }
        if (have != 6 || u16(got) != 0x007F) fail("bench: not one ZC_NOTIFY_TIME");
    }
    print_percentiles("send", send_us, sends);
    print_percentiles("recv with data", data_us, datas);
    print_percentiles("recv would block", block_us, blocks);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        printf("usage: game_client LOGIN_PORT USER OTHER_ACCOUNT_ID [MODE]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    QueryPerformanceFrequency(&freq);
    uint16_t login_port = (uint16_t)atoi(argv[1]);
    const char *user = argv[2];
    uint32_t other = (uint32_t)strtoul(argv[3], NULL, 10);
    const char *mode = argc > 4 ? argv[4] : "";
    int close_mid_packet = strstr(mode, "close-mid-packet") != NULL;
    int no_peers = strstr(mode, "no-peers") != NULL;
    int rathena = strstr(mode, "rathena") != NULL;
    const char *bench_at = strstr(mode, "bench=");
    int bench_rounds = bench_at ? atoi(bench_at + 6) : 0;
    int reconnect = strstr(mode, "reconnect") != NULL;
    load_zc_lengths();
    printf("hooks installed: %u\n", hooks_installed());

    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) fail("WSAStartup");

    /* Login. */
    SOCKET s = connect_to(inet_addr("127.0.0.1"), login_port);
    unsigned char login[55];
    memset(login, 0, sizeof login);
    put16(login, 0x0064);
    put32(login + 2, 20211103);
    char login_id[24];
    snprintf(login_id, sizeof login_id, rathena ? "%s_M" : "%s", user);
    strncpy((char *)login + 6, login_id, 23);
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
    enter[16] = rathena ? 1 : 0; /* sex: male, as the _M login id registered it */
    send_all(s, enter, sizeof enter);
    read_exact(s, reply, 4);
    if (u32(reply) != aid) fail("the char server sent another account id");
    if (rathena) {
        /* HC_ACCEPT_ENTER: 27 bytes of header, then 175 bytes per character (slot at 138). */
        int n = hc_wait(s, reply, sizeof reply, 0x006B);
        int have_slot0 = 0;
        for (int at = 27; at + 175 <= n; at += 175)
            if (reply[at + 138] == 0) have_slot0 = 1;
        if (!have_slot0) {
            unsigned char make[36];
            memset(make, 0, sizeof make);
            put16(make, 0x0A39);
            strncpy((char *)make + 2, user, 23);
            make[26] = 0;          /* slot */
            put16(make + 27, 1);   /* hair colour */
            put16(make + 29, 1);   /* hair style */
            put32(make + 31, 0);   /* job: novice */
            make[35] = 1;          /* sex */
            send_all(s, make, sizeof make);
            hc_wait(s, reply, sizeof reply, 0x0B6F);
            printf("character %s made in slot 0\n", user);
        }
    }
    unsigned char pick[3] = {0x66, 0x00, 0x00};
    send_all(s, pick, sizeof pick);
    hc_wait(s, reply, sizeof reply, 0x0AC5);
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
    cz_enter[22] = rathena ? 1 : 0;
    send_all(s, cz_enter, sizeof cz_enter);
    int moved = 0;

    static unsigned char stream[1 << 16];
    int have = 0, p2p_on = 0, acted = 0, saw_walk = 0, saw_chat = 0, saw_emote = 0;
    int recvs = 0, packets = 0;
    /* With a scripted map server there is nothing to enter and nothing answers. */
    int entered = !rathena, on_map = !rathena, walk_answered = !rathena, chat_answered = !rathena;
    double deadline = now_ms() + WAIT_MS, linger_until = 0;
    char line[128];
    snprintf(line, sizeof line, "%s : hello from %s", user, user);
    for (;;) {
        int done = acted && walk_answered && chat_answered &&
                   (no_peers || (saw_walk && saw_chat && saw_emote));
        if (done && !rathena) break;
        if (done && linger_until == 0) {
            printf("the server answered the walk and the chat\n");
            linger_until = now_ms() + 2000;
        }
        if (linger_until != 0 && now_ms() > linger_until) break;
        if (now_ms() > deadline) {
            printf("FAIL: timed out: entered %d p2p_on %d walk %d chat %d emote %d answered "
                   "walk %d chat %d\n",
                   entered, p2p_on, saw_walk, saw_chat, saw_emote, walk_answered, chat_answered);
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
#define IS_OTHER(a) ((other != 0 && (a) == other) || (other == 0 && (a) != aid))
                if ((id == 0x09FD || id == 0x0086) && IS_OTHER(u32(p + (id == 0x0086 ? 2 : 5))))
                    saw_walk = 1;
                if (id == 0x008D && IS_OTHER(u32(p + 4))) {
                    if (!saw_chat) printf("chat from %u: %s\n", u32(p + 4), p + 8);
                    saw_chat = 1;
                }
                if (id == 0x00C0 && IS_OTHER(u32(p + 2))) saw_emote = 1;
                if (id == 0x02EB && !entered) {
                    entered = 1;
                    unsigned char actorinit[2] = {0x7D, 0x00};
                    send_all(s, actorinit, sizeof actorinit);
                    printf("entered the map\n");
                }
                if (id == 0x0AC7) {
                    memcpy(&map_ip, p + 22, 4);
                    map_port = u16(p + 26);
                    printf("moved to %.16s on map server port %u\n", (char *)p + 2, map_port);
                    closesocket(s);
                    s = connect_to(map_ip, map_port);
                    send_all(s, cz_enter, sizeof cz_enter);
                    moved = 1;
                    packets = 0; /* act on the new server once it spoke */
                    break;
                }
                /* rAthena drops what a client sends until it has put the character on the map,
                 * which it starts by sending the map property. */
                if (id == 0x099B || id == 0x01D6) on_map = 1;
                if (acted && id == 0x0087) walk_answered = 1;
                if (acted && id == 0x008E && strstr((char *)p + 4, "hello from")) chat_answered = 1;
                at += n;
            }
            if (moved) {
                moved = 0; /* what the old server sent after the move is gone with it */
                have = 0;
                continue;
            }
            if (at != have) {
                printf("FAIL: a recv ended mid-packet (%d of %d bytes framed)\n", at, have);
                return 1;
            }
            have = 0;
        }
        if (entered && on_map && (p2p_on || (no_peers && packets > 0)) && !acted) {
            acted = 1;
            /* Scripted: (150, 180); rAthena: (159, 188), a walkable cell near the start. */
            int wx = rathena ? 159 : 150, wy = rathena ? 188 : 180;
            unsigned char walk[5] = {0x5F, 0x03, 0, 0, 0};
            walk[2] = (unsigned char)(wx >> 2); /* packed as rAthena's WBUFPOS */
            walk[3] = (unsigned char)(((wx & 3) << 6) | (wy >> 4));
            walk[4] = (unsigned char)((wy & 0x0F) << 4);
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
    /* With scripted servers only the peer link can have carried them; a real rAthena sends
     * them too (both players are on its map server). */
    if (!no_peers)
        printf("saw the other player's walk, chat and emote %s\n",
               rathena ? "(from the server and the peer link)" : "over the peer link");
    if (bench_rounds > 0) bench(s, bench_rounds);
    if (reconnect) {
        closesocket(s);
        s = connect_to(map_ip, map_port);
        send_all(s, cz_enter, sizeof cz_enter);
        /* Back in once the map server spoke again (a whole packet, through the hook). */
        int k = 0;
        double until = now_ms() + WAIT_MS;
        while (k <= 0) {
            if (now_ms() > until) fail("no answer after the reconnect");
            fd_set r;
            FD_ZERO(&r);
            FD_SET(s, &r);
            struct timeval tv = {0, 50000};
            select(0, &r, NULL, NULL, &tv);
            k = recv(s, (char *)stream, (int)sizeof stream, 0);
            if (k == 0) fail("the map server closed after the reconnect");
            if (k < 0 && WSAGetLastError() != WSAEWOULDBLOCK) fail("recv after the reconnect");
        }
        int at = 0;
        while (at < k && zc_len(stream + at, k - at) > 0) at += zc_len(stream + at, k - at);
        if (at != k) fail("the first recv after the reconnect ended mid-packet");
        unsigned char back[128];
        snprintf(line, sizeof line, "%s : back again", user);
        int n = (int)strlen(line);
        put16(back, 0x00F3);
        put16(back + 2, (uint16_t)(4 + n));
        memcpy(back + 4, line, n);
        send_all(s, back, 4 + n);
        printf("reconnected to the map server and chatted\n");
    }
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
