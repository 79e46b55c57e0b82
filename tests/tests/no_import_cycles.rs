//! No import circles: within each listed directory, the modules' references to each other form
//! an acyclic graph, so the code can be read (and changed) from the bottom layer up.
//!
//! Each `.rs` file is a node (inline `mod name { .. }` blocks belong to their file). An edge
//! goes from a file to the module another file defines whenever the first names it by a path
//! that starts with `crate::`, `super::` or `self::`: in `use` items, `use` groups
//! (`use crate::{a, b::{c, d}}`) and paths in code, macro bodies included; comments and string
//! literals do not count (the file is lexed with `proc_macro2`). A path resolves to the longest
//! module prefix it names (`crate::record::What` is the module `record`). Paths relative to the
//! current module (`hub::Event` inside `server/mod.rs`) are not followed, nor is any path from a
//! module to one of its own descendants (`self::hub::Event` or `crate::server::hub::Event` in
//! `server/mod.rs`): they are how a parent declares, re-exports and reaches its own children. A crate's `main.rs` beside its `lib.rs` is another
//! crate and is left out. Test code is not a layer: an item under `#[cfg(test)]` (an inline
//! `mod tests { .. }`, or a `mod tests;` declaration and the file it names) may use any module,
//! as a test of one module may use the fuzz entry points that sit above it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// The checked directories: (a crate's source root, where `lib.rs` is; the directory under it
/// whose files must not form a circle, `""` for the whole crate), from the workspace root.
const CHECKED: &[(&str, &str)] = &[
    ("core/src", ""),
    ("sim/src", ""),
    ("adapters/tokio/src", ""),
    ("adapters/tokio/src", "server"),
    ("adapters/tokio/src", "cluster"),
    ("adapters/tokio/src", "client"),
    ("adapters/ffi/src", ""),
    ("adapters/ffi/src", "dll"),
    ("adapters/ffi/src", "hook"),
    ("adapters/proxy/src", ""),
    ("adapters/webrtc/src", ""),
    ("tools/rathena/src", ""),
];

/// A module's path from the crate root (`[]` is the root, `["server", "hub"]` is
/// `server::hub`).
type ModPath = Vec<String>;

/// Why a directory could not be checked.
#[derive(Debug)]
enum CheckError {
    /// A file or directory could not be read.
    Read(PathBuf, std::io::Error),
    /// A file is not valid Rust tokens.
    Lex(PathBuf, String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Read(path, e) => write!(f, "{}: cannot read: {e}", path.display()),
            CheckError::Lex(path, e) => write!(f, "{}: cannot lex: {e}", path.display()),
        }
    }
}

/// One circle: the modules in order (the first one again at the end is implied), with one
/// path that makes each edge.
#[derive(Debug, PartialEq, Eq)]
struct Cycle {
    /// The modules, `::`-joined (`""` for the crate root), starting at the smallest.
    modules: Vec<String>,
    /// For each edge (module `i` to module `i + 1`, the last one back to the first): the
    /// first path that makes it, as written.
    because: Vec<String>,
    /// Every module on some circle with these (the strongly connected part), sorted.
    knot: Vec<String>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |m: &String| if m.is_empty() { "(crate root)".to_owned() } else { m.clone() };
        let mut chain: Vec<String> = self.modules.iter().map(name).collect();
        chain.push(name(&self.modules[0]));
        writeln!(f, "import circle: {}", chain.join(" -> "))?;
        if self.knot.len() > self.modules.len() {
            let knot: Vec<String> = self.knot.iter().map(name).collect();
            writeln!(f, "    (one of the circles among: {})", knot.join(", "))?;
        }
        for (i, why) in self.because.iter().enumerate() {
            writeln!(f, "    {} -> {}: {why}", chain[i], chain[i + 1])?;
        }
        Ok(())
    }
}

