//! The Arch PKGBUILD and the RPM spec install exactly the files of the Debian package, without
//! building either: each recipe's own install step runs on a staged source tree (the checkout,
//! with placeholder binaries where cargo would have put them), and the result is compared with
//! the .deb's data archive.
//!
//! Where the distributions differ by convention, the comparison maps one to the other, and only
//! there: zsh completions live in Debian's vendor-completions but in site-functions elsewhere;
//! Debian's copyright, changelog.Debian.gz and lintian overrides have no counterpart; the RPM
//! adds its license files (%license). makepkg and rpmbuild gzip man pages after the install
//! step, as cargo-deb does, so man pages are compared without the .gz.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const BINARIES: [&str; 4] = ["uml", "uml-init", "umlfs", "umld"];

/// Files only the Debian package has: its packaging metadata.
const DEBIAN_ONLY: [&str; 3] = [
    "/usr/share/doc/umlkit/copyright",
    "/usr/share/doc/umlkit/changelog.Debian.gz",
    "/usr/share/lintian/overrides/umlkit",
];

/// The RPM's `%license` files.
const RPM_LICENSES: [&str; 3] = ["LICENSE", "LICENSE.dependencies", "cargo-vendor.txt"];

/// Fedora's values of the macros the spec's %install and %files use that Debian's rpm does not
/// define (systemd-rpm-macros and redhat-rpm-config).
const FEDORA_MACROS: [(&str, &str); 4] = [
    ("_userunitdir", "/usr/lib/systemd/user"),
    (
        "bash_completions_dir",
        "/usr/share/bash-completion/completions",
    ),
    ("zsh_completions_dir", "/usr/share/zsh/site-functions"),
    (
        "fish_completions_dir",
        "/usr/share/fish/vendor_completions.d",
    ),
];

/// A path in the form the three distributions share.
fn common_form(path: &str) -> String {
    let path = path
        .replace(
            "/usr/share/zsh/vendor-completions/",
            "/usr/share/zsh/site-functions/",
        )
        // Arch keeps helper programs in /usr/lib/PACKAGE, Debian and Fedora in /usr/libexec.
        .replace("/usr/lib/umlkit/", "/usr/libexec/umlkit/");
    match path.strip_suffix(".gz") {
        Some(p) if path.starts_with("/usr/share/man/") => p.to_owned(),
        _ => path,
    }
}

fn deb_in_common_form() -> BTreeSet<String> {
    let files = deb_files(deb());
    for f in DEBIAN_ONLY {
        assert!(
            files.contains(f),
            "the .deb no longer has {f}: update DEBIAN_ONLY"
        );
    }
    files
        .iter()
        .filter(|f| !DEBIAN_ONLY.contains(&f.as_str()))
        .map(|f| common_form(f))
        .collect()
}

