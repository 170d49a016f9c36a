//! `uml kernel info|list|use|build` against real kernels: Debian's packaged 6.1 and a 7.x kernel
//! built by `uml kernel build` (scripts/install-deps builds one on every machine).
//!
//! A profile needs no boot, so the packaged kernel is profiled even on a host where it cannot
//! run a process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `uml ARGS…` with the given environment (XDG directories, kernel), bounded in time.
fn uml(env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uml"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("UML_KERNEL");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd.spawn().expect("cannot run the uml binary");
    // `uml kernel build` compiles a kernel: minutes on 2 cores the first time, seconds after.
    testkit::output_within(child, Duration::from_secs(1500), &format!("uml {args:?}"))
}

fn show(args: &[&str], out: &Output) -> String {
    testkit::show_output(&format!("uml {args:?}"), out)
}

/// A 7.x kernel built by `uml kernel build` for this user: the test kernel when it is one,
/// else the newest one `uml kernel list` has.
fn built_7x() -> PathBuf {
    if let Some(k) = std::env::var_os("UML_KERNEL").map(PathBuf::from)
        && Command::new(&k)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"7."))
    {
        return k;
    }
    uml::kernel::installed()
        .into_iter()
        .find(|k| k.version.major >= 7)
        .map(|k| k.path)
        .expect("no 7.x kernel built by `uml kernel build`: run scripts/install-deps")
}

/// Debian's packaged kernel (`user-mode-linux`, which scripts/install-deps installs).
fn packaged() -> PathBuf {
    uml::kernel::packaged().expect("no packaged kernel (linux.uml): run scripts/install-deps")
}