/// The module path of a source file from its path under the crate's source root, or `None` for
/// a file that is not part of the library (`main.rs` beside `lib.rs`, `bin/`).
fn module_of(rel: &Path, has_lib: bool) -> Option<ModPath> {
    let mut parts: Vec<String> =
        rel.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    match stem {
        "lib" if parts.is_empty() => {}
        "main" if parts.is_empty() => {
            if has_lib {
                return None;
            }
        }
        "mod" => {}
        _ => parts.push(stem.to_owned()),
    }
    Some(parts)
}

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CheckError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CheckError::Read(dir.to_owned(), e))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| CheckError::Read(dir.to_owned(), e))?.path());
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks the files under `src_root/sub_dir` (`sub_dir` may be `""`): the circles among them,
/// none if the graph is acyclic.
fn import_cycles(src_root: &Path, sub_dir: &str) -> Result<Vec<Cycle>, CheckError> {
    let mut files = Vec::new();
    rust_files(&src_root.join(sub_dir), &mut files)?;
    let mut sources = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| CheckError::Read(path.clone(), e))?;
        let rel = path.strip_prefix(src_root).unwrap_or(&path).to_owned();
        sources.push((rel, text));
    }
    let has_lib = src_root.join("lib.rs").is_file();
    cycles_in(&sources, sub_dir, has_lib)
}

/// The circles among `sources`: (path under the crate's source root, text).
/// The circles among `sources` (path under the crate's source root, text), all of them under
/// `sub_dir` (`""` for the whole crate). The graph's nodes are `sub_dir`'s own module and its
/// direct children: a file deeper down counts as the child it is under (`packet/stream.rs` is
/// `packet` when the whole crate is checked), so a circle through a module's subtree is found.
fn cycles_in(
    sources: &[(PathBuf, String)],
    sub_dir: &str,
    has_lib: bool,
) -> Result<Vec<Cycle>, CheckError> {
    let base: ModPath =
        Path::new(sub_dir).iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let node_of = |m: &ModPath| m[..m.len().min(base.len() + 1)].to_vec();
    let mut files: Vec<(ModPath, &PathBuf, &String)> = Vec::new();
    for (rel, text) in sources {
        if let Some(module) = module_of(rel, has_lib) {
            files.push((module, rel, text));
        }
    }
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut test_mods: Vec<ModPath> = Vec::new();
    let mut paths_of = Vec::new();
    for (module, rel, text) in &files {
        let tokens = TokenStream::from_str(text)
            .map_err(|e| CheckError::Lex((*rel).clone(), e.to_string()))?;
        let mut paths = Vec::new();
        collect_paths(tokens, module, &mut paths, &mut test_mods);
        paths_of.push((module, rel, paths));
    }
    let is_test = |m: &ModPath| test_mods.iter().any(|t| m.starts_with(t));
    // edges[from][to] = the first path that makes the edge, with its file.
    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
    for (module, rel, paths) in paths_of {
        if is_test(module) {
            continue;
        }
        let from = node_of(module);
        let out = edges.entry(from.clone()).or_default();
        for (path, written) in paths {
            let Some(target) = resolve(&path, &modules) else { continue };
            if target.len() > module.len() && target.starts_with(module) {
                continue; // a parent reaching its own children (declaring, re-exporting)
            }
            let to = node_of(&target);
            if to != from {
                out.entry(to).or_insert_with(|| format!("{}: {written}", rel.display()));
            }
        }
    }
    Ok(circles(&edges))
}

/// The longest prefix of `path` that is one of `modules`.
fn resolve(path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
}

/// Whether `tokens[i..]` starts with `::`.
fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// Appends every `crate::`/`super::`/`self::` path in `stream` (code inside module `here`) to
/// `out`, as (absolute path, as written).
fn collect_paths(
    stream: TokenStream,
    here: &[String],
    out: &mut Vec<(ModPath, String)>,
    test_mods: &mut Vec<ModPath>,
) {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(&tokens, i) {
            i = skip_test_item(&tokens, i + 2, here, test_mods);
            continue;
        }
        match &tokens[i] {
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                    && body.delimiter() == Delimiter::Brace
                {
                    let mut inner = here.to_vec();
                    inner.push(name.to_string());
                    collect_paths(body.stream(), &inner, out, test_mods);
                    i += 3;
                    continue;
                }
                i += 1;
            }
            TokenTree::Ident(id)
                if (id == "crate" || id == "super" || id == "self")
                    && is_path_sep(&tokens, i + 1) =>
            {
                let mut base: ModPath = match id.to_string().as_str() {
                    "crate" => Vec::new(),
                    "super" => here[..here.len().saturating_sub(1)].to_vec(),
                    _ => here.to_vec(),
                };
                let mut written = id.to_string();
                i += 1;
                // `super::super::..`
                while is_path_sep(&tokens, i)
                    && matches!(tokens.get(i + 2), Some(TokenTree::Ident(s)) if s == "super")
                {
                    base.pop();
                    written.push_str("::super");
                    i += 3;
                }
                i = path_tail(&tokens, i, base, written, 0, out);
            }
            TokenTree::Group(g) => {
                collect_paths(g.stream(), here, out, test_mods);
                i += 1;
            }
            _ => i += 1,
        }
    }
}

