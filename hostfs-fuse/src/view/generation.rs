//! Generations: a disk re-opened when its image changes, and what the kernel must forget.

use super::*;

impl View {
    /// Start a new generation of disk `d`: re-open its filesystem (the journal is read again)
    /// and return what the kernel must forget: the nodes whose inode changed from what the
    /// kernel was told, and the names in changed directories that now lead elsewhere.
    ///
    /// # Errors
    /// The reader's error when the image cannot be opened now (torn by a concurrent write):
    /// the old generation stays.
    pub fn refresh_disk(&self, d: usize) -> Result<Forget, ExtError> {
        let Some(disk) = self.disks().get(d).cloned() else {
            return Ok(Forget::default());
        };
        let new = Arc::new(Filesystem::open(disk.src.clone())?);
        let old = {
            let mut g = disk.fs.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, new.clone())
        };
        disk.generation.fetch_add(1, Ordering::Relaxed);
        disk.labeled.store(is_labeled(&new), Ordering::Relaxed);
        Ok(self.compare(d, Some(&old), &new))
    }

    /// Compare again what the kernel was told about disk `d` with its current generation: a
    /// request served from the previous generation while [`View::refresh_disk`] ran may have
    /// told the kernel old attributes after the comparison.
    pub fn recheck_disk(&self, d: usize) -> Forget {
        match self.disks().get(d) {
            Some(disk) => self.compare(d, None, &disk.fs()),
            None => Forget::default(),
        }
    }

    /// What the kernel must forget of disk `d` now that `new` is its generation (`old` the
    /// previous one, for nodes whose attributes the kernel was never told).
    pub(super) fn compare(&self, d: usize, old: Option<&ExtFs>, new: &ExtFs) -> Forget {
        let layout = self.layout();
        let mounts: Vec<usize> = layout
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.kind, ViewKind::Ext { disk, .. } if disk == d))
            .map(|(i, _)| i)
            .collect();
        let (known, stamps) = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let mut k: Vec<u64> = t.known.iter().chain(t.stamps.keys()).copied().collect();
            for m in &mounts {
                if let ViewKind::Ext { root_ino, .. } = layout.mounts[*m].kind {
                    k.push(ext_id(*m, root_ino));
                }
            }
            k.push(self.root());
            k.sort_unstable();
            k.dedup();
            let stamps: HashMap<u64, Stamp> = k
                .iter()
                .filter_map(|id| Some((*id, *t.stamps.get(id)?)))
                .collect();
            (k, stamps)
        };
        let mut changed = Vec::new();
        let mut entries = Vec::new();
        for id in known {
            let Some(m) = (id >> 32).checked_sub(1) else {
                continue;
            };
            if !mounts.contains(&(m as usize)) {
                continue;
            }
            let ino = id & 0xFFFF_FFFF;
            let same = match (stamps.get(&id), new.inode(ino)) {
                (Some(sent), Ok(b)) => *sent == Stamp::of(&b),
                (Some(_), Err(_)) => false,
                (None, now) => match (old.map(|o| o.inode(ino)), now) {
                    (Some(Ok(a)), Ok(b)) => Stamp::of(&a) == Stamp::of(&b),
                    (Some(Err(_)), Err(_)) | (None, _) => true,
                    _ => false,
                },
            };
            if !same {
                changed.push(id);
                entries.extend(self.renamed(new, m as usize, id));
            }
        }
        if changed.contains(&self.root()) {
            // The FUSE root's own attributes and listing are cached under nodeid 1.
            changed.push(1);
        }
        Forget {
            entries,
            nodes: changed,
        }
    }

    /// The names the kernel was given in disk directory `id` (on mount `mount`) that lead
    /// elsewhere in generation `new`, as (node id the kernel knows the directory by, name);
    /// they are forgotten here too, the others stay remembered.
    pub(super) fn renamed(&self, new: &ExtFs, mount: usize, id: u64) -> Vec<(u64, OsString)> {
        use std::os::unix::ffi::OsStringExt;
        let names: Vec<(Vec<u8>, u64)> = {
            let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            match t.names.get(&id) {
                Some(n) => n.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                None => return Vec::new(),
            }
        };
        let ino = id & 0xFFFF_FFFF;
        let gone: Vec<Vec<u8>> = names
            .into_iter()
            .filter(|(name, child)| {
                let now = new.lookup(ino, name).ok().flatten();
                now.map(|i| ext_id(mount, i)) != Some(*child)
            })
            .map(|(name, _)| name)
            .collect();
        // The names that still lead where they did stay remembered: the kernel keeps them.
        {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            let mut removed = 0;
            if let Some(n) = t.names.get_mut(&id) {
                for name in &gone {
                    removed += usize::from(n.remove(name).is_some());
                }
            }
            t.names_len -= removed;
        }
        let kernel_id = if id == self.root() { 1 } else { id };
        gone.into_iter()
            .map(|name| (kernel_id, OsString::from_vec(name)))
            .collect()
    }
}
