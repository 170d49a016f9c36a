//! Composition: the guest's mounts as the view shows them, following its mount table, and
//! the walk to the top.

use super::*;

/// At most this many mounts are ever shown by one view (a guest mounting and unmounting in
/// a loop stops being followed there).
pub(super) const MAX_MOUNTS: usize = 4096;

/// The mounts a view composes, replaced as a whole when the guest's mount table changes.
/// Mount indexes are never reused (ext node ids carry them): a mount the guest unmounted
/// stays in `mounts`, inactive, so what the kernel still holds of it keeps working.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) mounts: Vec<ViewMount>,
    pub(super) active: Vec<bool>,
    /// Per mount: for a hostfs mount, its directory opened (`O_PATH`) before the FUSE
    /// session exists (or by the thread following the guest), and the path its nodes' paths
    /// start with.
    pub(super) host_roots: Vec<Option<Arc<(OwnedFd, PathBuf)>>>,
    /// Every proper ancestor of an active mount point (under the top) → names leading
    /// towards it.
    pub(super) below: HashMap<String, BTreeSet<String>>,
}

impl Layout {
    pub(super) fn new(
        top: &str,
        mounts: Vec<ViewMount>,
        active: Vec<bool>,
        mut host_roots: Vec<Option<Arc<(OwnedFd, PathBuf)>>>,
    ) -> Layout {
        let mut below: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (m, _) in mounts.iter().zip(&active).filter(|(_, a)| **a) {
            if !is_under(&m.point, top) || m.point == top {
                continue;
            }
            let mut cur = m.point.as_str();
            while let Some((parent, name)) = cur.rsplit_once('/') {
                let parent = if parent.is_empty() { "/" } else { parent };
                below
                    .entry(parent.to_owned())
                    .or_default()
                    .insert(name.to_owned());
                if parent == "/" || parent == top {
                    break;
                }
                cur = parent;
            }
        }
        for m in &mounts[host_roots.len()..] {
            host_roots.push(match &m.kind {
                ViewKind::Host { dir } => nix::fcntl::open(
                    dir.as_path(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .ok()
                .map(|fd| Arc::new((fd, dir.clone()))),
                _ => None,
            });
        }
        Layout {
            mounts,
            active,
            host_roots,
            below,
        }
    }

    /// The innermost active mount at `path`: the last one in mount order.
    pub(super) fn mount_at(&self, path: &str) -> Option<usize> {
        (0..self.mounts.len())
            .rev()
            .find(|&i| self.active[i] && self.mounts[i].point == path)
    }
}

/// At most this many names under the FUSE root are forgotten when the top changes.
pub(super) const NAMES_LIMIT: usize = 1 << 20;

/// The innermost active mount holding guest path `top` (the last of the longest points).
fn top_mount(layout: &Layout, top: &str) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, m) in layout.mounts.iter().enumerate() {
        if layout.active[i]
            && is_under(top, &m.point)
            && best.is_none_or(|b| m.point.len() >= layout.mounts[b].point.len())
        {
            best = Some(i);
        }
    }
    best
}

impl View {
    /// What the mount holding the top shows.
    pub fn top_kind(&self) -> Option<ViewKind> {
        let layout = self.layout();
        Some(layout.mounts[top_mount(&layout, &self.top)?].kind.clone())
    }

    /// Track directory paths from now on, as a view that follows the guest's mount table
    /// must (a mount may come below any directory).
    pub fn follow(&mut self) {
        if !self.nested {
            self.nested = true;
            let root = self.root();
            self.remember_dir(root, &self.top.clone());
        }
    }

