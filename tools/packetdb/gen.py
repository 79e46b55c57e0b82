#!/usr/bin/env python3
"""Generates ro-p2p's packet tables for every PACKETVER and client family rAthena distinguishes.

Run by hand when the rAthena pin moves (never by the build):

    python3 tools/packetdb/gen.py --rathena target/rathena-src/rathena --commit 7f080871 \
        --out core/data/gen

The C++ compiler answers everything it can: for each PACKETVER interval and family, rAthena's own
headers are preprocessed (`g++ -E -DPACKETVER=N [-DPACKETVER_RE] [-DPACKETVER_ZERO]`), identical
preprocessed results are compiled once into a probe that registers every packet the way
`packetdb_readdb` does and prints `sizeof`/`offsetof` of the structs rAthena sends. See
docs/packets.md for what this cannot derive.
"""

import argparse
import concurrent.futures
import csv
import hashlib
import os
import re
import subprocess
import sys
import tempfile

HEADERS = [
    "src/config/packets.hpp",
    "src/common/mmo.hpp",
    "src/common/packets.hpp",
    "src/map/clif_packetdb.hpp",
    "src/map/clif_shuffle.hpp",
    "src/map/clif_obfuscation.hpp",
    "src/map/packets.hpp",
    "src/map/packets_struct.hpp",
]

# rAthena's default family per date (src/config/packets.hpp): RagexeRE when
# (PACKETVER > 20151104 && PACKETVER < 20180704) || (PACKETVER >= 20200902 && PACKETVER <= 20211118).
def default_is_re(v):
    return (20151104 < v < 20180704) or (20200902 <= v <= 20211118)

# Literal ids clif.cpp writes with WFIFOW(fd,0)=0x..., in no packet_db line and no struct
# (found by grep at the pinned commit; the gates are the #if around each send site).
CLIF_RAW = [
    (0x08E2, 27, lambda v: v >= 20111010),   # clif_navigateTo
    (0x09B5, 2, lambda v: v >= 20131223),    # PACKETVER_SUPPORTS_SALES
    (0x09BD, 2, lambda v: v >= 20131223),
    (0x0AC2, -1, lambda v: v >= 20170419),   # clif_Mail_refreshinbox
]

# enum packet_headers names whose struct name does not follow `xType` -> `packet_x` (read from
# the send sites in clif.cpp: `p.packetType = <name>` in a function filling that struct).
TYPE_ALIASES = {
    "roulettercvitemackType": "packet_roulette_itemrecv_ack",
    "roulettgenerateackType": "packet_roulette_generate_ack",
    "sendLookType": "PACKET_ZC_SPRITE_CHANGE",
    "skillscale": "PACKET_ZC_SKILL_SCALE",
    "partymemberinfo": "PACKET_ZC_ADD_MEMBER_TO_GROUP",
    "partyinfo": "PACKET_ZC_GROUP_LIST",
    "guildLeave": "PACKET_ZC_ACK_LEAVE_GUILD",
    "guildExpulsion": "PACKET_ZC_ACK_BAN_GUILD",
    "buyingStoreUpdateItemType": "PACKET_ZC_UPDATE_ITEM_FROM_BUYING_STORE",
    "rodexopenwrite": "PACKET_ZC_ACK_OPEN_WRITE_MAIL",
    "rodexremoveitem": "PACKET_ZC_ACK_REMOVE_ITEM_MAIL",
}

# Literal ids clif.cpp puts into a struct it sends (`p.PacketType = 0x...`), in no enum.
LITERAL_STRUCTS = [(0x0A1A, "packet_roulette_open_ack")]

# Headers of packets the client sends: never in the server-to-client table.
CLIENT_PREFIXES = ("CZ_", "CA_", "CH_", "CS_")

# Fields the receive path writes, per struct: (struct, field).
LAYOUT_FIELDS = {
    "walk": ("packet_unit_walking", ["PacketLength", "objecttype", "AID", "GID", "moveStartTime",
                                     "MoveData", "xSize", "ySize"]),
    "idle": ("packet_idle_unit", ["PacketLength", "objecttype", "AID", "GID", "PosDir", "xSize",
                                  "ySize", "state"]),
    "spawn": ("packet_spawn_unit", ["PacketLength", "objecttype", "AID", "GID", "PosDir", "xSize",
                                    "ySize"]),
    # One character of the char server's list (the headless client reads it), from
    # common/packets.hpp.
    "char": ("ro_p2p_common_begin::CHARACTER_INFO",
             ["job", "level", "name", "CharNum", "mapName", "sex"]),
}

