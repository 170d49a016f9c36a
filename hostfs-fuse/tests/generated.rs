//! umlfs(1) and the umlfs completions committed under `man/` and `completions/` are what the
//! binary generates today (`scripts/generate`).

use std::path::{Path, PathBuf};

#[test]
fn committed_umlfs_page_and_completions_are_up_to_date() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let tmp = testkit::generated_by(env!("CARGO_BIN_EXE_umlfs"));
    let mut checked = 0;
    for rel in [
        "man/umlfs.1",
        "completions/bash/umlfs",
        "completions/zsh/_umlfs",
        "completions/fish/umlfs.fish",
    ] {
        let fresh = std::fs::read(tmp.path().join(rel)).unwrap_or_default();
        let committed = std::fs::read(root.join(rel)).unwrap_or_default();
        assert!(!fresh.is_empty(), "umlfs generate wrote no {rel}");
        assert!(fresh == committed, "{rel} is stale: run scripts/generate");
        checked += 1;
    }
    assert_eq!(checked, 4);
}
