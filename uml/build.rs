//! The `uml` binary is linked as a fixed-address executable (`-no-pie`).
//!
//! A position-independent `uml` applies about 15,000 relative relocations at every start, and
//! the pages they write (the 300 KiB of `.data.rel.ro`: option tables, strings, panic
//! locations, vtables) are copied on write whether the command uses them or not: 167 page
//! faults for `uml version` against 99 without. That is most of what `uml version` cost over
//! `uml_mconsole` (1.25× its time as a PIE, 1.1× without), and inside a guest, where every page
//! fault is a round trip through the UML kernel, it was 13 ms of the 87 ms `uml run -- true`
//! takes, because the guest's init is this binary. The price: the executable's own code and
//! data are not at a random address (the libraries, heap and stack still are). The library and
//! the other binaries stay position-independent.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=uml=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
