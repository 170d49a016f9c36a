//! The Debian test image that the distro tests of uml and umld boot: built once per machine
//! and recipe with `uml image create`, kept under `$XDG_CACHE_HOME/umlkit/test-images` (else
//! `~/.cache/umlkit/test-images`). Guests boot copies or COW files of it, never the cached file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The root password of the test image.
pub const TEST_IMAGE_PASSWORD: &str = "umlkit-test";

/// The recipe of the test image: `uml image create --hostname debtest --size 1G
/// --root-password … --include iputils-ping`.
pub fn test_image_recipe() -> uml::image::Recipe {
    uml::image::Recipe {
        distro: "debian".into(),
        suite: "bookworm".into(),
        size: "1G".into(),
        hostname: "debtest".into(),
        root_password: Some(TEST_IMAGE_PASSWORD.into()),
        ssh_key: None,
        mirror: None,
        packages: vec!["iputils-ping".into()],
    }
}

/// The cached test image, built with `uml` (the binary under test) when missing; one build at
/// a time per machine (an flock on a file next to it). The build's time and size are printed.
///
/// # Panics
/// When the image cannot be built: every distro test would fail anyway.
pub fn test_image(uml: &Path) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("umlkit/test-images");
    std::fs::create_dir_all(&cache).unwrap();
    let r = test_image_recipe();
    let path = cache.join(format!("{}.img", r.cache_key()));
    let lock = std::fs::File::create(cache.join(".lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .expect("lock the image cache");
    if !path.exists() {
        let start = Instant::now();
        let out = Command::new(uml)
            .args([
                "image", "create", "--distro", &r.distro, "--suite", &r.suite,
            ])
            .args(["--size", &r.size, "--hostname", &r.hostname])
            .args(["--root-password", TEST_IMAGE_PASSWORD])
            .args(["--include", "iputils-ping"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "uml image create failed:\n{text}");
        assert!(text.contains("[1/2]") && text.contains("[2/2]"), "{text}");
        println!(
            "uml image create: {:.1} s, {} MB used",
            start.elapsed().as_secs_f64(),
            used_mb(&path)
        );
    }
    path
}

/// The megabytes a (sparse) file really holds.
pub fn used_mb(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| (m.blocks() * 512) >> 20)
        .unwrap_or(0)
}
