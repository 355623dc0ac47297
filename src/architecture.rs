//! A check anyone can repeat (`cargo test --lib architecture`): the `crate::` and `super::`
//! imports between the library's modules point one way. It reads the sources, lists every import
//! of one module by another (test modules left out), and fails on any cycle, both between files
//! and between the top-level modules of the data path (ingest, consolidate, persist, maintain,
//! query, and what they stand on).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path without the leading `crate`: `["ingest", "handle"]`.
type ModPath = Vec<String>;

/// The top-level modules `lib.rs` declares (the binary's own modules, beside it in `src/`, are
/// not part of the library).
fn declared_modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("readable lib.rs");
    lib.lines()
        .filter_map(|l| {
            let (_, declared) = l.trim().split_once("mod ")?;
            declared.strip_suffix(';').map(String::from)
        })
        .collect()
}

/// Every library source file by its module path.
fn library_files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let declared = declared_modules(src);
    let mut files = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut module: ModPath = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("lib") if module.len() == 1 => module.clear(),
                Some("mod") => {
                    module.pop();
                }
                _ => {}
            }
            if module.first().is_none_or(|top| declared.contains(top)) {
                files.insert(module, path);
            }
        }
    }
    files
}

/// The source without its test modules and comments (doc links name modules too).
fn code_of(source: &str) -> String {
    let mut code = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Reads a use tree (`a::b`, `a::{b, c::d}`) from the start of `text`, each leaf appended to
/// `prefix`.
fn use_tree(text: &[u8], pos: &mut usize, prefix: &ModPath, out: &mut Vec<ModPath>) {
    let skip_space = |pos: &mut usize| {
        while *pos < text.len() && text[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    };
    let mut path = prefix.clone();
    loop {
        skip_space(pos);
        if text.get(*pos) == Some(&b'{') {
            *pos += 1;
            loop {
                skip_space(pos);
                if text.get(*pos) == Some(&b'}') {
                    *pos += 1;
                    return;
                }
                use_tree(text, pos, &path, out);
                skip_space(pos);
                match text.get(*pos) {
                    Some(b',') => *pos += 1,
                    Some(b'}') => {
                        *pos += 1;
                        return;
                    }
                    _ => return,
                }
            }
        }
        let start = *pos;
        while *pos < text.len() && (text[*pos].is_ascii_alphanumeric() || text[*pos] == b'_') {
            *pos += 1;
        }
        if *pos > start {
            path.push(String::from_utf8_lossy(&text[start..*pos]).into_owned());
        }
        if text[*pos..].starts_with(b"::") {
            *pos += 2;
            continue;
        }
        out.push(path);
        return;
    }
}

/// The longest prefix of `path` that is a module of the library.
fn module_of<'a>(path: &ModPath, files: &'a BTreeMap<ModPath, PathBuf>) -> Option<&'a ModPath> {
    (1..=path.len())
        .rev()
        .find_map(|n| files.get_key_value(&path[..n].to_vec()).map(|(k, _)| k))
}

/// Which modules each module imports.
fn import_graph(files: &BTreeMap<ModPath, PathBuf>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut graph = BTreeMap::new();
    for (module, file) in files {
        let code = code_of(&std::fs::read_to_string(file).expect("readable source"));
        let bytes = code.as_bytes();
        let mut imported = Vec::new();
        let parent: ModPath = module[..module.len().saturating_sub(1)].to_vec();
        for (needle, base) in [("crate::", Vec::new()), ("super::", parent)] {
            let mut from = 0;
            while let Some(at) = code[from..].find(needle) {
                let start = from + at;
                let preceded_by_ident = start > 0
                    && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
                let mut pos = start + needle.len();
                if !preceded_by_ident {
                    use_tree(bytes, &mut pos, &base, &mut imported);
                }
                from = pos.max(start + needle.len());
            }
        }
        let targets: BTreeSet<ModPath> = imported
            .iter()
            .filter_map(|path| module_of(path, files))
            .filter(|target| *target != module && !target.is_empty())
            .cloned()
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<N: Ord + Clone>(
        node: &N,
        graph: &BTreeMap<N, BTreeSet<N>>,
        marks: &mut BTreeMap<N, Mark>,
        stack: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

/// The same imports between top-level modules (`ingest::http` → `persist::backend` is
/// `ingest` → `persist`).
fn top_level(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in graph {
        let Some(from) = from.first() else { continue };
        for to in targets.iter().filter_map(|t| t.first()) {
            if to != from {
                top.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    top
}

fn show(cycle: &[ModPath]) -> String {
    cycle
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn graph_of_this_crate() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    import_graph(&library_files(&src))
}

#[test]
fn imports_between_files_form_no_cycle() {
    let graph = graph_of_this_crate();
    assert!(graph.len() > 30, "every library file is read");
    assert!(
        graph[&vec!["pipeline".to_string()]].contains(&vec!["ingest".into(), "handle".into()]),
        "imports are found"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between files: {}", show(&cycle));
    }
}

#[test]
fn imports_between_top_level_modules_form_no_cycle() {
    let top = top_level(&graph_of_this_crate());
    if let Some(cycle) = find_cycle(&top) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_check_finds_a_cycle_and_reads_use_trees() {
    let mut out = Vec::new();
    let text = b"crate::{a::{b, c::D}, e}; x";
    use_tree(&text[7..], &mut 0, &Vec::new(), &mut out);
    let flat: Vec<String> = out.iter().map(|p| p.join("::")).collect();
    assert_eq!(flat, ["a::b", "a::c::D", "e"]);

    let edge = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let looped = BTreeMap::from([edge("ingest", "pipeline"), edge("pipeline", "ingest")]);
    assert_eq!(
        find_cycle(&looped),
        Some(vec!["ingest".into(), "pipeline".into(), "ingest".into()])
    );
    let down = BTreeMap::from([edge("pipeline", "ingest"), edge("ingest", "event")]);
    assert_eq!(find_cycle(&down), None);
}