/// The difference of two file sets, for a failure message.
fn diff(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> String {
    let missing: Vec<&String> = want.difference(got).collect();
    let extra: Vec<&String> = got.difference(want).collect();
    format!(
        "{what}\n  in the .deb but not installed: {missing:#?}\n  installed but not in the .deb: {extra:#?}"
    )
}

/// `<dir>/<name>`: the checkout's files (symlinked) with placeholder binaries in target/,
/// where the recipes' build steps would have left the real ones.
fn staged_source(dir: &Path, name: &str) -> std::path::PathBuf {
    let tree = dir.join(name);
    fs::create_dir_all(&tree).expect("mkdir the staged tree");
    for entry in fs::read_dir(repo()).expect("the checkout") {
        let entry = entry.expect("an entry");
        let file = entry.file_name();
        if file == "target" || file == ".git" {
            continue;
        }
        symlink(entry.path(), tree.join(&file)).expect("symlink into the staged tree");
    }
    for profile in ["release", "rpm"] {
        let out = tree.join("target").join(profile);
        fs::create_dir_all(&out).expect("mkdir target/");
        for bin in BINARIES {
            fs::write(out.join(bin), b"#!/bin/sh\n").expect("a placeholder binary");
        }
    }
    tree
}

#[test]
fn pkgbuild_installs_exactly_the_files_of_the_deb() {
    let pkgbuild = repo().join("packaging/arch/PKGBUILD");
    // makepkg itself reads it (as an unprivileged user: it refuses root) and prints its
    // metadata, which must name this version and the runtime dependencies.
    let work = tempfile::tempdir().expect("a temporary directory");
    fs::copy(&pkgbuild, work.path().join("PKGBUILD")).expect("copy the PKGBUILD");
    ok(Command::new("chown")
        .arg("-R")
        .arg("nobody")
        .arg(work.path()));
    let srcinfo = ok(Command::new("runuser")
        .args(["-u", "nobody", "--", "makepkg", "--printsrcinfo"])
        .current_dir(work.path()));
    let fields: Vec<(&str, &str)> = srcinfo
        .lines()
        .filter_map(|l| l.trim().split_once(" = "))
        .collect();
    // AUR takes the metadata from the committed .SRCINFO: it must say what the PKGBUILD says.
    let committed = fs::read_to_string(repo().join("packaging/arch/.SRCINFO"))
        .expect("packaging/arch/.SRCINFO");
    assert_eq!(
        committed, srcinfo,
        "packaging/arch/.SRCINFO is stale: regenerate it with makepkg --printsrcinfo"
    );
    let has = |k: &str, v: &str| fields.contains(&(k, v));
    assert!(has("pkgver", env!("CARGO_PKG_VERSION")), "{srcinfo}");
    assert!(has("depends", "fuse3"), "{srcinfo}");
    assert!(has("makedepends", "cargo"), "{srcinfo}");
    assert!(has("license", "GPL-2.0-or-later"), "{srcinfo}");

    // package(), run as makepkg would: in $srcdir, with $pkgdir empty.
    let srcdir = tempfile::tempdir().expect("srcdir");
    let pkgdir = tempfile::tempdir().expect("pkgdir");
    staged_source(
        srcdir.path(),
        &format!("umlkit-{}", env!("CARGO_PKG_VERSION")),
    );
    ok(Command::new("bash")
        .args(["-euc", "source \"$1\"; cd \"$srcdir\"; package", "package"])
        .arg(&pkgbuild)
        .env("srcdir", srcdir.path())
        .env("pkgdir", pkgdir.path())
        .current_dir(srcdir.path()));
    let installed: BTreeSet<String> = files_under(pkgdir.path())
        .iter()
        .map(|f| common_form(f))
        .collect();
    let want = deb_in_common_form();
    assert_eq!(
        want,
        installed,
        "{}",
        diff("PKGBUILD package()", &want, &installed)
    );
}

/// The spec with its macros expanded (`rpmspec -P`), split into its sections.
fn parsed_spec(buildroot: &Path) -> BTreeMap<String, String> {
    let mut cmd = Command::new("rpmspec");
    cmd.arg("-P");
    for (name, value) in FEDORA_MACROS {
        cmd.arg("--define").arg(format!("{name} {value}"));
    }
    cmd.arg("--define")
        .arg(format!("buildroot {}", buildroot.display()));
    let text = ok(cmd.arg(repo().join("packaging/rpm/umlkit.spec")));
    let mut sections = BTreeMap::new();
    let mut current = String::from("preamble");
    let mut body = String::new();
    for line in text.lines() {
        let word = line.split_whitespace().next().unwrap_or_default();
        if [
            "%description",
            "%prep",
            "%build",
            "%install",
            "%check",
            "%post",
            "%preun",
            "%files",
            "%changelog",
        ]
        .contains(&word)
        {
            sections.insert(std::mem::take(&mut current), std::mem::take(&mut body));
            current = word.to_owned();
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    sections.insert(current, body);
    sections
}

#[test]
fn rpm_spec_installs_and_lists_exactly_the_files_of_the_deb() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let buildroot = work.path().join("buildroot");
    fs::create_dir(&buildroot).expect("mkdir the buildroot");
    let spec = parsed_spec(&buildroot);
    let preamble = &spec["preamble"];
    let tag = |name: &str| {
        preamble
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name}: in the spec"))
            .to_owned()
    };
    assert_eq!(tag("Name"), "umlkit");
    assert_eq!(tag("Version"), env!("CARGO_PKG_VERSION"));
    assert!(tag("License").starts_with("GPL-2.0-or-later"));
    assert!(tag("Requires").contains("fuse3"));

    // %install, run as rpmbuild would: sh -e in the unpacked sources.
    let tree = staged_source(work.path(), "src");
    let install = &spec["%install"];
    ok(Command::new("sh")
        .args(["-ec", install])
        .env("RPM_BUILD_ROOT", &buildroot)
        .current_dir(&tree));
    let installed = files_under(&buildroot);

    // %files claims every installed file (rpmbuild fails on an unpackaged one) and each of its
    // lines matches something; %doc and %license name files of the sources, which rpmbuild
    // copies into the package's doc and license directories.
    let mut packaged = BTreeSet::new();
    let mut claimed = BTreeSet::new();
    for line in spec["%files"]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("%license") => {
                let names: Vec<&str> = words.collect();
                assert_eq!(names, RPM_LICENSES, "{line}");
                assert!(tree.join("LICENSE").is_file(), "no LICENSE in the sources");
            }
            Some("%doc") => {
                for name in words {
                    assert!(tree.join(name).is_file(), "%doc {name}: not in the sources");
                    packaged.insert(format!("/usr/share/doc/umlkit/{name}"));
                }
            }
            Some(pattern) => {
                let glob = format!("{}{pattern}", buildroot.display());
                let matched: Vec<&String> = installed
                    .iter()
                    .filter(|f| glob_match(&glob, &format!("{}{f}", buildroot.display())))
                    .collect();
                assert!(
                    !matched.is_empty(),
                    "%files line {line} matches no installed file"
                );
                claimed.extend(matched.iter().map(|f| f.to_string()));
                packaged.extend(matched.into_iter().cloned());
            }
            None => {}
        }
    }
    let unclaimed: Vec<&String> = installed.difference(&claimed).collect();
    assert!(
        unclaimed.is_empty(),
        "installed but not in %files: {unclaimed:?}"
    );

    let got: BTreeSet<String> = packaged.iter().map(|f| common_form(f)).collect();
    let want = deb_in_common_form();
    assert_eq!(
        want,
        got,
        "{}",
        diff("RPM %install and %files", &want, &got)
    );
}

