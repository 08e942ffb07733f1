//! The source tree keeps the shape lib.rs describes: folders are stages,
//! each imports only the stages below it, and no file imports a file that
//! imports it back, directly or around a loop. Imports are read from the
//! source text (`crate::`, `super::` and `use` paths; tests excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The stages from the bottom up; the top-level files come after them all.
const STAGES: &[&str] = &[
    "sys",
    "image",
    "credentials",
    "registry",
    "kube",
    "inventory",
    "exporter",
];
const TOP: &[&str] = &["app", "check_command", "config", "fuzzing"];

/// `a::b` module path -> file text (tests and comments removed).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut m = prefix.to_vec();
            if name != "mod" {
                m.push(name);
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(m.join("::"), code);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The longest module that is a prefix of `path`.
fn resolve<'a>(mods: &'a BTreeMap<String, String>, path: &[&str]) -> Option<&'a str> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find_map(|p| mods.get_key_value(&p).map(|(k, _)| k.as_str()))
}

/// Which modules each module imports.
fn imports(mods: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<&str>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeMap::new();
    for (m, code) in mods {
        let here: Vec<&str> = m.split("::").filter(|s| !s.is_empty()).collect();
        let is_dir = mods.keys().any(|k| k.starts_with(&format!("{m}::")));
        // The module `super::` names from this file.
        let parent: Vec<&str> = if is_dir || here.is_empty() {
            here[..here.len().saturating_sub(1)].to_vec()
        } else {
            here[..here.len() - 1].to_vec()
        };
        let mut targets = BTreeSet::new();
        let mut add = |base: &[&str], rest: &str| {
            let mut p: Vec<&str> = base.to_vec();
            p.extend(rest.split("::").filter(|s| !s.is_empty()));
            if let Some(t) = resolve(mods, &p) {
                if t != m {
                    targets.insert(t);
                }
            }
        };
        for (root, base) in [("crate::", &[][..]), ("super::", &parent[..])] {
            for (i, _) in code.match_indices(root) {
                if i > 0 && code[..i].ends_with(ident) {
                    continue;
                }
                let rest = &code[i + root.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // use crate::{a, b::c};
                    let group = group.split('}').next().unwrap_or("");
                    for item in group.split(',') {
                        let item = item.trim().split([' ', '{']).next().unwrap_or("");
                        add(base, item);
                    }
                } else {
                    let end = rest
                        .find(|c: char| !(ident(c) || c == ':'))
                        .unwrap_or(rest.len());
                    add(base, &rest[..end]);
                }
            }
        }
        // A folder's re-exports of its children (`pub use check::...`).
        if is_dir {
            for line in code.lines() {
                if let Some(rest) = line.trim().strip_prefix("pub use ") {
                    let first = rest.split("::").next().unwrap_or("");
                    if !matches!(first, "crate" | "super" | "self") {
                        add(&here, first);
                    }
                }
            }
        }
        out.insert(m.as_str(), targets);
    }
    out
}

fn stage(m: &str) -> usize {
    let head = m.split("::").next().unwrap();
    STAGES
        .iter()
        .position(|s| *s == head)
        .unwrap_or(STAGES.len())
}

#[test]
fn the_folders_are_the_stages_and_top_level_holds_only_the_entry_points() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            dirs.push(name);
        } else {
            files.push(name.trim_end_matches(".rs").to_string());
        }
    }
    dirs.sort();
    files.sort();
    let mut want: Vec<&str> = STAGES.to_vec();
    want.sort();
    assert_eq!(dirs, want);
    let mut want: Vec<&str> = TOP.iter().copied().chain(["lib", "main"]).collect();
    want.sort();
    assert_eq!(files, want);
    // Every folder says what it is for and what it may import.
    for d in STAGES {
        let doc = std::fs::read_to_string(src.join(d).join("mod.rs")).unwrap();
        assert!(doc.starts_with("//! "), "{d}/mod.rs opens with its job");
        let head: String = doc.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(head.contains("mport"), "{d}/mod.rs says what it may import");
    }
}

#[test]
fn stages_import_only_the_stages_below_them() {
    let mods = modules();
    let imports = imports(&mods);
    let mut wrong = Vec::new();
    for (m, targets) in &imports {
        for t in targets {
            if stage(t) > stage(m) {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports of higher stages: {wrong:#?}");
    // The reader sees real edges, not nothing.
    assert!(imports["registry::check"].contains("credentials"));
    assert!(imports["kube::watch"].contains("kube::client"));
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mods = modules();
    let imports = imports(&mods);
    // Depth-first search for a back edge, reporting the loop.
    fn visit<'a>(
        m: &'a str,
        imports: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for t in imports.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, imports, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in imports.keys() {
        if let Some(cycle) = visit(m, &imports, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    assert!(imports.len() > 40, "{} modules read", imports.len());
}
