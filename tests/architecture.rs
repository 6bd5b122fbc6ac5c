//! The module structure of docs/ARCHITECTURE.md, checked on the source of `src/`:
//!
//! - the top-level modules are stages, and a module names only modules of lower stages
//!   (never one of a higher stage, nor another module of its own stage);
//! - inside every module, its submodules (the files of a folder such as `src/similarity/`,
//!   and inline `mod NAME { ... }` blocks) name each other without a cycle.
//!
//! The source is tokenized, not matched line by line: comments (line, block, nested
//! block, doc), string literals (plain, byte, C, raw `r#"..."#`) and char literals are
//! left out, so a path in them is not taken for one. Every path that starts at `crate::`,
//! `self::` or `super::` (any number of `super::`) is resolved against the module it is
//! written in (`src/similarity/conv.rs` is `similarity::conv`, `src/similarity/mod.rs` is
//! `similarity`, a `mod tests { ... }` inside conv.rs is `similarity::conv::tests`, whose
//! `super::` is `similarity::conv`), in code and in `use` declarations alike; a `use` tree
//! is followed through its groups (`use crate::{a::{b, c}, d};`, across lines as rustfmt
//! wraps them, with `self` in a group naming the group's prefix), and its paths may also
//! start at a child module (`pub use conv::ConvOptions;` in `similarity/mod.rs`). A name a
//! module imports (`pub use moments::Moments;`) is followed: `super::Moments` written in
//! `similarity::conv` names `similarity::moments`. Glob imports (`use a::*;`) name their
//! module but are not followed further.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Low to high; a module may name the modules of lower stages only. Kept in step with
/// docs/ARCHITECTURE.md.
const STAGES: &[&[&str]] = &[
    // test_support: the unit tests' tensor helpers (tch alone).
    &["error", "test_support"],
    &["io", "device", "host", "preempt", "stats"],
    &["similarity", "npy"],
    &["config"],
    &["run_dir"],
    &["data"],
    &["model"],
    &["activations"],
    &["train"],
    &["analysis", "compare", "example_pair"],
    &["report"],
    &["experiment", "sweep", "toy_regression"],
    &["cli"],
];

