//! The `uml` and `uml-init` binaries are linked as fixed-address executables (`-no-pie`), and
//! the library gets `UMLKIT_BUILD`, a hash of its sources.
//!
//! A position-independent `uml` applies about 15,000 relative relocations at every start, and
//! the pages they write (the 300 KiB of `.data.rel.ro`: option tables, strings, panic
//! locations, vtables) are copied on write whether the command uses them or not: 167 page
//! faults for `uml version` against 99 without. That is most of what `uml version` cost over
//! `uml_mconsole` (1.25× its time as a PIE, 1.1× without), and inside a guest, where every page
//! fault is a round trip through the UML kernel, it was 13 ms of the 87 ms `uml run -- true`
//! takes, because the guest's init was this binary (it is `uml-init` now, linked the same way).
//! The price: the executable's own code and data are not at a random address (the libraries,
//! heap and stack still are). The library and the other binaries stay position-independent.
//!
//! `UMLKIT_BUILD` tells an `uml-init` which `uml` it belongs to (`guest_init::BUILD`): the
//! package version and a hash of every file under `src/`, so it changes with any change of the
//! sources and not otherwise (a rebuild of the same sources gives the same binaries).

use std::hash::{Hash, Hasher};
use std::path::Path;

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=uml=-no-pie");
        println!("cargo:rustc-link-arg-bin=uml-init=-no-pie");
    }
    // std's DefaultHasher with its fixed keys: the same sources give the same hash.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    hash_dir(Path::new("src"), &mut hasher);
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=UMLKIT_BUILD={version}-{:016x}",
        hasher.finish()
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
}

/// Every file under `dir`, in name order: its path and contents.
fn hash_dir(dir: &Path, hasher: &mut impl Hasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            hash_dir(&p, hasher);
        } else if let Ok(bytes) = std::fs::read(&p) {
            p.hash(hasher);
            bytes.hash(hasher);
        }
    }
}