/// Whether `tokens[i..]` starts with the attribute `#[cfg(test)]`.
fn is_cfg_test(tokens: &[TokenTree], i: usize) -> bool {
    let (Some(TokenTree::Punct(hash)), Some(TokenTree::Group(attr))) =
        (tokens.get(i), tokens.get(i + 1))
    else {
        return false;
    };
    hash.as_char() == '#'
        && attr.delimiter() == Delimiter::Bracket
        && attr.stream().to_string().replace(' ', "") == "cfg(test)"
}

/// Skips the item after a `#[cfg(test)]` (from `tokens[i]`, its other attributes included) and
/// returns the index after it: up to its `;` or its braced body. A `mod name;` adds the module
/// it declares to `test_mods`.
fn skip_test_item(
    tokens: &[TokenTree],
    mut i: usize,
    here: &[String],
    test_mods: &mut Vec<ModPath>,
) -> usize {
    if let (Some(TokenTree::Ident(kw)), Some(TokenTree::Ident(name)), Some(TokenTree::Punct(semi))) =
        (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
        && kw == "mod"
        && semi.as_char() == ';'
    {
        let mut child = here.to_vec();
        child.push(name.to_string());
        test_mods.push(child);
        return i + 3;
    }
    while let Some(t) = tokens.get(i) {
        i += 1;
        match t {
            TokenTree::Punct(p) if p.as_char() == ';' => break,
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => break,
            _ => {}
        }
    }
    i
}

/// Reads the rest of a path from `tokens[i..]` (`::a::b`, `::{a, b::c}`, or nothing) onto
/// `path`, pushes the paths it names to `out` (as written, with `close` use groups still open),
/// and returns the index after it.
fn path_tail(
    tokens: &[TokenTree],
    mut i: usize,
    mut path: ModPath,
    mut written: String,
    close: usize,
    out: &mut Vec<(ModPath, String)>,
) -> usize {
    while is_path_sep(tokens, i) {
        match tokens.get(i + 2) {
            Some(TokenTree::Ident(seg)) if seg != "self" => {
                path.push(seg.to_string());
                written.push_str(&format!("::{seg}"));
                i += 3;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                let items: Vec<TokenTree> = g.stream().into_iter().collect();
                for item in items.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                {
                    // an item is `name`, `name::..`, `name as alias`, `self` or `*`
                    match item.first() {
                        Some(TokenTree::Ident(seg)) if seg != "self" => {
                            let mut p = path.clone();
                            p.push(seg.to_string());
                            let w = format!("{written}::{{{seg}");
                            path_tail(item, 1, p, w, close + 1, out);
                        }
                        Some(first) => {
                            let w = format!("{written}::{{{first}}}{}", "}".repeat(close));
                            out.push((path.clone(), w));
                        }
                        None => {}
                    }
                }
                return i + 3;
            }
            _ => break,
        }
    }
    out.push((path, format!("{written}{}", "}".repeat(close))));
    i
}

/// One circle per strongly connected part of the graph with more than one module: the
/// shortest one through its smallest module.
fn circles(edges: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Vec<Cycle> {
    let next = |m: &ModPath| edges.get(m).into_iter().flat_map(|t| t.keys()).cloned();
    let reach = |from: &ModPath| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<ModPath> = next(from).collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m.clone()) {
                todo.extend(next(&m));
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut done: BTreeSet<ModPath> = BTreeSet::new();
    let mut found = Vec::new();
    for (m, from_m) in &reaches {
        if done.contains(*m) || !from_m.contains(*m) {
            continue;
        }
        // the circle's part: everything m reaches that reaches m back
        let knot: Vec<ModPath> = from_m
            .iter()
            .filter(|other| reaches.get(*other).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        done.extend(knot.iter().cloned());
        let mut circle = shortest_circle(m, edges);
        circle.knot = knot.iter().map(|k| k.join("::")).collect();
        found.push(circle);
    }
    found
}

/// The shortest circle from `start` back to it (breadth first), which exists.
fn shortest_circle(start: &ModPath, edges: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Cycle {
    let mut came_from: BTreeMap<ModPath, ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([start.clone()]);
    let mut last = None;
    'search: while let Some(m) = queue.pop_front() {
        for to in edges.get(&m).into_iter().flat_map(|t| t.keys()) {
            if to == start {
                last = Some(m);
                break 'search;
            }
            if !came_from.contains_key(to) {
                came_from.insert(to.clone(), m.clone());
                queue.push_back(to.clone());
            }
        }
    }
    let mut chain = vec![last.unwrap_or_else(|| start.clone())];
    while chain[0] != *start {
        let prev = came_from[&chain[0]].clone();
        chain.insert(0, prev);
    }
    let because =
        (0..chain.len()).map(|i| edges[&chain[i]][&chain[(i + 1) % chain.len()]].clone()).collect();
    Cycle { modules: chain.iter().map(|m| m.join("::")).collect(), because, knot: Vec::new() }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(PathBuf::new, Path::to_owned)
}

#[test]
fn listed_directories_have_no_import_circles() {
    let root = workspace_root();
    let mut report = String::new();
    for (src_root, sub_dir) in CHECKED {
        let label = format!("{src_root}/{sub_dir}").trim_end_matches('/').to_owned();
        match import_cycles(&root.join(src_root), sub_dir) {
            Ok(cycles) => {
                for cycle in cycles {
                    report.push_str(&format!("{label}: {cycle}"));
                }
            }
            Err(e) => report.push_str(&format!("{label}: {e}\n")),
        }
    }
    assert!(report.is_empty(), "modules that import each other (give them layers):\n{report}");
}

/// The test's own input: source files by path.
fn sources(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    files.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_owned())).collect()
}

#[test]
fn the_checker_names_a_circle_made_through_use_groups_super_and_code_paths() {
    let files = [
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d; pub mod e;"),
        // a -> b through a nested use group
        ("a.rs", "use crate::{d, b::{self, Thing as Other}};"),
        // b -> c through `super::` in code, inside a macro
        ("b.rs", "pub fn f() { println!(\"{}\", super::c::g()); }"),
        // c -> a through a path in code; the comment and the string name d and do not count
        (
            "c.rs",
            "// crate::d::x\npub fn g() -> &'static str { let _ = crate::a::A; \"crate::d\" }",
        ),
        // d uses only itself (`super` in its inline module): a -> d is no circle
        ("d.rs", "pub fn h() {}\nmod tests { use super::*; }"),
        // e -> b: e points into the circle but is not on it
        ("e.rs", "pub fn h() { crate::b::f() }"),
        ("main.rs", "use crate::a;"),
    ];
    let found = cycles_in(&sources(&files), "", true).expect("valid Rust tokens");
    assert_eq!(
        found,
        vec![Cycle {
            modules: vec!["a".into(), "b".into(), "c".into()],
            because: vec![
                "a.rs: crate::{b::{self}}".into(),
                "b.rs: super::c::g".into(),
                "c.rs: crate::a::A".into(),
            ],
            knot: vec!["a".into(), "b".into(), "c".into()],
        }]
    );
    assert_eq!(found[0].to_string().lines().next(), Some("import circle: a -> b -> c -> a"),);
}

#[test]
fn the_checker_follows_super_and_self_in_a_sub_directory_and_accepts_layers() {
    // server/hub.rs -> server/cluster_hub.rs -> server/hub.rs, as `super::` paths
    let circle = [
        ("server/mod.rs", "mod hub; mod cluster_hub; pub use hub::Hub;"),
        ("server/hub.rs", "pub struct Hub(pub super::cluster_hub::Health);"),
        ("server/cluster_hub.rs", "use super::hub::{self, Hub}; pub struct Health;"),
        (
            "server/rest.rs",
            "use self::inner::X; mod inner { pub use super::super::hub::Hub as X; }",
        ),
    ];
    let found = cycles_in(&sources(&circle), "server", true).expect("valid Rust tokens");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].modules, vec!["server::cluster_hub", "server::hub"]);
    // the layered version: the shared type lives below both
    let layered = [
        ("server/mod.rs", "mod health; mod hub; mod cluster_hub;"),
        ("server/health.rs", "pub struct Health;"),
        ("server/hub.rs", "pub struct Hub(pub super::health::Health);"),
        ("server/cluster_hub.rs", "use super::{health::Health, hub::{self, Hub}};"),
    ];
    assert_eq!(cycles_in(&sources(&layered), "server", true).expect("valid Rust tokens"), vec![]);
}

