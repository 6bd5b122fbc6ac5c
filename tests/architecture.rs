//! The stages of docs/ARCHITECTURE.md depend one way: no module of a lower stage names a
//! module of a higher one (nor another module of its own stage). Checked on the source
//! text: every `crate::NAME` outside comments, in `use` lines and paths alike.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Low to high; a module may name the modules of lower stages only. Kept in step with
/// docs/ARCHITECTURE.md.
const STAGES: &[&[&str]] = &[
    &["error"],
    &["io", "device", "preempt", "stats"],
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

/// The top-level module a source file belongs to (`src/train/sgd.rs` -> `train`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
    first.trim_end_matches(".rs").to_string()
}

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

/// The crate modules named by `crate::NAME` in the code of `text` (comments left out).
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::{a, b}` names several.
            if after.starts_with('{') {
                let inner = &after[1..after.find('}').unwrap_or(after.len())];
                out.extend(inner.split(',').map(|s| s.trim().split("::").next().unwrap_or("").to_string()).filter(|s| !s.is_empty()));
            } else if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

#[test]
fn stages_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in &files {
        let module = module_of(&src, f);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(mine) = stage_of(&module) else {
            wrong.push(format!("{}: module '{module}' has no stage in STAGES (add it, and to docs/ARCHITECTURE.md)", f.display()));
            continue;
        };
        for named in named_modules(&std::fs::read_to_string(f).unwrap()) {
            if named == module {
                continue;
            }
            match stage_of(&named) {
                Some(s) if s < mine => {}
                Some(_) => wrong.push(format!(
                    "{}: '{module}' (stage {mine}) names crate::{named} (stage {})",
                    f.display(),
                    stage_of(&named).unwrap()
                )),
                None => wrong.push(format!("{}: names crate::{named}, which has no stage", f.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the stage order:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_what_it_checks() {
    let text =
        "use crate::train::checkpoint;\n// crate::cli in a comment\nlet x = crate::analysis::f(); use crate::{config, data::Dataset};";
    let got: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(got, ["analysis", "config", "data", "train"]);
    assert_eq!(stage_of("train").unwrap() + 1, stage_of("analysis").unwrap());
    // Every module of the crate has a stage.
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let m = line.trim_end_matches(';');
        assert!(stage_of(m).is_some(), "src/lib.rs declares '{m}', which has no stage");
    }
}
