//! Unit tests of the view, driven without mounting.

use super::*;

fn host_view(dir: &Path, pres: Presentation) -> View {
    let mounts = vec![ViewMount {
        id: 0,
        point: "/".into(),
        kind: ViewKind::Host {
            dir: dir.to_owned(),
        },
    }];
    View::new(Vec::new(), mounts, "/", pres).unwrap()
}

#[test]
fn uid_and_gid_options_leave_host_files_to_their_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("shadow");
    fs::write(&secret, b"root:x").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let md = fs::symlink_metadata(&secret).unwrap();
    let view = host_view(
        tmp.path(),
        Presentation {
            uid: Some(md.uid() + 4242),
            gid: Some(md.gid() + 4242),
            ..Presentation::default()
        },
    );
    let (_, a) = view.lookup_in(1, "/", OsStr::new("shadow")).unwrap();
    assert_eq!((a.uid, a.gid), (md.uid(), md.gid()));
    assert_eq!(a.perm, 0o600);
    let root = view.attr(1).unwrap();
    assert_eq!(root.uid, fs::metadata(tmp.path()).unwrap().uid());
}

fn names(view: &View, id: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    view.list(id, 0, true, |_, name, _, _, _| {
        out.push(name.as_bytes().to_vec());
        true
    })
    .unwrap();
    out
}

#[test]
fn non_utf8_names_are_listed_and_looked_up_on_host_and_ext_nodes() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let odd = OsStr::from_bytes(b"caf\xe9-\xff");
    fs::write(tree.join(odd), b"odd").unwrap();
    fs::write(tree.join("plain"), b"plain").unwrap();

    // hostfs: the name used to be dropped from listings.
    let view = host_view(&tree, Presentation::default());
    assert!(
        names(&view, 1)
            .iter()
            .any(|n| n.as_slice() == odd.as_bytes())
    );
    let (id, a) = view.lookup_in(1, "/", odd).unwrap();
    assert_eq!(a.size, 3);
    assert_eq!(view.read(id, 0, 100).unwrap(), b"odd");

    // ext: listed, but a lookup gave ENOENT.
    let img = tmp.path().join("fs.img");
    let st = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("8M")
        .status()
        .unwrap();
    assert!(st.success());
    let src: Image = Arc::new(fs::File::open(&img).unwrap());
    let disk = Disk::new(
        "t".into(),
        Vec::new(),
        src.clone(),
        Filesystem::open(src).unwrap(),
    );
    let mounts = vec![ViewMount {
        id: 0,
        point: "/".into(),
        kind: ViewKind::Ext {
            disk: 0,
            root_ino: crate::ext::ROOT_INO,
        },
    }];
    let view = View::new(vec![disk], mounts, "/", Presentation::default()).unwrap();
    assert!(
        names(&view, 1)
            .iter()
            .any(|n| n.as_slice() == odd.as_bytes())
    );
    let (id, _) = view.lookup_in(1, "/", odd).unwrap();
    assert_eq!(view.read(id, 0, 100).unwrap(), b"odd");
}

#[test]
fn a_host_directory_swapped_for_a_symlink_after_lookup_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("dir/file"), b"inside").unwrap();
    fs::write(outside.join("file"), b"SECRET").unwrap();
    let view = host_view(&root, Presentation::default());
    let (dir, _) = view.lookup_in(1, "/", OsStr::new("dir")).unwrap();
    let (file, _) = view.lookup_in(dir, "/dir", OsStr::new("file")).unwrap();
    assert_eq!(view.read(file, 0, 100).unwrap(), b"inside");

    fs::rename(root.join("dir"), root.join("dir.old")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dir")).unwrap();
    let read = view.read(file, 0, 100);
    assert!(read.is_err(), "read through the swapped symlink: {read:?}");
    assert!(view.attr(file).is_err());
    let mut listed = Vec::new();
    let _ = view.list(dir, 0, false, |_, n, _, _, _| {
        listed.push(n.to_owned());
        true
    });
    assert!(listed.len() <= 2, "listed the symlink's target: {listed:?}");
    // A symlink is shown as itself, its target read with readlink.
    let (link, a) = view.lookup_in(1, "/", OsStr::new("dir")).unwrap();
    assert_eq!(a.kind, FileType::Symlink);
    assert_eq!(view.readlink(link).unwrap(), outside.as_os_str().as_bytes());
}