# System and third-party headers rAthena's packet headers include (none depends on PACKETVER):
# precompiled once, so each probe compiles only rAthena's own headers.
PCH_HEADERS = ["algorithm", "array", "bitset", "cassert", "cctype", "cinttypes", "climits",
               "cstdarg", "cstring", "ctime", "locale", "memory", "random", "string",
               "unordered_map", "utility", "vector", "cstdio", "cstddef", "cstdlib", "mysql.h",
               "ryml.hpp", "ryml_std.hpp"]

THRESHOLD = re.compile(
    r"PACKETVER(?:_MAIN_NUM|_RE_NUM|_ZERO_NUM)?\s*(>=|<=|==|>|<)\s*(\d{8})\b")

PROBE = r"""
#include <cstdio>
#include <cstddef>
#include "map/clif.hpp"
#include "map/packets.hpp"
#include "map/clif_obfuscation.hpp"
// common/packets.hpp (the char server's CHARACTER_INFO) shares map/packets.hpp's guard and
// some names: its own namespace, after a marker the generator splits the text at.
#include <functional>
#include <unordered_map>
#include "common/showmsg.hpp"
#include "common/socket.hpp"
#include "common/utilities.hpp"
#undef PACKETS_HPP
namespace ro_p2p_common_begin {
#include "common/packets.hpp"
}
static void ro_p2p_add(long cmd, long len, const char* f, const char* pos) {
  if (cmd <= 0 || cmd > MAX_PACKET_DB) return;
  std::printf("reg %ld %ld %s %s\n", cmd, len, f, pos);
}
#define packetdb_addpacket(cmd, len, func, ...) \
  ro_p2p_add((long)(cmd), (long)(int16)(len), #func, #__VA_ARGS__)
void ro_p2p_dump();
int main() {
#include "map/clif_packetdb.hpp"
#include "map/clif_shuffle.hpp"
#if defined(PACKET_OBFUSCATION)
  std::printf("keys %u %u %u\n", clif_cryptKey[0], clif_cryptKey[1], clif_cryptKey[2]);
#endif
#ifdef PACKETVER_RE
  std::printf("family re\n");
#else
  std::printf("family main\n");
#endif
  ro_p2p_dump();
  return 0;
}
"""


def thresholds(root):
    starts = set()
    for h in HEADERS:
        with open(os.path.join(root, h), encoding="utf-8", errors="replace") as f:
            for op, n in THRESHOLD.findall(f.read()):
                n = int(n)
                if op in (">=", "<"):
                    starts.add(n)
                elif op in (">", "<="):
                    starts.add(n + 1)
                else:
                    starts.update((n, n + 1))
    return sorted(starts)


def includes(root):
    r = root
    return ["-I" + os.path.join(r, "src"), "-I" + os.path.join(r, "3rdparty"),
            "-I" + os.path.join(r, "3rdparty/rapidyaml/src"),
            "-I" + os.path.join(r, "3rdparty/rapidyaml/ext/c4core/src"),
            "-I" + os.path.join(r, "3rdparty/yaml-cpp/include"),
            "-I" + os.path.join(r, "3rdparty/libconfig"),
            "-I" + os.path.join(r, "3rdparty/json/include"),
            "-I" + os.path.join(r, "3rdparty/httplib"),
            "-I/usr/include/mariadb"]


def defines(v, family):
    d = ["-DPACKETVER=%d" % v]
    if family == "re":
        d.append("-DPACKETVER_RE")
    if family == "zero":
        d.append("-DPACKETVER_ZERO")
    return d