#[test]
fn the_checker_reports_a_file_it_cannot_lex() {
    let files = [("lib.rs", "fn f() { (]")];
    assert!(matches!(cycles_in(&sources(&files), "", true), Err(CheckError::Lex(..))));
}

#[test]
fn the_checker_counts_a_file_as_the_child_module_it_is_under() {
    // packet/stream.rs -> route and route -> packet: a circle between `packet` and `route`
    // for the whole crate, none inside `packet`
    let files = [
        ("lib.rs", "pub mod packet; pub mod route;"),
        ("packet/mod.rs", "mod stream; pub use stream::Stream; pub struct Category;"),
        ("packet/stream.rs", "use crate::route::Policy; pub struct Stream;"),
        ("route/mod.rs", "use crate::packet::Category; pub struct Policy;"),
    ];
    let found = cycles_in(&sources(&files), "", true).expect("valid Rust tokens");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].modules, vec!["packet", "route"]);
    assert_eq!(
        found[0].because,
        vec!["packet/stream.rs: crate::route::Policy", "route/mod.rs: crate::packet::Category"]
    );
    let packet: Vec<(&str, &str)> =
        files.iter().copied().filter(|(p, _)| p.starts_with("packet/")).collect();
    assert_eq!(cycles_in(&sources(&packet), "packet", true).expect("valid Rust tokens"), vec![]);
}