/// Every chunk of a host directory's listing re-read and sorted the whole directory
/// (quadratic in its size); now the first chunk's names serve the rest.
#[test]
fn a_host_directory_listed_in_chunks_is_read_once_and_lists_every_name_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut want: Vec<String> = (0..3000).map(|i| format!("f{i:05}")).collect();
    for n in &want {
        fs::write(tmp.path().join(n), b"").unwrap();
    }
    let view = host_view(tmp.path(), Presentation::default());
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let mut n = 0;
        view.list(1, offset, false, |next, name, _, _, _| {
            if n == 100 {
                return false;
            }
            n += 1;
            seen.push(name.to_string_lossy().into_owned());
            offset = next;
            true
        })
        .unwrap();
        if n == 0 {
            break;
        }
        // Created mid-listing: the listing goes on from the names it read at its start.
        fs::write(tmp.path().join("a-late-file"), b"").unwrap();
    }
    let mut all = vec![".".to_owned(), "..".to_owned()];
    all.append(&mut want);
    assert_eq!(seen, all);
    // A new listing (offset 0) reads the directory again.
    assert!(names(&view, 1).iter().any(|n| n == b"a-late-file"));
}

/// Entries and attributes live as long as a generation; a new one forgets what changed
/// from what the kernel was told: the changed nodes, and the names in a changed
/// directory that now lead elsewhere (here: one unlinked while another stays).
#[test]
fn a_new_generation_forgets_changed_nodes_and_names_that_lead_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("gone.txt"), b"gone").unwrap();
    fs::write(src.join("stays.txt"), b"stays").unwrap();
    let img = tmp.path().join("fs.img");
    let run = |args: &[&str]| {
        let st = std::process::Command::new(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    let (src_s, img_s) = (src.to_str().unwrap(), img.to_str().unwrap());
    run(&["mke2fs", "-q", "-F", "-t", "ext4", "-d", src_s, img_s, "8M"]);
    let src_img: Image = Arc::new(fs::File::open(&img).unwrap());
    let disk = Disk::new(
        "t".into(),
        Vec::new(),
        src_img.clone(),
        Filesystem::open(src_img).unwrap(),
    );
    let mounts = vec![ViewMount {
        id: 0,
        point: "/".into(),
        kind: ViewKind::Ext {
            disk: 0,
            root_ino: crate::ext::ROOT_INO,
        },
    }];
    let view = View::new(vec![disk], mounts, "/", Presentation::default()).unwrap();
    view.attr(1).unwrap();
    let (gone, _) = view.lookup_in(1, "/", OsStr::new("gone.txt")).unwrap();
    let (stays, _) = view.lookup_in(1, "/", OsStr::new("stays.txt")).unwrap();
    assert!(view.lasts_a_generation(gone));
    // Nothing changed: nothing to forget.
    assert_eq!(view.refresh_disk(0).unwrap(), Forget::default());
    // As a guest kernel would: the name goes, the directory's times change.
    run(&["debugfs", "-w", "-R", "unlink gone.txt", img_s]);
    run(&["debugfs", "-w", "-R", "sif / mtime 20300101000000", img_s]);
    let forget = view.refresh_disk(0).unwrap();
    assert_eq!(forget.entries, vec![(1, OsString::from("gone.txt"))]);
    assert!(forget.nodes.contains(&1), "{forget:?}");
    assert!(!forget.nodes.contains(&stays), "{forget:?}");
    assert!(view.lookup_in(1, "/", OsStr::new("gone.txt")).is_err());
    // Told once: the next comparison finds nothing new.
    view.attr(1).unwrap();
    assert_eq!(view.recheck_disk(0), Forget::default());
    // The name that stayed is still remembered: its own removal later is forgotten too.
    run(&["debugfs", "-w", "-R", "unlink stays.txt", img_s]);
    run(&["debugfs", "-w", "-R", "sif / mtime 20310101000000", img_s]);
    let forget = view.refresh_disk(0).unwrap();
    assert_eq!(forget.entries, vec![(1, OsString::from("stays.txt"))]);
}

/// The guest mounts something on a directory the kernel has seen, then unmounts it: the
/// view shows the mount, and says which entry and listing the kernel must forget.
#[test]
fn a_mount_coming_and_going_is_shown_and_its_entry_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("a")).unwrap();
    fs::write(tmp.path().join("a/host-file"), b"x").unwrap();
    let root = ViewMount {
        id: 1,
        point: "/".into(),
        kind: ViewKind::Host {
            dir: tmp.path().to_owned(),
        },
    };
    let mut view = View::new(Vec::new(), vec![root.clone()], "/", Presentation::default()).unwrap();
    view.follow();
    let listing = |view: &View| {
        let (a, _) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
        let n = names(view, a);
        view.unref(a, 1);
        n
    };
    assert_eq!(listing(&view).len(), 3);
    let (a, _) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
    let tmpfs = ViewMount {
        id: 7,
        point: "/a".into(),
        kind: ViewKind::Opaque {
            what: "a tmpfs mount".into(),
        },
    };
    let forget = view.apply_mounts(vec![root.clone(), tmpfs.clone()]);
    assert_eq!(forget.entries, vec![(1, OsString::from("a"))]);
    assert_eq!(forget.nodes, vec![1]);
    let (b, attr) = view.lookup_in(1, "/", OsStr::new("a")).unwrap();
    assert_ne!(a, b, "the mount is a new node");
    assert_eq!(attr.kind, FileType::Directory);
    assert_eq!(listing(&view), vec![b".".to_vec(), b"..".to_vec()]);
    assert_eq!(
        view.opaque_mounts(),
        vec![("/a".to_owned(), "a tmpfs mount".to_owned())]
    );
    // The same table again changes nothing.
    assert_eq!(
        view.apply_mounts(vec![root.clone(), tmpfs]),
        Forget::default()
    );
    // Unmounted: the host directory shows again.
    let forget = view.apply_mounts(vec![root]);
    assert_eq!(forget.entries, vec![(1, OsString::from("a"))]);
    assert_eq!(listing(&view).len(), 3);
    assert!(view.opaque_mounts().is_empty());
}

