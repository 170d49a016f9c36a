//! umld(8), org.umlkit.uml1(5) and the umld completions committed under `man/` and
//! `completions/` are what the binary generates today (`scripts/generate`), and the API page
//! documents every member of the checked-in interface XML.

use std::path::{Path, PathBuf};

fn generate() -> tempfile::TempDir {
    testkit::generated_by(env!("CARGO_BIN_EXE_umld"))
}

#[test]
fn committed_umld_pages_and_completions_are_up_to_date() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let tmp = generate();
    for rel in [
        "man/umld.8",
        "man/org.umlkit.uml1.5",
        "completions/bash/umld",
        "completions/zsh/_umld",
        "completions/fish/umld.fish",
    ] {
        let fresh = std::fs::read(tmp.path().join(rel)).unwrap_or_default();
        let committed = std::fs::read(root.join(rel)).unwrap_or_default();
        assert!(!fresh.is_empty(), "umld generate wrote no {rel}");
        assert!(fresh == committed, "{rel} is stale: run scripts/generate");
    }
}

#[test]
fn the_api_page_documents_every_member_of_the_interfaces() {
    let tmp = generate();
    let page = std::fs::read_to_string(tmp.path().join("man/org.umlkit.uml1.5")).unwrap();
    let mut members = 0;
    for xml in umld::manpage::INTERFACES {
        for line in xml.lines().map(str::trim) {
            for kind in ["<method ", "<property ", "<signal "] {
                if let Some(rest) = line.strip_prefix(kind) {
                    let name = rest.split('"').nth(1).unwrap();
                    members += 1;
                    assert!(
                        page.contains(name),
                        "{name} is missing from org.umlkit.uml1(5)"
                    );
                }
            }
        }
    }
    assert!(
        members > 30,
        "only {members} members found in the interface XML"
    );
}
