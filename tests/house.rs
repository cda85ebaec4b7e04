//! The house: the crate's modules stand in the layers `src/lib.rs` lists,
//! no module imports one that imports it back, and no file or function is
//! longer than a reader can hold.
//!
//! Read from the sources under `src/` (not `src/bin/`) with `syn`: every
//! path that starts with `crate::` or `super::`, in `use` items, types,
//! function bodies and macro arguments (`crate::trace::TraceEvent::miss`
//! inside a `format!` counts), resolved through the `pub use` re-exports
//! (`crate::Result` is `error`'s) to the module it names. Test code counts
//! too: a unit test that imports upward ties the layers as surely.
//!
//! The rules:
//!
//! - A top-level module imports only from its own layer and the layers
//!   below it ([`LAYERS`], which mirrors `src/lib.rs`'s list).
//! - No cycle between top-level modules, nor between the children of any
//!   folder (`index/`, `sim/`, …) or file: a child may import its own
//!   folder's `mod.rs`, but no two siblings may import each other, even
//!   through others.
//! - No file over [`MAX_FILE_LINES`] lines, its `#[cfg(test)]` modules not
//!   counted; no function over [`MAX_FN_LINES`] lines (signature to closing
//!   brace; test code not counted). Today's offenders are listed in
//!   [`LONG_FILES`] and [`LONG_FNS`]: a ratchet, the lists only shrink.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::OnceLock;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};

/// Each top-level module and its layer, as `src/lib.rs`'s doc lists them:
/// a module imports only from its own layer and those below, never in a
/// cycle. Change it with `src/lib.rs`'s list, never without.
const LAYERS: &[(&str, u32)] = &[
    // 1. Leaves.
    ("error", 1),
    ("gomod", 1),
    ("layout", 1),
    ("limits", 1),
    ("model", 1),
    ("report", 1),
    ("threads", 1),
    ("trace", 1),
    // 2. The cache directory, the index, the pure planners, the remote tier.
    ("cachedir", 2),
    ("index", 2),
    ("policy", 2),
    ("remote", 2),
    ("stats", 2),
    ("synth_cache", 2),
    // 3.
    ("scan", 3),
    ("sim", 3),
    // 4.
    ("execute", 4),
    ("wrapper", 4),
    // 5.
    ("enforce", 5),
    // 6.
    ("ci", 6),
    ("prog", 6),
    // 7. The command line.
    ("cli", 7),
];

/// The most lines a file in `src/` holds, its `#[cfg(test)]` modules not
/// counted.
const MAX_FILE_LINES: usize = 1200;

/// The most lines a function holds, from its signature to its closing
/// brace.
const MAX_FN_LINES: usize = 120;

/// Files over [`MAX_FILE_LINES`] today, with their length when listed.
/// Only ever remove an entry (or lower its number): a file listed here
/// may not grow past its number, and one that no longer offends must be
/// taken off.
const LONG_FILES: &[(&str, usize)] = &[];

/// Functions over [`MAX_FN_LINES`] today (file, `Type::function` or
/// `function`, length when listed). The same ratchet as [`LONG_FILES`].
const LONG_FNS: &[(&str, &str, usize)] = &[];

/// A module's path from the crate root (`["index", "write"]`).
type ModPath = Vec<String>;

/// One path in the source that starts with `crate::` or `super::` (or a
/// `use` of a child module by its bare name).
#[derive(Debug)]
struct Ref {
    /// The module the path is written in (inline modules included).
    from: ModPath,
    /// Its segments as written.
    segs: Vec<String>,
    /// A `use` path that starts with neither `crate`, `super` nor `self`:
    /// a child module of `from`, or another crate.
    bare: bool,
    /// Inside `#[cfg(test)]` code.
    test: bool,
    line: usize,
}

#[derive(Debug)]
struct Func {
    name: String,
    start: usize,
    end: usize,
}