#[test]
fn test_modules_may_use_any_layer_and_other_code_may_not() {
    // `wire` is below `fuzz`; wire's tests calling the fuzz entry point are not an edge
    let tested = [
        ("lib.rs", "pub mod fuzz; pub mod wire;"),
        ("fuzz.rs", "pub fn wire_decode(b: &[u8]) { crate::wire::decode(b); }"),
        (
            "wire/mod.rs",
            "pub fn decode(_: &[u8]) {}\n#[cfg(test)]\nmod tests;\n\
             #[cfg(test)] #[allow(dead_code)] fn helper() { crate::fuzz::wire_decode(&[]); }\n\
             #[cfg(test)]\nmod inline { use crate::fuzz; }",
        ),
        ("wire/tests.rs", "#[test] fn f() { crate::fuzz::wire_decode(b\"x\"); }"),
    ];
    assert_eq!(cycles_in(&sources(&tested), "", true).expect("valid Rust tokens"), vec![]);
    // the same path outside test code is a circle, also after a `#[cfg(test)]` item
    let production = [
        ("lib.rs", "pub mod fuzz; pub mod wire;"),
        ("fuzz.rs", "pub fn wire_decode(b: &[u8]) { crate::wire::decode(b); }"),
        (
            "wire/mod.rs",
            "#[cfg(test)]\nmod tests;\npub fn decode(_: &[u8]) {}\n\
             pub fn again() { crate::fuzz::wire_decode(&[]); }",
        ),
        ("wire/tests.rs", ""),
    ];
    let found = cycles_in(&sources(&production), "", true).expect("valid Rust tokens");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].modules, vec!["fuzz", "wire"]);
}