#[test]
fn rpmlint_finds_nothing_unexplained_in_the_spec() {
    // Every filter in umlkit.rpmlintrc says why.
    let rpm = repo().join("packaging/rpm");
    let out = run_within(
        Command::new("rpmlint")
            .arg("-r")
            .arg(rpm.join("umlkit.rpmlintrc"))
            .arg(rpm.join("umlkit.spec"))
            .stdin(std::process::Stdio::null()),
        std::time::Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0 errors, 0 warnings"),
        "rpmlint: {}",
        show(&out)
    );
}

/// A shell-style glob (`*`, `?`) matched against a whole path; `*` does not cross `/`.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => t.first().is_some_and(|c| *c != b'/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[test]
fn glob_matching_follows_the_shell() {
    assert!(glob_match(
        "/usr/share/man/man1/uml-*.1*",
        "/usr/share/man/man1/uml-run.1"
    ));
    assert!(glob_match(
        "/usr/share/man/man1/uml-*.1*",
        "/usr/share/man/man1/uml-run.1.gz"
    ));
    assert!(!glob_match(
        "/usr/share/man/man1/uml-*.1*",
        "/usr/share/man/man1/uml.1"
    ));
    assert!(!glob_match("/usr/*/uml", "/usr/local/bin/uml"));
    assert!(glob_match("/a/b?", "/a/bc"));
    assert!(!glob_match("/a/b?", "/a/b/"));
}

#[test]
fn every_recipe_carries_the_workspace_version() {
    let version = env!("CARGO_PKG_VERSION");
    let changelog =
        fs::read_to_string(repo().join("packaging/debian/changelog")).expect("the changelog");
    assert!(
        changelog.starts_with(&format!("umlkit ({version}-1) ")),
        "packaging/debian/changelog's newest entry is not {version}-1"
    );
    let pkgbuild = fs::read_to_string(repo().join("packaging/arch/PKGBUILD")).expect("PKGBUILD");
    assert!(
        pkgbuild.lines().any(|l| l == format!("pkgver={version}")),
        "PKGBUILD's pkgver is not {version}"
    );
    let spec = fs::read_to_string(repo().join("packaging/rpm/umlkit.spec")).expect("the spec");
    assert!(
        spec.lines()
            .any(|l| l.starts_with("Version:") && l.split_whitespace().nth(1) == Some(version)),
        "the spec's Version is not {version}"
    );
    let rpm_changelog = spec.split("%changelog").nth(1).expect("a %changelog");
    assert!(
        rpm_changelog
            .lines()
            .find(|l| l.starts_with('*'))
            .is_some_and(|l| l.ends_with(&format!("- {version}-1"))),
        "the spec's newest %changelog entry is not {version}-1"
    );
}