impl Func {
    fn lines(&self) -> usize {
        self.end + 1 - self.start
    }
}

/// One file under `src/`.
#[derive(Debug)]
struct File {
    /// `src/index/write.rs`.
    path: String,
    module: ModPath,
    lines: usize,
    /// Lines inside `#[cfg(test)]` modules.
    test_lines: usize,
    refs: Vec<Ref>,
    /// Functions outside test code.
    fns: Vec<Func>,
}

/// What the sources hold, read once for all the tests here.
struct House {
    files: Vec<File>,
    /// Every module: files and inline `mod x { … }`.
    modules: BTreeSet<ModPath>,
    /// Modules declared `#[cfg(test)] mod x;` in a file of their own.
    test_modules: BTreeSet<ModPath>,
    /// `pub use` re-exports: (module, name) → (segments, bare).
    reexports: BTreeMap<(ModPath, String), (Vec<String>, bool)>,
}

/// An import from one child of `folder` to another.
#[derive(Debug)]
struct Edge {
    folder: ModPath,
    from: String,
    to: String,
    /// Where: `src/index/write.rs:20 crate::sim::trace::TraceId`.
    at: String,
}

fn house() -> &'static House {
    static HOUSE: OnceLock<House> = OnceLock::new();
    HOUSE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        walk(&root.join("src"), &mut paths);
        paths.sort();
        let mut house = House {
            files: Vec::new(),
            modules: BTreeSet::new(),
            test_modules: BTreeSet::new(),
            reexports: BTreeMap::new(),
        };
        for p in paths {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let module = module_of(&rel);
            let ast =
                syn::parse_file(&text).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"));
            let mut v = Reader {
                house: &mut house,
                module: module.clone(),
                test: 0,
                impl_ty: Vec::new(),
                fn_names: Vec::new(),
                refs: Vec::new(),
                fns: Vec::new(),
                test_lines: 0,
            };
            v.visit_file(&ast);
            let (refs, fns, test_lines) = (v.refs, v.fns, v.test_lines);
            house.modules.insert(module.clone());
            house.files.push(File {
                path: rel,
                module,
                lines: text.lines().count(),
                test_lines,
                refs,
                fns,
            });
        }
        // A file that is a test module of its own: all of it is test code.
        let test_modules = house.test_modules.clone();
        for f in &mut house.files {
            if test_modules.iter().any(|t| f.module.starts_with(t)) {
                f.test_lines = f.lines;
                f.fns.clear();
                for r in &mut f.refs {
                    r.test = true;
                }
            }
        }
        house
    })
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "bin") && p.parent() == Some(dir) {
                continue;
            }
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/index/write.rs` → `["index", "write"]`; `src/sim/mod.rs` →
/// `["sim"]`; `src/lib.rs` → `[]`.
fn module_of(rel: &str) -> ModPath {
    let inner = rel
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let mut m: ModPath = inner.split('/').map(str::to_owned).collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib")) {
        m.pop();
    }
    m
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "test")
            })
    })
}

/// Walks one file's syntax tree.
struct Reader<'h> {
    house: &'h mut House,
    /// The module being read (the file's, then inline modules').
    module: ModPath,
    /// How deep inside `#[cfg(test)]` modules.
    test: usize,
    impl_ty: Vec<String>,
    fn_names: Vec<String>,
    refs: Vec<Ref>,
    fns: Vec<Func>,
    test_lines: usize,
}

