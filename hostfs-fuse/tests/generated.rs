//! umlfs(1) and the umlfs completions committed under `man/` and `completions/` are what the
//! binary generates today (`scripts/generate`).

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn committed_umlfs_page_and_completions_are_up_to_date() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let tmp = tempfile::TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_umlfs"))
        .args(["generate", "all", "--out-dir"])
        .arg(tmp.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