fn stage_of(module: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.contains(&module))
}

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    /// A number, a lifetime, any other punctuation.
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The tokens of Rust source that matter for paths, with their lines (from 1). Comments,
/// string and char literals produce none.
fn tokenize(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips from `i` to past the closing quote of a string with escapes; counts lines.
    let skip_escaped = |mut i: usize, line: &mut usize| -> usize {
        while i < c.len() {
            match c[i] {
                '\\' => {
                    if at(i + 1) == '\n' {
                        *line += 1;
                    }
                    i += 2;
                }
                '"' => return i + 1,
                '\n' => {
                    *line += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_escaped(i + 1, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char: '\n', '\'', '\u{..}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' && at(i + 1) != '\n' {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                out.push(Token { tok: Tok::Other, line });
            }
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && (at(i) == '"' || at(i) == '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // A raw string: ends at `"` and as many `#`.
                    i += hashes + 1;
                    while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                        if c[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += 1 + hashes;
                    continue;
                }
                if word == "r" && hashes == 1 && is_ident_start(at(i + 1)) {
                    // A raw identifier, r#type.
                    i += 1;
                    let start = i;
                    while i < c.len() && is_ident_char(c[i]) {
                        i += 1;
                    }
                    out.push(Token { tok: Tok::Ident(c[start..i].iter().collect()), line });
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_escaped(i + 1, &mut line);
                continue;
            }
            if word == "b" && at(i) == '\'' {
                // A byte: b'x', b'\''.
                i += if at(i + 1) == '\\' { 3 } else { 2 };
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            out.push(Token { tok: Tok::Ident(word), line });
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Token { tok: Tok::Other, line });
        } else {
            let tok = match ch {
                ':' if at(i + 1) == ':' => {
                    i += 1;
                    Tok::PathSep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '*' => Tok::Star,
                _ => Tok::Other,
            };
            out.push(Token { tok, line });
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Paths

/// A path as written: `segments` from its first (`crate`, `self`, `super`, or a name),
/// in the module `module` (absolute, inline modules included), on `line`.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    module: Vec<String>,
    segments: Vec<String>,
    line: usize,
    /// In a `use` declaration: then `alias` is the name it imports (none for a glob).
    in_use: bool,
    alias: Option<String>,
}

/// What one file holds: the paths it writes and the inline modules it declares.
#[derive(Debug, Default)]
struct Parsed {
    paths: Vec<Written>,
    inline_modules: Vec<Vec<String>>,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: Tok) -> bool {
    tokens.get(i).is_some_and(|t| t.tok == tok)
}

/// One use tree at `*i` under `prefix`: a path, a path ending in a group `{...}` of use
/// trees, or a glob. Leaves are pushed to `out` as (segments, line, alias).
fn use_tree(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize, Option<String>)>) {
    let mut path = prefix;
    if is(tokens, *i, Tok::PathSep) {
        // `::name`: an external crate.
        path.push("::".into());
        *i += 1;
    }
    loop {
        let Some(t) = tokens.get(*i) else { return };
        match &t.tok {
            Tok::Open => {
                *i += 1;
                while *i < tokens.len() && !is(tokens, *i, Tok::Close) {
                    let before = *i;
                    use_tree(tokens, i, path.clone(), out);
                    if is(tokens, *i, Tok::Comma) {
                        *i += 1;
                    } else if *i == before {
                        *i += 1; // not a use tree: step over it
                    }
                }
                *i += 1;
                return;
            }
            Tok::Star => {
                *i += 1;
                out.push((path, t.line, None));
                return;
            }
            Tok::Ident(name) => {
                *i += 1;
                if is(tokens, *i, Tok::PathSep) {
                    path.push(name.clone());
                    *i += 1;
                    continue;
                }
                // `self` in a group is the group's prefix.
                let alias_of = if name == "self" && !path.is_empty() {
                    path.last().cloned()
                } else {
                    path.push(name.clone());
                    Some(name.clone())
                };
                let alias = if ident(tokens, *i) == Some("as") {
                    *i += 2;
                    ident(tokens, *i - 1).filter(|a| *a != "_").map(str::to_string)
                } else {
                    alias_of
                };
                out.push((path, t.line, alias));
                return;
            }
            _ => {
                if !path.is_empty() {
                    out.push((path, t.line, None));
                }
                return;
            }
        }
    }
}

/// The paths written in `text`, the source of module `module` (`["similarity", "conv"]`
/// for src/similarity/conv.rs), and its inline modules.
fn parse(text: &str, module: &[String]) -> Parsed {
    let tokens = tokenize(text);
    let mut parsed = Parsed::default();
    // The inline modules open at this point, with the brace depth inside each.
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let here = |open: &[(String, usize)]| -> Vec<String> { module.iter().cloned().chain(open.iter().map(|o| o.0.clone())).collect() };
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                if open.last().is_some_and(|o| o.1 == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(name), true) = (ident(&tokens, i + 1), is(&tokens, i + 2, Tok::Open)) {
                    open.push((name.to_string(), depth + 1));
                    parsed.inline_modules.push(here(&open));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "use" && !(i > 0 && is(&tokens, i - 1, Tok::PathSep)) => {
                i += 1;
                let mut leaves = Vec::new();
                use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                let m = here(&open);
                for (segments, line, alias) in leaves {
                    parsed.paths.push(Written { module: m.clone(), segments, line, in_use: true, alias });
                }
                while i < tokens.len() && !is(&tokens, i, Tok::Semi) {
                    i += 1;
                }
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "self" | "super")
                    && is(&tokens, i + 1, Tok::PathSep)
                    && !(i > 0 && is(&tokens, i - 1, Tok::PathSep)) =>
            {
                let mut leaves = Vec::new();
                let before = depth;
                use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                depth = before;
                let m = here(&open);
                for (segments, line, _) in leaves {
                    parsed.paths.push(Written { module: m.clone(), segments, line, in_use: false, alias: None });
                }
            }
            _ => i += 1,
        }
    }
    parsed
}

/// `written` as an absolute path from the crate root; `None` for a path outside the crate
/// (another crate, or a name not known to be a child module).
fn absolute(written: &Written, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let s = &written.segments;
    let first = s.first()?;
    match first.as_str() {
        "crate" => Some(s[1..].to_vec()),
        "self" | "super" => {
            let mut base = written.module.clone();
            let mut k = 0;
            if s[0] == "self" {
                k = 1;
            }
            while s.get(k).is_some_and(|x| x == "super") {
                base.pop()?;
                k += 1;
            }
            base.extend(s[k..].iter().cloned());
            Some(base)
        }
        _ if written.in_use => {
            let mut child = written.module.clone();
            child.push(first.clone());
            modules.contains(&child).then(|| written.module.iter().chain(s).cloned().collect())
        }
        _ => None,
    }
}

/// The longest prefix of `path` that is a module.
fn module_prefix(path: &[String], modules: &BTreeSet<Vec<String>>) -> usize {
    (0..=path.len()).rev().find(|&n| modules.contains(&path[..n].to_vec())).unwrap_or(0)
}

/// One module naming another: `from` (where the path is written) names `to`.
#[derive(Debug, Clone, PartialEq)]
struct Dependency {
    from: Vec<String>,
    to: Vec<String>,
    file: String,
    line: usize,
    written: String,
}

/// A source file of the crate: its path for messages, its module and its text.
struct Source {
    file: String,
    module: Vec<String>,
    text: String,
}

/// Every module a path names (the module the path reaches, and those the names it goes
/// through are imported from), in every source.
fn dependencies(sources: &[Source]) -> Vec<Dependency> {
    let parsed: Vec<Parsed> = sources.iter().map(|s| parse(&s.text, &s.module)).collect();
    let mut modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    modules.extend(parsed.iter().flat_map(|p| p.inline_modules.iter().cloned()));
    let ancestors: Vec<Vec<String>> = modules.iter().flat_map(|m| (0..m.len()).map(|n| m[..n].to_vec())).collect();
    modules.extend(ancestors);
    // What each module imports: name -> absolute path.
    let mut imports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for w in parsed.iter().flat_map(|p| &p.paths).filter(|w| w.in_use) {
        if let (Some(alias), Some(path)) = (&w.alias, absolute(w, &modules)) {
            imports.entry(w.module.clone()).or_default().insert(alias.clone(), path);
        }
    }
    let mut out = Vec::new();
    for (source, parsed) in sources.iter().zip(&parsed) {
        for w in &parsed.paths {
            let Some(mut path) = absolute(w, &modules) else { continue };
            let mut named = Vec::new();
            // Follow imported names, a few steps at most (an import of itself ends it).
            for _ in 0..8 {
                let n = module_prefix(&path, &modules);
                named.push(path[..n].to_vec());
                let next = path.get(n).and_then(|name| imports.get(&path[..n]).and_then(|m| m.get(name)));
                match next {
                    Some(target) if *target != path[..=n] => path = target.iter().chain(&path[n + 1..]).cloned().collect(),
                    _ => break,
                }
            }
            named.dedup();
            for to in named {
                let written = w.segments.join("::");
                out.push(Dependency { from: w.module.clone(), to, file: source.file.clone(), line: w.line, written });
            }
        }
    }
    out
}

/// Where `d` is an edge between two submodules of one module: (that module, from, to),
/// each child named by its full path. `None` where one contains the other.
fn sibling_edge(d: &Dependency) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
    let common = d.from.iter().zip(&d.to).take_while(|(a, b)| a == b).count();
    if common >= d.from.len() || common >= d.to.len() {
        return None;
    }
    Some((d.from[..common].to_vec(), d.from[..=common].to_vec(), d.to[..=common].to_vec()))
}

/// Top-level modules naming modules of their own or a higher stage.
fn stage_violations(deps: &[Dependency]) -> Vec<String> {
    let mut wrong = Vec::new();
    for d in deps {
        let Some((parent, from, to)) = sibling_edge(d) else { continue };
        if !parent.is_empty() {
            continue;
        }
        let (from, to) = (&from[0], &to[0]);
        let at = format!("{}:{}: {}", d.file, d.line, d.written);
        match (stage_of(from), stage_of(to)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(a), Some(b)) => wrong.push(format!("{at}: '{from}' (stage {a}) names '{to}' (stage {b})")),
            (None, _) => wrong.push(format!("{at}: '{from}' has no stage in STAGES (add it, and to docs/ARCHITECTURE.md)")),
            (_, None) => wrong.push(format!("{at}: names '{to}', which has no stage")),
        }
    }
    wrong
}

/// The cycles among the submodules of each module, one per set of modules that reach
/// each other, as the chain of modules with the file and line of each edge.
fn cycles(deps: &[Dependency]) -> Vec<String> {
    // module -> from -> to -> the first dependency seen
    type Graph<'a> = BTreeMap<Vec<String>, BTreeMap<Vec<String>, &'a Dependency>>;
    let mut graphs: BTreeMap<Vec<String>, Graph> = BTreeMap::new();
    for d in deps {
        if let Some((parent, from, to)) = sibling_edge(d) {
            graphs.entry(parent).or_default().entry(from).or_default().entry(to).or_insert(d);
        }
    }
    let mut found = Vec::new();
    for graph in graphs.values() {
        let reach = |start: &Vec<String>| -> BTreeSet<Vec<String>> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start.clone()];
            while let Some(n) = stack.pop() {
                for next in graph.get(&n).into_iter().flat_map(|e| e.keys()) {
                    if seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
            seen
        };
        let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
        for start in graph.keys() {
            if done.contains(start) || !reach(start).contains(start) {
                continue;
            }
            // The component: modules reached from `start` that reach it back.
            let component: BTreeSet<Vec<String>> = reach(start).into_iter().filter(|n| reach(n).contains(start)).collect();
            done.extend(component.iter().cloned());
            // A shortest cycle through `start` (breadth first within the component).
            let mut before: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start.clone()]);
            'search: while let Some(n) = queue.pop_front() {
                for next in graph.get(&n).into_iter().flat_map(|e| e.keys()).filter(|m| component.contains(*m)) {
                    if next == start {
                        before.insert(start.clone(), n.clone());
                        break 'search;
                    }
                    if !before.contains_key(next) {
                        before.insert(next.clone(), n.clone());
                        queue.push_back(next.clone());
                    }
                }
            }
            let mut back = Vec::new();
            let mut n = before[start].clone();
            while n != *start {
                back.push(n.clone());
                n = before[&n].clone();
            }
            back.reverse();
            let chain: Vec<Vec<String>> = std::iter::once(start.clone()).chain(back).chain([start.clone()]).collect();
            let mut text = chain[0].join("::");
            for pair in chain.windows(2) {
                let d = graph[&pair[0]][&pair[1]];
                text.push_str(&format!("\n    -> {}  ({}:{}: {})", pair[1].join("::"), d.file, d.line, d.written));
            }
            found.push(text);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// The crate

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The library's sources (src/main.rs is the binary, another crate).
fn crate_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let mut module: Vec<String> = rel.iter().map(|c| c.to_str().unwrap().trim_end_matches(".rs").to_string()).collect();
        if module == ["main"] {
            continue;
        }
        if module.last().is_some_and(|m| m == "mod" || m == "lib") {
            module.pop();
        }
        let file = f.strip_prefix(root).unwrap().display().to_string();
        out.push(Source { file, module, text: std::fs::read_to_string(&f).unwrap() });
    }
    out
}

#[test]
fn stages_depend_one_way() {
    let sources = crate_sources();
    let mut wrong = stage_violations(&dependencies(&sources));
    for s in sources.iter().filter(|s| !s.module.is_empty()) {
        if stage_of(&s.module[0]).is_none() {
            wrong.push(format!("{}: module '{}' has no stage in STAGES (add it, and to docs/ARCHITECTURE.md)", s.file, s.module[0]));
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "dependencies against the stage order:\n{}", wrong.join("\n"));
}

#[test]
fn submodules_depend_without_cycles() {
    let found = cycles(&dependencies(&crate_sources()));
    assert!(
        found.is_empty(),
        "cycles among the submodules of a module (move what both need into a module both can name):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_has_a_stage() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let tokens = tokenize(&lib);
    for i in 0..tokens.len() {
        if ident(&tokens, i) == Some("mod") && is(&tokens, i + 2, Tok::Semi) {
            let m = ident(&tokens, i + 1).unwrap();
            assert!(stage_of(m).is_some(), "src/lib.rs declares '{m}', which has no stage");
        }
    }
    assert_eq!(stage_of("train").unwrap() + 1, stage_of("analysis").unwrap());
}

/// The crate's public API is chosen: `src/lib.rs` makes public exactly the modules
/// docs/library.md's table lists (the rest is `pub(crate)`).
#[test]
fn the_public_modules_are_the_documented_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokens = tokenize(&std::fs::read_to_string(root.join("src/lib.rs")).unwrap());
    let public: BTreeSet<String> = (1..tokens.len())
        .filter(|&i| ident(&tokens, i) == Some("mod") && ident(&tokens, i - 1) == Some("pub"))
        .map(|i| ident(&tokens, i + 1).unwrap().to_string())
        .collect();
    let doc = std::fs::read_to_string(root.join("docs/library.md")).unwrap();
    let table = doc.split("| module | what a user calls |").nth(1).expect("docs/library.md has the table of public modules");
    let documented: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| l.split('|').nth(1).unwrap().split(',').map(|m| m.trim().trim_matches('`').to_string()).collect::<Vec<_>>())
        .collect();
    assert!(public.len() > 10, "{public:?}");
    assert_eq!(public, documented, "src/lib.rs's public modules against docs/library.md's table");
}

// ---------------------------------------------------------------------------------------
// The checker itself

fn module(path: &str) -> Vec<String> {
    path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The modules named from `text`, the source of `module`, among `others` (the other
/// modules of the crate), as `a::b` strings.
fn named_from(text: &str, at: &str, others: &[&str]) -> Vec<String> {
    let mut sources = vec![Source { file: "here.rs".into(), module: module(at), text: text.into() }];
    sources.extend(others.iter().map(|m| Source { file: format!("{m}.rs"), module: module(m), text: String::new() }));
    let mut got: Vec<String> = dependencies(&sources).iter().map(|d| d.to.join("::")).collect();
    got.sort();
    got.dedup();
    got
}

const CRATE: &[&str] = &["", "a", "a::b", "a::c", "a::c::d", "e", "train", "similarity", "similarity::conv", "similarity::dft"];

#[test]
fn a_group_wrapped_over_lines_is_seen() {
    let text = "use crate::{\n    a::b,\n    e,\n};\nfn f() {}\n";
    assert_eq!(named_from(text, "train", CRATE), ["a::b", "e"]);
    let deps = dependencies(&[
        Source { file: "x.rs".into(), module: module("train"), text: text.into() },
        Source { file: "a.rs".into(), module: module("a::b"), text: String::new() },
    ]);
    assert_eq!(deps.iter().map(|d| d.line).collect::<Vec<_>>(), [2, 3], "each leaf on its own line");
}

#[test]
fn nested_groups_are_seen() {
    let text = "pub(crate) use crate::{a::{b::Thing, c::{self, d::{X, Y as Z}}}, e::*};";
    assert_eq!(named_from(text, "train", CRATE), ["a::b", "a::c", "a::c::d", "e"]);
}

#[test]
fn super_and_self_resolve_against_the_module() {
    assert_eq!(named_from("use super::super::train::Trainer;", "similarity::conv", CRATE), ["train"]);
    assert_eq!(named_from("use super::dft::Plan;", "similarity::conv", CRATE), ["similarity::dft"]);
    assert_eq!(named_from("fn f() { super::dft::g(self::h()) }", "similarity::conv", CRATE), ["similarity::conv", "similarity::dft"]);
    // A `mod tests` inside conv.rs: its `super` is conv, `super::super` similarity.
    let tests = "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::dft::Plan;\n}\nuse super::a;";
    let deps = dependencies(&[
        Source { file: "conv.rs".into(), module: module("similarity::conv"), text: tests.into() },
        Source { file: "dft.rs".into(), module: module("similarity::dft"), text: String::new() },
    ]);
    let got: Vec<(String, String, usize)> = deps.iter().map(|d| (d.from.join("::"), d.to.join("::"), d.line)).collect();
    assert_eq!(
        got,
        [
            ("similarity::conv::tests".to_string(), "similarity::conv".to_string(), 3),
            ("similarity::conv::tests".into(), "similarity::dft".into(), 4),
            ("similarity::conv".into(), "similarity".into(), 6),
        ]
    );
    // A child module named from its parent's `use` (a re-export).
    assert_eq!(named_from("pub use conv::Layout;\nuse rayon::prelude::*;", "similarity", CRATE), ["similarity::conv"]);
}

#[test]
fn paths_in_comments_and_literals_are_not_paths() {
    let text = r####"
        // use crate::a::b;
        /* crate::e /* nested: crate::train */ still a comment: crate::a */
        /// [`crate::similarity`]
        //! crate::similarity
        let s = "crate::e \" crate::train";
        let r = r#"crate::e "quoted" crate::train"#;
        let b = b"crate::e";
        let q = '"'; let q2 = '\''; let l: &'static str = x; let u = b'"';
        let raw = br##"crate::e"# crate::train"##;
        fn f<'a>(x: &'a str) -> usize { crate::a::c::g(x) }
    "####;
    assert_eq!(named_from(text, "train", CRATE), ["a::c"]);
    assert_eq!(tokenize(text).iter().filter(|t| t.tok == Tok::Ident("crate".into())).map(|t| t.line).collect::<Vec<_>>(), [11]);
}

#[test]
fn names_imported_by_a_parent_are_followed() {
    // `similarity/mod.rs` imports Plan from dft; conv names it through `super::`.
    let sources = [
        Source { file: "mod.rs".into(), module: module("similarity"), text: "pub use dft::Plan;\nmod conv;\nmod dft;".into() },
        Source { file: "conv.rs".into(), module: module("similarity::conv"), text: "use super::{Plan, Options};".into() },
        Source { file: "dft.rs".into(), module: module("similarity::dft"), text: String::new() },
    ];
    let edges: Vec<_> = dependencies(&sources).iter().filter_map(sibling_edge).map(|(_, a, b)| (a.join("::"), b.join("::"))).collect();
    assert_eq!(edges, [("similarity::conv".to_string(), "similarity::dft".to_string())]);
}

#[test]
fn a_cycle_is_found_with_its_lines() {
    let source = |file: &str, m: &str, text: &str| Source { file: file.into(), module: module(m), text: text.into() };
    let sources = [
        source("src/s/mod.rs", "s", "pub mod a;\npub mod b;\npub mod c;\n"),
        source("src/s/a.rs", "s::a", "use super::b::X;\n"),
        source("src/s/b.rs", "s::b", "fn f() {}\nfn g() -> super::c::Y { todo!() }\n"),
        source("src/s/c.rs", "s::c", "use crate::{\n    s::a::Z,\n};\n"),
        source("src/t.rs", "t", "use crate::s::a;\n"),
    ];
    let found = cycles(&dependencies(&sources));
    assert_eq!(
        found,
        ["s::a\n    -> s::b  (src/s/a.rs:1: super::b::X)\n    -> s::c  (src/s/b.rs:2: super::c::Y)\n    -> s::a  (src/s/c.rs:2: crate::s::a::Z)"]
    );
    // Without the edge back, no cycle.
    let acyclic: Vec<Source> = sources.into_iter().filter(|s| s.file != "src/s/c.rs").collect();
    assert!(cycles(&dependencies(&acyclic)).is_empty());
}

#[test]
fn a_higher_stage_is_refused() {
    let sources = [
        Source { file: "src/train/x.rs".into(), module: module("train::x"), text: "fn f() { crate::analysis::g() }".into() },
        Source { file: "src/analysis/mod.rs".into(), module: module("analysis"), text: "use crate::train;".into() },
        Source { file: "src/model.rs".into(), module: module("model"), text: "use crate::{\n    error::E,\n    data::D,\n};".into() },
        Source { file: "src/error.rs".into(), module: module("error"), text: String::new() },
        Source { file: "src/data/mod.rs".into(), module: module("data"), text: "use crate::model::Network;".into() },
    ];
    let got = stage_violations(&dependencies(&sources));
    assert_eq!(
        got,
        [
            "src/train/x.rs:1: crate::analysis::g: 'train' (stage 8) names 'analysis' (stage 9)",
            "src/data/mod.rs:1: crate::model::Network: 'data' (stage 5) names 'model' (stage 6)"
        ]
    );
}
