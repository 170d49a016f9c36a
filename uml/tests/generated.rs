//! The committed man pages and completions are what the code generates today: regenerate into
//! a temporary directory with the built binary and compare byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The workspace root, where `man/` and `completions/` are committed.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the uml crate sits in the workspace")
        .to_owned()
}

/// Files under `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out
}

/// Files the `uml` binary writes (other binaries write theirs next to them: `umlfs.1`, …).
fn owned_by_uml(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name
        .trim_start_matches('_')
        .trim_end_matches(".fish")
        .trim_end_matches(".1")
        .trim_end_matches(".7");
    stem == "uml" || stem.starts_with("uml-") || ["linux", "linux.uml", "vmlinux"].contains(&stem)
}

#[test]
fn committed_man_pages_and_completions_are_up_to_date() {
    let tmp = testkit::generated_by(env!("CARGO_BIN_EXE_uml"));
    let mut problems = Vec::new();
    for sub in ["man", "completions"] {
        let fresh_dir = tmp.path().join(sub);
        let committed_dir = root().join(sub);
        let fresh = files(&fresh_dir);
        assert!(!fresh.is_empty(), "nothing generated under {sub}/");
        for rel in &fresh {
            match std::fs::read(committed_dir.join(rel)) {
                Ok(committed) if committed == std::fs::read(fresh_dir.join(rel)).unwrap() => {}
                Ok(_) => problems.push(format!("{sub}/{} is stale", rel.display())),
                Err(_) => problems.push(format!("{sub}/{} is missing", rel.display())),
            }
        }
        for rel in files(&committed_dir) {
            if owned_by_uml(&rel) && !fresh.contains(&rel) {
                problems.push(format!(
                    "{sub}/{} is no longer generated (remove it)",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the committed generated files differ from what the code generates; run scripts/generate \
         and commit the result:\n  {}",
        problems.join("\n  ")
    );
}