#[test]
fn a_top_on_no_disk_with_nothing_below_is_refused_saying_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("var")).unwrap();
    let mounts = vec![
        ViewMount {
            id: 1,
            point: "/".into(),
            kind: ViewKind::Host {
                dir: tmp.path().to_owned(),
            },
        },
        ViewMount {
            id: 2,
            point: "/var/log".into(),
            kind: ViewKind::Opaque {
                what: "a tmpfs mount".into(),
            },
        },
    ];
    let e = View::new(
        Vec::new(),
        mounts.clone(),
        "/var/log",
        Presentation::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"/var/log\" is on a tmpfs mount, not on a disk: the host cannot see its files \
         (umlfs shows ubd disks and hostfs directories)"
    );
    // Its parent is shown, with the tmpfs as an empty directory.
    let view = View::new(Vec::new(), mounts, "/var", Presentation::default()).unwrap();
    assert_eq!(view.opaque_mounts().len(), 1);
}

#[test]
fn tables_hold_only_what_the_kernel_references() {
    let tmp = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let dir = tmp.path().join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..50 {
            fs::write(dir.join(format!("f{f}")), b"x").unwrap();
        }
    }
    let view = host_view(tmp.path(), Presentation::default());
    let base = view.table_len();
    for round in 0..3 {
        // A READDIR (no references) and a lookup of every name (one each), then the
        // kernel forgets them all, as after `find` and a cache drop.
        let mut taken = Vec::new();
        for d in 0..20 {
            let (dir, _) = view
                .lookup_in(1, "/", OsStr::new(&format!("d{d}")))
                .unwrap();
            let mut n = 0;
            view.list(dir, 0, false, |_, _, _, _, _| {
                n += 1;
                true
            })
            .unwrap();
            assert_eq!(n, 52);
            for f in 0..50 {
                let (id, _) = view
                    .lookup_in(dir, "/", OsStr::new(&format!("f{f}")))
                    .unwrap();
                taken.push(id);
            }
            taken.push(dir);
        }
        assert!(view.table_len() > base + 1000, "round {round}");
        for id in taken {
            view.unref(id, 1);
        }
        assert_eq!(view.table_len(), base, "round {round}");
    }
    // The root survives any number of forgets.
    view.unref(1, 100);
    assert!(view.attr(1).is_ok());
}

/// `ls -l` asks every file for `security.selinux` and its ACL. Where nothing carries labels
/// (here a hostfs node), a missing label is EOPNOTSUPP (`ls` then stops asking for the
/// whole mount); a missing ACL stays ENODATA, which the kernel caches as "no ACL" (an
/// EOPNOTSUPP there would fail its permission checks).
#[test]
fn missing_labels_are_unsupported_where_nothing_is_labelled_and_missing_acls_are_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), b"x").unwrap();
    let view = host_view(tmp.path(), Presentation::default());
    let (f, _) = view.lookup_in(1, "/", OsStr::new("f")).unwrap();
    assert_eq!(view.xattr(f, b"security.selinux"), Err(Errno::EOPNOTSUPP));
    assert_eq!(view.xattr(f, b"system.posix_acl_access"), Ok(None));
    assert_eq!(view.xattr(f, b"user.any"), Ok(None));
    assert_eq!(view.xattr_names(f), Ok(Vec::new()));
}