    pub(super) fn layout(&self) -> Arc<Layout> {
        self.layout
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The mounts of the view that show nothing (not on a disk, not hostfs), as
    /// (guest path, what it is), for telling the user.
    pub fn opaque_mounts(&self) -> Vec<(String, String)> {
        let l = self.layout();
        l.mounts
            .iter()
            .zip(&l.active)
            .filter(|(m, a)| **a && is_under(&m.point, &self.top))
            .filter_map(|(m, _)| match &m.kind {
                ViewKind::Opaque { what } => Some((m.point.clone(), what.clone())),
                _ => None,
            })
            .collect()
    }

    /// Take the guest's mount table as it is now (`mounts`, in mount order): mounts that
    /// stay keep their nodes, new ones are shown, gone ones are hidden. Returns what the
    /// kernel must forget so that a mount appears and disappears at once.
    pub fn apply_mounts(&self, mounts: Vec<ViewMount>) -> Forget {
        let old = self.layout();
        let mut all = old.mounts.clone();
        let mut active = vec![false; all.len()];
        for m in mounts {
            let same = (0..old.mounts.len()).find(|&i| {
                old.active[i]
                    && !active[i]
                    && old.mounts[i].id == m.id
                    && old.mounts[i].point == m.point
                    && old.mounts[i].kind == m.kind
            });
            match same {
                Some(i) => active[i] = true,
                None if all.len() < MAX_MOUNTS => {
                    all.push(m);
                    active.push(true);
                }
                None => tracing::warn!(
                    point = %m.point,
                    "the guest mounted more than {MAX_MOUNTS} filesystems: not shown"
                ),
            }
        }
        let changed: Vec<String> = (0..all.len())
            .filter(|&i| old.active.get(i).copied().unwrap_or(false) != active[i])
            .map(|i| all[i].point.clone())
            .filter(|p| is_under(p, &self.top))
            .collect();
        let mut forget = Forget::default();
        if changed.is_empty() {
            return forget;
        }
        let layout = Layout::new(&self.top, all, active, old.host_roots.clone());
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(layout);
        let old_root = self.root();
        match self.resolve_top() {
            Ok(root) if root != old_root => {
                self.root_id.store(root, Ordering::Relaxed);
                forget.nodes.push(1);
                // Every name under the FUSE root may now lead elsewhere.
                let mut names = BTreeSet::new();
                for id in [old_root, root] {
                    let _ = self.list(id, 0, false, |_, name, _, _, _| {
                        if name != "." && name != ".." {
                            names.insert(name.to_owned());
                        }
                        names.len() < NAMES_LIMIT
                    });
                }
                forget.entries.extend(names.into_iter().map(|n| (1, n)));
            }
            Ok(root) => self.unref(root, 1),
            // The top is gone (unmounted, or no longer a directory): keep showing the last.
            Err(e) => tracing::info!("the view's top cannot be reached now: {e}"),
        }
        // The mount point's entry, and every step leading to it from the top (a missing
        // name is cached too, and the way to a new mount may lead through one).
        let mut steps = BTreeSet::new();
        for point in changed {
            let mut cur = point.as_str();
            while cur != self.top && is_under(cur, &self.top) {
                let Some((parent, name)) = cur.rsplit_once('/') else {
                    break;
                };
                let parent = if parent.is_empty() { "/" } else { parent };
                if !name.is_empty() {
                    steps.insert((parent.to_owned(), name.to_owned()));
                }
                cur = parent;
            }
        }
        for (parent, name) in steps {
            for id in self.dirs_at(&parent) {
                forget.entries.push((id, OsString::from(&name)));
                forget.nodes.push(id);
            }
        }
        forget.entries.sort();
        forget.entries.dedup();
        forget.nodes.sort_unstable();
        forget.nodes.dedup();
        forget
    }

    /// The node ids the kernel knows for guest directory `path`.
    pub(super) fn dirs_at(&self, path: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.dir_paths
                .iter()
                .filter(|(_, p)| p.as_str() == path)
                .map(|(id, _)| *id)
                .collect()
        };
        if path == self.top {
            ids.push(1);
        }
        let root = self.root();
        for id in &mut ids {
            if *id == root {
                *id = 1;
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The innermost mount at or above `path`: the last one in mount order.
    pub(super) fn mount_at(&self, path: &str) -> Option<usize> {
        self.layout().mount_at(path)
    }

    /// Walk from the mount that holds `top` down to it.
    pub(super) fn resolve_top(&self) -> Result<u64, ViewError> {
        let layout = self.layout();
        let m = top_mount(&layout, &self.top).ok_or(ViewError::NoRoot)?;
        // A top inside a mount the host cannot see, with nothing mounted below it, would
        // be a silently empty directory.
        if let ViewKind::Opaque { what } = &layout.mounts[m].kind
            && !layout.below.contains_key(&self.top)
        {
            return Err(ViewError::NotOnDisk {
                path: self.top.clone(),
                what: what.clone(),
            });
        }
        let mut id = self.mount_root(m);
        let mut path = layout.mounts[m].point.clone();
        let rest = self.top[path.len()..].to_owned();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            let (child, attr) = self.lookup_in(id, &path, OsStr::new(comp)).map_err(|e| {
                if e == Errno::ENOENT {
                    ViewError::NoSuchPath {
                        path: self.top.clone(),
                    }
                } else {
                    ViewError::Read {
                        path: self.top.clone(),
                        reason: format!("errno {e:?}"),
                    }
                }
            })?;
            if attr.kind != FileType::Directory {
                return Err(ViewError::NotADirectory {
                    path: self.top.clone(),
                });
            }
            path = join(&path, comp);
            self.unref(id, 1);
            id = child;
        }
        let attr = self.attr(id).map_err(|e| ViewError::Read {
            path: self.top.clone(),
            reason: format!("errno {e:?}"),
        })?;
        if attr.kind != FileType::Directory {
            return Err(ViewError::NotADirectory {
                path: self.top.clone(),
            });
        }
        self.remember_dir(id, &self.top);
        Ok(id)
    }

    pub(super) fn mount_root(&self, m: usize) -> u64 {
        let layout = self.layout();
        let mount = &layout.mounts[m];
        match &mount.kind {
            ViewKind::Ext { root_ino, .. } => {
                let id = ext_id(m, *root_ino);
                self.remember_ext(id);
                id
            }
            ViewKind::Opaque { .. } => self.synth_id(&mount.point),
            ViewKind::Host { dir } => match self.host_lstat(m, dir) {
                Ok(md) if md.is_dir() => self.host_id(m, dir, &md),
                _ => self.synth_id(&mount.point),
            },
        }
    }

    /// The node a guest path shows when something is mounted on it or it leads to a mount.
    pub(super) fn mounted(&self, path: &str) -> Option<u64> {
        if let Some(m) = self.mount_at(path) {
            return Some(self.mount_root(m));
        }
        None
    }
}