impl Reader<'_> {
    fn note(&mut self, segs: Vec<String>, bare: bool, line: usize) {
        let first = segs.first().map(String::as_str);
        if !bare && !matches!(first, Some("crate" | "super")) {
            return;
        }
        self.refs.push(Ref {
            from: self.module.clone(),
            segs,
            bare,
            test: self.test > 0,
            line,
        });
    }

    fn func(&mut self, ident: &syn::Ident, start: usize, end: usize) {
        if self.test > 0 {
            return;
        }
        let mut name: Vec<String> = self.impl_ty.last().cloned().into_iter().collect();
        name.extend(self.fn_names.iter().cloned());
        name.push(ident.to_string());
        self.fns.push(Func {
            name: name.join("::"),
            start,
            end,
        });
    }

    fn start_line(vis: &syn::Visibility, sig: &syn::Signature) -> usize {
        match vis {
            syn::Visibility::Inherited => sig.span().start().line,
            v => v.span().start().line,
        }
    }

    /// Paths inside a macro's tokens (`format!("{}", crate::x::y())`).
    fn tokens(&mut self, ts: TokenStream) {
        let tts: Vec<TokenTree> = ts.into_iter().collect();
        let colons = |i: usize| {
            matches!((tts.get(i), tts.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut i = 0;
        while i < tts.len() {
            match &tts[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "super" => {
                    let line = id.span().start().line;
                    let mut segs = vec![id.to_string()];
                    while colons(i + 1) {
                        let Some(TokenTree::Ident(next)) = tts.get(i + 3) else {
                            break;
                        };
                        segs.push(next.to_string());
                        i += 3;
                    }
                    self.note(segs, false, line);
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// The paths a `use` tree names, each with the line of its last name.
    fn use_tree(
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, usize, Option<String>)>,
    ) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                Self::use_tree(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut segs = prefix.clone();
                if n.ident != "self" {
                    segs.push(n.ident.to_string());
                }
                let alias = segs.last().cloned();
                out.push((segs, n.ident.span().start().line, alias));
            }
            syn::UseTree::Rename(r) => {
                let mut segs = prefix.clone();
                if r.ident != "self" {
                    segs.push(r.ident.to_string());
                }
                out.push((
                    segs,
                    r.ident.span().start().line,
                    Some(r.rename.to_string()),
                ));
            }
            syn::UseTree::Glob(g) => {
                out.push((prefix.clone(), g.star_token.span.start().line, None));
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    Self::use_tree(t, prefix, out);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Reader<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segs = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.note(segs, false, p.span().start().line);
        }
        visit::visit_path(self, p);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut out = Vec::new();
        Self::use_tree(&u.tree, &mut Vec::new(), &mut out);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for (segs, line, alias) in out {
            let bare = !matches!(
                segs.first().map(String::as_str),
                Some("crate" | "super" | "self")
            );
            if segs.first().is_some_and(|s| s == "self") || segs.is_empty() {
                continue;
            }
            if public && let Some(alias) = alias {
                self.house
                    .reexports
                    .insert((self.module.clone(), alias), (segs.clone(), bare));
            }
            self.note(segs, bare, line);
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        visit::visit_macro(self, m);
        self.tokens(m.tokens.clone());
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test = is_cfg_test(&m.attrs);
        let mut path = self.module.clone();
        path.push(m.ident.to_string());
        if m.content.is_none() {
            if test {
                self.house.test_modules.insert(path);
            }
            return;
        }
        if test && self.test == 0 {
            let s = m.span();
            self.test_lines += s.end().line + 1 - s.start().line;
        }
        self.house.modules.insert(path.clone());
        let outer = std::mem::replace(&mut self.module, path);
        self.test += usize::from(test);
        let fns = std::mem::take(&mut self.fn_names);
        visit::visit_item_mod(self, m);
        self.fn_names = fns;
        self.test -= usize::from(test);
        self.module = outer;
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        let ty = match &*i.self_ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .map_or("impl".into(), |s| s.ident.to_string()),
            _ => "impl".into(),
        };
        self.impl_ty.push(ty);
        visit::visit_item_impl(self, i);
        self.impl_ty.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let start = Self::start_line(&f.vis, &f.sig);
        let end = f.block.brace_token.span.close().end().line;
        self.func(&f.sig.ident, start, end);
        // A function's own items (helpers, a nested fn) are not an impl's.
        let impl_ty = std::mem::take(&mut self.impl_ty);
        self.fn_names.push(f.sig.ident.to_string());
        visit::visit_item_fn(self, f);
        self.fn_names.pop();
        self.impl_ty = impl_ty;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let start = Self::start_line(&f.vis, &f.sig);
        let end = f.block.brace_token.span.close().end().line;
        self.func(&f.sig.ident, start, end);
        self.fn_names.push(f.sig.ident.to_string());
        visit::visit_impl_item_fn(self, f);
        self.fn_names.pop();
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            let start = f.sig.span().start().line;
            let end = block.brace_token.span.close().end().line;
            self.func(&f.sig.ident, start, end);
        }
        self.fn_names.push(f.sig.ident.to_string());
        visit::visit_trait_item_fn(self, f);
        self.fn_names.pop();
    }
}

impl House {
    /// The module a path names: its segments made absolute, followed
    /// through re-exports, cut at the last module (the rest names an
    /// item in it). `None` for a path into another crate.
    fn target(&self, r: &Ref) -> Option<ModPath> {
        let mut segs = absolute(&r.from, &r.segs, r.bare, &self.modules)?;
        for _ in 0..8 {
            let k = (0..=segs.len())
                .rev()
                .find(|&k| self.modules.contains(&segs[..k]))
                .unwrap_or(0);
            let Some(name) = segs.get(k) else {
                return Some(segs);
            };
            let key = (segs[..k].to_vec(), name.clone());
            match self.reexports.get(&key) {
                Some((re, bare)) => {
                    let mut next = absolute(&key.0, re, *bare, &self.modules)?;
                    next.extend(segs[k + 1..].iter().cloned());
                    segs = next;
                }
                None => return Some(segs[..k].to_vec()),
            }
        }
        panic!("re-exports of {:?} go round in circles", r.segs)
    }

    /// Every import from one child of a folder (or file) to another:
    /// `crate::sim::x` written in `src/index/write.rs` is an edge from
    /// `index` to `sim` at the crate root; `super::trace::y` in the same
    /// file, from `write` to `trace` in `index`. A module naming its own
    /// ancestors (a child and its folder's `mod.rs`), or its own
    /// descendants, is no edge.
    fn edges(&self, with_tests: bool) -> Vec<Edge> {
        let mut edges = Vec::new();
        for f in &self.files {
            for r in f.refs.iter().filter(|r| with_tests || !r.test) {
                let Some(to) = self.target(r) else { continue };
                let common = r.from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common == to.len() || common == r.from.len() {
                    continue;
                }
                edges.push(Edge {
                    folder: to[..common].to_vec(),
                    from: r.from[common].clone(),
                    to: to[common].clone(),
                    at: format!("{}:{} {}", f.path, r.line, r.segs.join("::")),
                });
            }
        }
        edges
    }
}

/// `segs` written in module `from`, from the crate root; `None` when it
/// names another crate (a bare `use` whose first name is no child module)
/// or climbs above the root.
fn absolute(
    from: &[String],
    segs: &[String],
    bare: bool,
    modules: &BTreeSet<ModPath>,
) -> Option<Vec<String>> {
    if bare {
        let mut child = from.to_vec();
        child.push(segs.first()?.clone());
        if !modules.contains(&child) {
            return None;
        }
        let mut out = from.to_vec();
        out.extend(segs.iter().cloned());
        return Some(out);
    }
    match segs.first().map(String::as_str) {
        Some("crate") => Some(segs[1..].to_vec()),
        Some("super") => {
            let mut base = from.to_vec();
            let ups = segs.iter().take_while(|s| *s == "super").count();
            for _ in 0..ups {
                base.pop()?;
            }
            base.extend(segs[ups..].iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn folder_name(folder: &[String]) -> String {
    if folder.is_empty() {
        "the crate root (src/lib.rs's modules)".into()
    } else {
        format!("src/{}/", folder.join("/"))
    }
}

#[test]
fn lib_rs_lists_every_module_in_the_layer_the_table_gives_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let ast = syn::parse_file(&lib).unwrap();
    let declared: BTreeSet<String> = ast
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    let table: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    let mut problems = Vec::new();
    for m in declared.difference(&table) {
        problems.push(format!(
            "src/lib.rs declares `mod {m}`, which tests/house.rs's LAYERS does not list: \
             add it to LAYERS and to lib.rs's layer list, in the lowest layer its imports allow"
        ));
    }
    for m in table.difference(&declared) {
        problems.push(format!(
            "tests/house.rs's LAYERS lists `{m}`, which src/lib.rs does not declare: \
             take it off LAYERS and lib.rs's layer list"
        ));
    }
    // The doc's numbered list: the first `[`module`]` link of each module
    // gives its layer.
    let mut documented: BTreeMap<String, u32> = BTreeMap::new();
    let mut item: Option<u32> = None;
    for line in lib.lines() {
        let Some(text) = line.strip_prefix("//!") else {
            break;
        };
        let text = text.trim();
        if text.is_empty() {
            item = None;
            continue;
        }
        if let Some((n, _)) = text.split_once(". ")
            && let Ok(n) = n.parse::<u32>()
        {
            item = Some(n);
        }
        let Some(n) = item else { continue };
        for link in text.split("[`").skip(1) {
            let Some((name, _)) = link.split_once("`]") else {
                continue;
            };
            if declared.contains(name) {
                documented.entry(name.to_owned()).or_insert(n);
            }
        }
    }
    for (m, l) in LAYERS {
        match documented.get(*m) {
            None => problems.push(format!(
                "src/lib.rs's layer list does not name [`{m}`]: \
                 add it to item {l} of the list, with a few words on what it is"
            )),
            Some(d) if d != l => problems.push(format!(
                "src/lib.rs's layer list first names [`{m}`] in item {d}, tests/house.rs's LAYERS \
                 puts it in layer {l}: make them agree (the layer its imports need)"
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let h = house();
    let mut problems = BTreeSet::new();
    for e in h.edges(true).iter().filter(|e| e.folder.is_empty()) {
        let (Some(from), Some(to)) = (layer(&e.from), layer(&e.to)) else {
            problems.insert(format!(
                "{}: `{}` or `{}` is not in tests/house.rs's LAYERS: \
                 give every module of src/lib.rs its layer there and in lib.rs's list",
                e.at, e.from, e.to
            ));
            continue;
        };
        if from < to {
            problems.insert(format!(
                "{}: `{}` (layer {from}) imports `{}` (layer {to}), a higher layer. \
                 Move what it needs down to layer {from} or below (a leaf both can stand on), \
                 or hand it in from above as an argument; do not just move `{}` up",
                e.at, e.from, e.to, e.from
            ));
        }
    }
    let problems: Vec<_> = problems.into_iter().collect();
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let h = house();
    // folder → from → to → where (the first import seen).
    let mut graph: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
    for e in h.edges(true) {
        graph
            .entry(e.folder)
            .or_default()
            .entry(e.from)
            .or_default()
            .entry(e.to)
            .or_insert(e.at);
    }
    let mut problems = BTreeSet::new();
    for (folder, g) in &graph {
        for (a, outs) in g {
            for b in outs.keys() {
                // A path back from b to a closes a cycle through a → b.
                let Some(back) = path(g, b, a) else { continue };
                let mut ring = vec![a.clone()];
                ring.extend(back.iter().cloned());
                let mut key: Vec<String> = ring[..ring.len() - 1].to_vec();
                key.sort();
                let wheres: Vec<String> = ring
                    .windows(2)
                    .map(|w| format!("  {} → {}: {}", w[0], w[1], g[&w[0]][&w[1]]))
                    .collect();
                problems.insert((
                    key,
                    format!(
                        "a cycle in {}: {}\n{}\n  Break it: move what both need into one of \
                         them (or a new module below both), so the arrows go one way.",
                        folder_name(folder),
                        ring.join(" → "),
                        wheres.join("\n")
                    ),
                ));
            }
        }
    }
    // One report per cycle, not one per arrow in it.
    let mut seen = BTreeSet::new();
    let report: Vec<String> = problems
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .map(|(_, m)| m)
        .collect();
    assert!(report.is_empty(), "\n{}\n", report.join("\n"));
}

/// The shortest path from `from` to `to` in `g`, both included.
fn path(
    g: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen = BTreeSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut out = vec![to.to_owned()];
            let mut at = to;
            while let Some(p) = prev.get(at) {
                out.push(p.to_string());
                at = p;
            }
            out.reverse();
            return Some(out);
        }
        for m in g.get(n).into_iter().flat_map(|o| o.keys()) {
            if seen.insert(m.as_str()) {
                prev.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    None
}

#[test]
fn no_file_or_function_longer_than_a_reader_holds() {
    let h = house();
    let mut problems = Vec::new();
    let mut files_seen = BTreeSet::new();
    for f in &h.files {
        let lines = f.lines - f.test_lines;
        let listed = LONG_FILES.iter().find(|(p, _)| *p == f.path);
        ratchet(
            &mut problems,
            &format!("{} has {lines} lines besides its tests", f.path),
            lines,
            MAX_FILE_LINES,
            listed.map(|(_, n)| *n),
            "split it into a folder of files a concern each (tests beside it, \
             `#[cfg(test)] mod tests;` in a file of its own, do not count)",
            "LONG_FILES",
        );
        if listed.is_some() {
            files_seen.insert(f.path.as_str());
        }
    }
    for (p, _) in LONG_FILES.iter().filter(|(p, _)| !files_seen.contains(p)) {
        problems.push(format!(
            "{p} is gone: take (\"{p}\", …) off LONG_FILES in tests/house.rs \
             (its parts are checked as any file is)"
        ));
    }
    let mut fns_seen = BTreeSet::new();
    for f in &h.files {
        for func in &f.fns {
            let lines = func.lines();
            let listed = LONG_FNS
                .iter()
                .find(|(p, n, _)| *p == f.path && *n == func.name);
            ratchet(
                &mut problems,
                &format!(
                    "{}:{} fn {} has {lines} lines",
                    f.path, func.start, func.name
                ),
                lines,
                MAX_FN_LINES,
                listed.map(|(_, _, n)| *n),
                "split it into named steps, each a function well under the limit",
                "LONG_FNS",
            );
            if listed.is_some() {
                fns_seen.insert((f.path.as_str(), func.name.as_str()));
            }
        }
    }
    for (p, n, _) in LONG_FNS
        .iter()
        .filter(|(p, n, _)| !fns_seen.contains(&(*p, *n)))
    {
        problems.push(format!(
            "{p}: fn {n} is gone (renamed, moved or split): take (\"{p}\", \"{n}\", …) off \
             LONG_FNS in tests/house.rs; if it moved whole to another file, it is a new \
             offender there: split it"
        ));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// One file's or function's length against the limit and the allowlist.
fn ratchet(
    problems: &mut Vec<String>,
    what: &str,
    lines: usize,
    limit: usize,
    listed: Option<usize>,
    how: &str,
    list: &str,
) {
    match listed {
        None if lines > limit => problems.push(format!(
            "{what}, over the limit of {limit}: {how}. Do not add it to {list} in \
             tests/house.rs: that list only shrinks"
        )),
        Some(_) if lines <= limit => problems.push(format!(
            "{what}, within the limit of {limit} now: take it off {list} in tests/house.rs \
             so that it stays so"
        )),
        Some(n) if lines > n => problems.push(format!(
            "{what}, more than the {n} it had when listed in {list} (limit {limit}): \
             {how}, or at least do not grow it"
        )),
        _ => {}
    }
}