fn info_json(kernel: &Path, cache: &Path) -> serde_json::Value {
    let args = ["kernel", "info", "--json", kernel.to_str().unwrap()];
    let out = uml(&[("XDG_CACHE_HOME", cache)], &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn packaged_kernel_profile_has_the_legacy_transports() {
    let cache = tempfile::tempdir().unwrap();
    let kernel = packaged();
    let profile = info_json(&kernel, cache.path());
    let release = String::from_utf8(
        Command::new(&kernel)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(profile["release"], release.trim());
    let config = &profile["config"];
    if profile["version"]["major"].as_u64() < Some(7) {
        // Debian's 6.x builds carry both network drivers.
        for symbol in [
            "UML_NET",
            "UML_NET_DAEMON",
            "UML_NET_TUNTAP",
            "UML_NET_VECTOR",
        ] {
            assert_eq!(config[symbol], "y", "{symbol} in {profile}");
        }
    } else {
        assert!(config.get("UML_NET_DAEMON").is_none(), "{profile}");
    }
    assert_eq!(config["HOSTFS"], "y");
    assert_eq!(config["MCONSOLE"], "y");
    println!("profiled {} ({})", kernel.display(), release.trim());
}

#[test]
fn built_kernel_profile_has_only_the_vector_driver_and_what_umlkit_configures() {
    let cache = tempfile::tempdir().unwrap();
    let kernel = built_7x();
    let profile = info_json(&kernel, cache.path());
    assert_eq!(profile["version"]["major"], 7, "{profile}");
    let config = &profile["config"];
    assert!(
        config.get("UML_NET").is_none(),
        "7.x has no eth<n>= transports: {profile}"
    );
    assert!(config.get("UML_NET_DAEMON").is_none(), "{profile}");
    // The fragment of `uml kernel build`, read back from the kernel itself.
    for symbol in [
        "UML_NET_VECTOR",
        "HOSTFS",
        "BLK_DEV_UBD",
        "MCONSOLE",
        "MAGIC_SYSRQ",
        "UML_WATCHDOG",
        "SECCOMP",
        "VIRTIO_UML",
        "EXT4_FS",
        "DEVTMPFS",
    ] {
        assert_eq!(config[symbol], "y", "{symbol} in {profile}");
    }
    assert!(
        config.get("MODULES").is_none(),
        "built without modules: {profile}"
    );

    // The text form says the same.
    let args = ["kernel", "info", kernel.to_str().unwrap()];
    let out = uml(&[("XDG_CACHE_HOME", cache.path())], &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("eth<n>=:    no (no legacy network transports)"),
        "{text}"
    );
    assert!(text.contains("vec<n>:     yes"), "{text}");
}

#[test]
fn profiles_are_cached_by_the_binarys_identity() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("linux");
    std::fs::copy(built_7x(), &copy).unwrap();
    let first = info_json(&copy, cache.path());
    let files: Vec<_> = std::fs::read_dir(cache.path().join("umlkit/kernel-profiles"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1, "one cached profile");

    // Asked again, the cached profile is used: a doctored cache entry shows through...
    let entry = files[0].path();
    let doctored = std::fs::read_to_string(&entry)
        .unwrap()
        .replace(first["release"].as_str().unwrap(), "7.99.1");
    std::fs::write(&entry, doctored).unwrap();
    assert_eq!(info_json(&copy, cache.path())["release"], "7.99.1");

    // ...until the binary changes (a new build at the same path): then it is asked again.
    let bytes = std::fs::read(&copy).unwrap();
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(info_json(&copy, cache.path())["release"], first["release"]);
}

#[test]
fn what_is_not_a_uml_kernel_is_refused_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated-linux");
    let head: Vec<u8> = std::fs::read(built_7x()).unwrap()[..200_000].to_vec();
    std::fs::write(&truncated, head).unwrap();
    let sleeper = dir.path().join("sleeper");
    std::fs::write(&sleeper, "#!/bin/sh\nsleep 100\n").unwrap();
    let bzimage = dir.path().join("bzImage");
    std::fs::write(&bzimage, b"MZ\x00\x00not an ELF at all").unwrap();
    for perm in [&truncated, &sleeper, &bzimage] {
        std::fs::set_permissions(perm, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let cases: [(&Path, &str); 5] = [
        (Path::new("/bin/true"), "not a kernel release"),
        (dir.path(), "it is a directory"),
        (&truncated, "is not a UML kernel"),
        (&sleeper, "did not finish within"),
        (&bzimage, "Exec format error"),
    ];
    for (path, expected) in cases {
        let args = ["kernel", "info", path.to_str().unwrap()];
        let started = Instant::now();
        let out = uml(&[("XDG_CACHE_HOME", dir.path())], &args);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{}", show(&args, &out));
        assert!(
            err.contains(&*path.display().to_string()),
            "names the file: {err}"
        );
        assert!(took < Duration::from_millis(1500), "{path:?} took {took:?}");
    }
}

#[test]
fn kernel_use_sets_the_default_and_uml_kernel_overrides_it() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let env = [
        ("XDG_CONFIG_HOME", config.as_path()),
        ("XDG_CACHE_HOME", home.path()),
    ];
    let kernel = built_7x();
    let args = ["kernel", "use", kernel.to_str().unwrap()];
    let out = uml(&env, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    let out = uml(&env, &["kernel", "info", "--json"]);
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["path"], kernel.to_str().unwrap());

    let packaged = packaged();
    let mut env_k = env.to_vec();
    env_k.push(("UML_KERNEL", packaged.as_path()));
    let out = uml(&env_k, &["kernel", "info", "--json"]);
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["path"], packaged.to_str().unwrap());

    let args = ["kernel", "use", "/bin/true"];
    let out = uml(&env, &args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    let written = std::fs::read_to_string(config.join("umlkit/kernel")).unwrap();
    assert_eq!(
        written.trim(),
        kernel.to_str().unwrap(),
        "a refused kernel is not made the default"
    );
}

#[test]
fn sources_that_cannot_build_a_uml_kernel_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("XDG_CACHE_HOME", dir.path()),
        ("XDG_DATA_HOME", dir.path()),
    ];
    // A tree too old for umlkit, packed the way kernel tarballs are.
    let old = dir.path().join("linux-5.4");
    std::fs::create_dir_all(old.join("arch/um")).unwrap();
    std::fs::write(old.join("arch/um/Kconfig"), "").unwrap();
    std::fs::write(
        old.join("Makefile"),
        "VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 1\n",
    )
    .unwrap();
    let tarball = dir.path().join("linux-5.4.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path())
        .arg("linux-5.4")
        .status()
        .unwrap();
    assert!(status.success());
    // Another architecture's tree: no arch/um.
    let other = dir.path().join("not-um");
    std::fs::create_dir_all(other.join("arch/arm64")).unwrap();
    std::fs::write(other.join("Makefile"), "VERSION = 7\nPATCHLEVEL = 2\n").unwrap();
    let cases: [(&Path, &str); 4] = [
        (
            &tarball,
            "is Linux 5.4.1; `uml kernel build` needs 6.1.0 or newer",
        ),
        (&other, "it has no arch/um"),
        (
            Path::new("/etc/passwd"),
            "not a directory, nor a file named .tar",
        ),
        (
            Path::new("/nonexistent/linux.tar.xz"),
            "/nonexistent/linux.tar.xz",
        ),
    ];
    for (source, expected) in cases {
        let args = ["kernel", "build", source.to_str().unwrap()];
        let out = uml(&env, &args);
        assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{}", show(&args, &out));
    }
    assert!(uml::kernel::installed_in(&dir.path().join("umlkit/kernels")).is_empty());
}

/// `uml kernel build` on Debian's real linux-source-7.x tarball (fetched by scripts/install-deps,
/// its path in `UMLKIT_KERNEL_SOURCE`), installed into a fresh data directory, then booted: the
/// guest runs a command and reports the release the profile names. The build directory is
/// the one install-deps kept, so this is an incremental build (seconds) after the first.
#[test]
fn a_kernel_built_from_debian_source_boots_and_runs_a_command() {
    let source = std::env::var_os("UMLKIT_KERNEL_SOURCE")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            let dir = cache.join("umlkit/debian/usr/src");
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".tar.xz"))
                .collect();
            found.sort();
            found.pop()
        })
        .expect(
            "no linux-source-7.x tarball: run scripts/install-deps (or set UMLKIT_KERNEL_SOURCE)",
        );
    let data = tempfile::tempdir().unwrap();
    let uml_dir = testkit::UmlDir::new();
    let env = [("XDG_DATA_HOME", data.path())];
    let args = ["kernel", "build", "--keep-build", source.to_str().unwrap()];
    let out = uml(&env, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed = uml::kernel::installed_in(&data.path().join("umlkit/kernels"));
    assert_eq!(installed.len(), 1, "{stdout}");
    let kernel = &installed[0];
    assert!(
        stdout.contains(&format!("built {}", kernel.release)),
        "{stdout}"
    );
    assert!(
        kernel.path.with_file_name("config").is_file(),
        "the config is kept beside it"
    );

    // `--kernel 7.2` finds it by series in that data directory, and the guest runs a command.
    let series = format!("{}.{}", kernel.version.major, kernel.version.minor);
    let args = [
        "--uml-dir",
        uml_dir.path().to_str().unwrap(),
        "run",
        "--kernel",
        &series,
        "--",
        "sh",
        "-c",
        "uname -r; echo ran-in-guest",
    ];
    let out = uml(&env, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ran-in-guest"), "{}", show(&args, &out));
    assert!(
        stdout
            .lines()
            .next()
            .unwrap_or("")
            .starts_with(&kernel.release),
        "{stdout}"
    );
}