def preprocess(root, work, v, family):
    """The preprocessed probe, or None when rAthena's headers refuse this version (#error)."""
    probe = os.path.join(work, "probe.cpp")
    r = subprocess.run(["g++", "-std=c++17", "-E", "-dD", "-w"] + defines(v, family)
                       + includes(root) + [probe], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return r.stdout


STRUCT = re.compile(r"\bstruct\s+(\w+)\s*\{")
HEADER_CONST = re.compile(r"const\s+int16\s+HEADER_(\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)")
ENUM_TYPE = re.compile(r"\b(\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)")


def struct_bodies(text):
    bodies = {}
    for m in STRUCT.finditer(text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            c = text[i]
            depth += (c == "{") - (c == "}")
            i += 1
        bodies.setdefault(m.group(1), text[m.end():i - 1])
    return bodies


def variability(body):
    """1: ends in a flexible array (variable); 2: a length field at offset 2 (variable unless
    packet_db registers a fixed length); 0: fixed."""
    fields = [f.strip() for f in body.split(";") if f.strip()]
    if fields and fields[-1].endswith("[]"):
        return 1
    if len(fields) >= 2 and re.search(
            r"\b(PacketLength|packetLength|packetSize|packetLen|PacketLen|packet_len)\b", fields[1]):
        return 2
    return 0


def dump_code(text, macros):
    text, _, common = text.partition("namespace ro_p2p_common_begin")
    bodies = struct_bodies(text)
    bodies.update({"ro_p2p_common_begin::" + k: v for k, v in struct_bodies(common).items()})
    lines = ["void ro_p2p_dump() {"]
    for name, ident in HEADER_CONST.findall(text):
        s = "PACKET_" + name
        if s in bodies and not name.startswith(CLIENT_PREFIXES):
            var = variability(bodies[s])
            lines.append('std::printf("zc %%d %%d %s %d\\n", (int)(uint16)HEADER_%s, (int)sizeof(%s));'
                         % (s, var, name, s))
    enum_m = re.search(r"enum\s+packet_headers\s*\{(.*?)\}", text, re.S)
    norm = {k.lower().replace("_", ""): k for k in bodies if k.startswith("packet_")}
    for name, _ in ENUM_TYPE.findall(enum_m.group(1) if enum_m else ""):
        s = TYPE_ALIASES.get(name)
        s = macros.get(s, s)
        if s is None and name.endswith("Type"):
            s = norm.get("packet" + name[:-4].lower().replace("_", ""))
        if s in bodies:
            var = variability(bodies[s])
            lines.append('std::printf("zc %%d %%d %s %d\\n", (int)%s, (int)sizeof(struct %s));'
                         % (s, var, name, s))
    for ident, s in LITERAL_STRUCTS:
        if s in bodies:
            lines.append('std::printf("zl %%d %%d %s %d\\n", %d, (int)sizeof(struct %s));'
                         % (s, variability(bodies[s]), ident, s))
    for kind, (s, fields) in LAYOUT_FIELDS.items():
        if s not in bodies:
            continue
        lines.append('std::printf("size %s %%d\\n", (int)sizeof(struct %s));' % (kind, s))
        for f in fields:
            if re.search(r"\b%s\b" % f, bodies[s]):
                lines.append('std::printf("off %s %s %%d\\n", (int)__builtin_offsetof(struct %s, %s));'
                             % (kind, f, s, f))
    for kind, ty in (("walk", "unit_walkingType"), ("idle", "idle_unitType"),
                     ("spawn", "spawn_unitType")):
        lines.append('std::printf("id %s %%d\\n", (int)%s);' % (kind, ty))
    for kind, s in (("emote", "PACKET_ZC_EMOTION"), ("turn", "PACKET_ZC_CHANGE_DIRECTION"),
                    ("chat", "PACKET_ZC_NOTIFY_CHAT")):
        if s in bodies:
            lines.append('std::printf("size %s %%d\\n", (int)sizeof(%s));' % (kind, s))
    lines.append("}")
    return "\n".join(lines) + "\n"


def clean(text):
    """The preprocessed text without its line markers (they keep system-header semantics when
    compiling, and would only get in the way of reading struct bodies)."""
    return "\n".join(l for l in text.splitlines() if not l.startswith("#") and l.strip())


STRUCT_ALIAS = re.compile(r"^#define (PACKET_\w+) (PACKET_\w+)\s*$", re.M)


def precompile(root, work):
    """Precompiles PCH_HEADERS into <work>/std.hpp.gch."""
    hdr = os.path.join(work, "std.hpp")
    with open(hdr, "w") as f:
        f.write("".join("#include <%s>\n" % h for h in PCH_HEADERS))
    subprocess.run(["g++", "-std=c++17", "-w"] + includes(root)
                   + ["-x", "c++-header", hdr, "-o", hdr + ".gch"], check=True)


def probe(root, work, key, text, job):
    """Compiles and runs the probe for one preprocessed result (`job`: a version and family
    that produced it) with the dump code it needs."""
    v, family = job
    d = os.path.join(work, key)
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, "p.cpp")
    with open(src, "w") as f:
        f.write(PROBE)
        f.write("\n" + dump_code(clean(text), dict(STRUCT_ALIAS.findall(text))))
    exe = os.path.join(d, "p")
    r = subprocess.run(["g++", "-std=c++17", "-w", "-include", os.path.join(work, "std.hpp")]
                       + defines(v, family) + includes(root) + [src, "-o", exe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("probe %s failed:\n%s" % (key, r.stderr[-4000:]))
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout


def parse_probe(out, v):
    regs = {}
    zc_struct = {}
    keys = (0, 0, 0)
    family = None
    layout = {}
    for line in out.splitlines():
        p = line.split()
        if p[0] == "reg":
            # The field offsets handed to the handler (packet_db[cmd].pos), 0-terminated.
            pos = []
            for x in "".join(p[4:]).split(","):
                if not x.strip().isdigit() or int(x) == 0:
                    break
                pos.append(x.strip())
            regs[int(p[1])] = (int(p[2]), p[3], " ".join(pos))
        elif p[0] == "keys":
            keys = tuple(int(x) for x in p[1:4])
        elif p[0] == "family":
            family = p[1]
        elif p[0] == "zc":
            zc_struct[int(p[1])] = (int(p[2]), int(p[4]))
        elif p[0] == "zl":
            zc_struct[int(p[1])] = (int(p[2]), int(p[4]))
        elif p[0] in ("size", "id"):
            layout["%s_%s" % (p[1], p[0])] = int(p[2])
        elif p[0] == "off":
            layout["%s_%s" % (p[1], p[2])] = int(p[3])
    cz = sorted((i, l, f, pos) for i, (l, f, pos) in regs.items() if f != "nullptr")
    zc = {}
    for i, (l, f, _) in regs.items():
        if f == "nullptr":
            zc[i] = (l, "packet_db")
    for i, (size, var) in zc_struct.items():
        if i <= 0 or i > 0xCFF:
            continue
        if i in regs and regs[i][1] != "nullptr":
            continue  # a client-to-server id
        if var == 1 or (var == 2 and (i not in zc or zc[i][0] == -1)):
            l = -1
        else:
            l = size
        if i not in zc or zc[i][0] != l:
            zc[i] = (l, "struct")
    for i, l, gate in CLIF_RAW:
        if gate(v) and i not in zc:
            zc[i] = (l, "clif_raw")
    return cz, zc, keys, family, layout


def load_categories(path):
    cats, per_id = {}, {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] == "per-id":
                for group, cat in re.findall(r"((?:0x[0-9A-Fa-f]{4}/?)+)(?:\s+\w+)?=(\w+)", row["note"]):
                    for i in group.strip("/").split("/"):
                        per_id[int(i, 16)] = cat
                cats[row["handler"]] = None
            else:
                cats[row["handler"]] = row["category"]
    return cats, per_id


def read_tables(path):
    """`table <name> [base <name>]` sections of a generated file, resolved to full row lists."""
    raw, order = {}, []
    name = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#") or not line:
                continue
            if line.startswith("table "):
                parts = line.split()
                name = parts[1]
                raw[name] = (parts[3] if len(parts) > 3 else None, [])
                order.append(name)
            else:
                raw[name][1].append(line)
    full = {}

    def resolve(n):
        if n not in full:
            base, lines = raw[n]
            rows = {} if base is None else {r.split(",", 1)[0]: r for r in resolve(base)}
            for l in lines:
                if l.startswith("-"):
                    rows.pop(l[1:], None)
                else:
                    rows[l.split(",", 1)[0]] = l
            full[n] = [rows[k] for k in sorted(rows, key=lambda i: int(i, 16))]
        return full[n]

    return {n: resolve(n) for n in order}, order


def write_compact(path, tables, order, commit):
    """Writes each table as the difference from the most similar earlier one (the previous in
    `order`, or the one before that), or whole if that is shorter: rows that are new or changed,
    then `-<id>` for rows removed."""
    def diff(base, rows):
        b = {r.split(",", 1)[0]: r for r in tables[base]}
        t = {r.split(",", 1)[0]: r for r in rows}
        out = [r for k, r in t.items() if b.get(k) != r]
        out += ["-" + k for k in b if k not in t]
        return sorted(out, key=lambda l: int(l.lstrip("-").split(",", 1)[0], 16))
    with open(path, "w") as f:
        f.write("# generated by tools/packetdb/gen.py from rAthena %s; do not edit\n" % commit)
        f.write("# each table: its rows, or `base <table>` and the rows that differ from it "
                "(`-<id>`: removed)\n")
        for i, name in enumerate(order):
            best = (None, tables[name])
            for base in order[max(0, i - 8):i]:
                d = diff(base, tables[name])
                if len(d) < len(best[1]):
                    best = (base, d)
            if best[0] is None:
                f.write("table %s\n" % name)
            else:
                f.write("table %s base %s\n" % (name, best[0]))
            f.write("".join(l + "\n" for l in best[1]))


def compact(out, commit):
    """Rewrites `cz.csv` and `zc.csv` of `out` in the compact form, tables in the order the
    index first uses them."""
    index_order = []
    with open(os.path.join(out, "index.csv")) as f:
        rows = [l.rstrip("\n").split(",") for l in f if not l.startswith("#")]
    header = rows[0]
    for kind in ("cz", "zc"):
        col = header.index(kind)
        path = os.path.join(out, kind + ".csv")
        tables, _ = read_tables(path)
        order = []
        for r in rows[1:]:
            if len(r) > col and r[col] and r[col] not in order:
                order.append(r[col])
        write_compact(path, tables, order, commit)


def write_unknown(out, unknown):
    with open(os.path.join(out, "unknown_handlers.txt"), "w") as f:
        f.write("# handlers in no row of ro_handler_categories.csv: category `other` (server-only)\n")
        for h, vs in sorted(unknown.items()):
            f.write("%s first=%d last=%d\n" % (h, min(vs), max(vs)))


def categorise(cats, per_id, pid, handler):
    """The category of client-to-server id `pid` handled by `handler`, or None when the
    categories file does not know it."""
    return per_id.get(pid) if cats.get(handler, "") is None else cats.get(handler)


def recategorize(out, commit, cats, per_id):
    """Applies the categories file to the client-to-server tables already in `out` (no
    compiler, seconds): rewrites `cz.csv` (tables renamed by their new digest), the `cz` column
    of `index.csv` and `unknown_handlers.txt`, exactly as a full run would write them."""
    tables, _ = read_tables(os.path.join(out, "cz.csv"))
    index_path = os.path.join(out, "index.csv")
    with open(index_path) as f:
        lines = [l.rstrip("\n") for l in f]
    header = next(l for l in lines if not l.startswith("#")).split(",")
    col = header.index("cz")
    used_by = {}
    for l in lines:
        r = l.split(",")
        if not l.startswith("#") and r != header and len(r) > col and r[col]:
            used_by.setdefault(r[col], []).append(int(r[0]))
    unknown, renamed, new_tables = {}, {}, {}
    for name, rows in tables.items():
        new_rows = []
        for row in rows:
            pid, length, handler, _, pos = row.split(",", 4)
            c = categorise(cats, per_id, int(pid, 16), handler)
            if c is None:
                unknown.setdefault(handler, set()).update(used_by.get(name, []))
                c = "other"
            new_rows.append(",".join([pid, length, handler, c, pos]))
        renamed[name] = digest(new_rows)
        new_tables.setdefault(renamed[name], new_rows)
    with open(index_path, "w") as f:
        for l in lines:
            r = l.split(",")
            if not l.startswith("#") and r != header and len(r) > col and r[col]:
                r[col] = renamed[r[col]]
            f.write(",".join(r) + "\n")
    with open(os.path.join(out, "cz.csv"), "w") as f:
        f.write("# generated by tools/packetdb/gen.py from rAthena %s; do not edit\n" % commit)
        for d, rows in sorted(new_tables.items()):
            f.write("table %s\n" % d)
            f.write("\n".join(rows) + "\n")
    compact(out, commit)
    write_unknown(out, unknown)
    print("%d cz tables, %d unknown handlers" % (len(new_tables), len(unknown)), file=sys.stderr)


def digest(rows):
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:12]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rathena", help="root of an rAthena source tree (not for --recategorize)")
    ap.add_argument("--commit", required=True, help="the rAthena commit the tree is at")
    ap.add_argument("--out", required=True)
    ap.add_argument("--categories", default="core/data/ro_handler_categories.csv")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--compact-only", action="store_true",
                    help="only rewrite an existing --out in the compact form")
    ap.add_argument("--recategorize", action="store_true",
                    help="only apply --categories to the tables already in --out (seconds, "
                         "no compiler; run after editing the categories file)")
    ap.add_argument("--only", default=None,
                    help="comma-separated PACKETVERs: generate only these (a quick look; the "
                         "committed data is always a full run)")
    a = ap.parse_args()
    if a.compact_only:
        compact(a.out, a.commit)
        return
    if a.recategorize:
        recategorize(a.out, a.commit, *load_categories(a.categories))
        return
    if not a.rathena:
        ap.error("--rathena is required (except with --recategorize or --compact-only)")
    root = os.path.abspath(a.rathena)
    work = a.work or tempfile.mkdtemp(prefix="ro-p2p-packetdb-")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "probe.cpp"), "w") as f:
        f.write(PROBE)
    cats, per_id = load_categories(a.categories)

    starts = thresholds(root)
    if a.only:
        starts = sorted(int(v) for v in a.only.split(","))
    jobs = []
    for v in starts:
        fams = ["default"]
        if not default_is_re(v):
            fams.append("re")
        if v >= 20171018:  # the first Zero client rAthena's headers name
            fams.append("zero")
        jobs += [(v, f) for f in fams]
    print("%d thresholds, %d (version, family) pairs" % (len(starts), len(jobs)), file=sys.stderr)

    def pre(job):
        v, fam = job
        t = preprocess(root, work, v, fam)
        if t is None:
            return job, None, None
        return job, t, hashlib.sha256(clean(t).encode()).hexdigest()[:16]

    precompile(root, work)
    groups = {}
    first_job = {}
    pre_of = {}
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for n, (job, text, h) in enumerate(ex.map(pre, jobs)):
            pre_of[job] = h
            if h is not None and h not in groups:
                groups[h] = text
                first_job[h] = job
            if n % 100 == 0:
                print("preprocessed %d/%d, %d distinct" % (n, len(jobs), len(groups)),
                      file=sys.stderr)
    print("%d distinct preprocessed results" % len(groups), file=sys.stderr)

    results = {}
    def run(h):
        out = probe(root, work, h, groups[h], first_job[h])
        groups[h] = None  # free the text
        return h, out
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for n, (h, out) in enumerate(ex.map(run, list(groups))):
            results[h] = out
            if n % 50 == 0:
                print("probed %d/%d" % (n, len(groups)), file=sys.stderr)

    os.makedirs(a.out, exist_ok=True)
    cz_tables, zc_tables, index = {}, {}, []
    unknown = {}
    for (v, fam) in jobs:
        h = pre_of[(v, fam)]
        if h is None:
            index.append((v, fam, None))
            continue
        cz, zc, keys, family, layout = parse_probe(results[h], v)
        rows = []
        for i, l, f, pos in cz:
            c = categorise(cats, per_id, i, f)
            if c is None:
                unknown.setdefault(f, set()).add(v)
                c = "other"
            rows.append("0x%04X,%d,%s,%s,%s" % (i, l, f, c, pos))
        czd = digest(rows)
        cz_tables.setdefault(czd, rows)
        zrows = ["0x%04X,%d,%s" % (i, l, s) for i, (l, s) in sorted(zc.items())]
        zcd = digest(zrows)
        zc_tables.setdefault(zcd, zrows)
        index.append((v, fam, (family, czd, zcd, keys, layout)))

    lay_keys = sorted({k for _, _, r in index if r for k in r[4]})
    with open(os.path.join(a.out, "index.csv"), "w") as f:
        f.write("# generated by tools/packetdb/gen.py from rAthena %s; do not edit\n" % a.commit)
        f.write("from,family,built_as,cz,zc,key0,key1,key2," + ",".join(lay_keys) + "\n")
        for v, fam, r in index:
            if r is None:
                f.write("%d,%s,refused,,,,,," % (v, fam) + "," * (len(lay_keys) - 1) + "\n")
                continue
            family, czd, zcd, keys, layout = r
            f.write("%d,%s,%s,%s,%s,0x%08X,0x%08X,0x%08X," % (v, fam, family, czd, zcd, *keys)
                    + ",".join(str(layout.get(k, "")) for k in lay_keys) + "\n")
    with open(os.path.join(a.out, "cz.csv"), "w") as f:
        f.write("# generated by tools/packetdb/gen.py from rAthena %s; do not edit\n" % a.commit)
        for d, rows in sorted(cz_tables.items()):
            f.write("table %s\n" % d)
            f.write("\n".join(rows) + "\n")
    with open(os.path.join(a.out, "zc.csv"), "w") as f:
        f.write("# generated by tools/packetdb/gen.py from rAthena %s; do not edit\n" % a.commit)
        for d, rows in sorted(zc_tables.items()):
            f.write("table %s\n" % d)
            f.write("\n".join(rows) + "\n")
    compact(a.out, a.commit)
    write_unknown(a.out, unknown)
    print("%d index rows, %d cz tables, %d zc tables, %d unknown handlers"
          % (len(index), len(cz_tables), len(zc_tables), len(unknown)), file=sys.stderr)


if __name__ == "__main__":
    main()
