//! Node tables: ids handed to the kernel and their references, and what the kernel was told
//! (attributes, names) so a new generation can tell it what to forget.

use super::*;

/// A host file as (view mount, host st_dev, host st_ino).
pub(super) type HostKey = (usize, u64, u64);

/// A map keyed by node id.
pub(super) type IdMap<V> = HashMap<u64, V, IdHash>;

/// Hashing of node ids: one folded multiply (the 128-bit product's halves xored, as ahash's
/// fallback and foldhash do) keyed by two random words per process. A walk touches several
/// tables per entry, and SipHash was a tenth of umlfs's time listing a large tree; the keys
/// still keep a disk image, which chooses its inode numbers, from aiming them at one bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdHash {
    k0: u64,
    k1: u64,
}

impl Default for IdHash {
    fn default() -> IdHash {
        static KEYS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let &(k0, k1) = KEYS.get_or_init(|| {
            use std::hash::BuildHasher;
            let r = std::collections::hash_map::RandomState::new();
            (r.hash_one(0u64), r.hash_one(1u64) | 1)
        });
        IdHash { k0, k1 }
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The state of one [`IdHash`] hashing.
#[derive(Debug)]
pub(super) struct IdHasher {
    h: u64,
    k1: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.h = fold_mul(self.h ^ x, self.k1);
    }

    fn finish(&self) -> u64 {
        fold_mul(self.h, 0x9E37_79B9_7F4A_7C15 ^ self.k1)
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            h: self.k0,
            k1: self.k1,
        }
    }
}

/// Node tables. Every id handed out carries references: one per lookup the kernel was told
/// about (a LOOKUP reply or a READDIRPLUS entry), dropped by FORGET; internal uses take one and
/// give it back at once. An id without references is removed from every table, so the tables
/// hold what the kernel holds, not every name ever looked up.
#[derive(Debug, Default)]
pub(super) struct Tables {
    /// Guest path of directories seen (only kept when the view has nested mounts).
    pub(super) dir_paths: IdMap<String>,
    /// Host node id → (mount, host path, its key in `host_rev`).
    pub(super) host: IdMap<(usize, PathBuf, HostKey)>,
    pub(super) host_rev: HashMap<HostKey, u64>,
    pub(super) synth: IdMap<String>,
    pub(super) synth_rev: HashMap<String, u64>,
    /// Ext node ids the kernel has been told about, to invalidate on a new generation.
    pub(super) known: HashSet<u64, IdHash>,
    /// What the kernel was last told about each ext node: a new generation compares against
    /// this (not against the old generation, which may read the image's new bytes).
    pub(super) stamps: IdMap<Stamp>,
    /// Names the kernel was given in disk directories: directory node → name → child node.
    /// When a directory changes in a new generation, the names that now lead elsewhere are
    /// forgotten by name, so entries can live as long as a generation.
    pub(super) names: IdMap<HashMap<Vec<u8>, u64>>,
    pub(super) names_len: usize,
    /// References of every live id (see above).
    pub(super) refs: IdMap<u64>,
    /// The next host or synthetic id number (never reused, so a forgotten id cannot come
    /// back naming another file).
    pub(super) next_id: u64,
}

/// The inode fields whose change the kernel must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) mtime: crate::ext::Timestamp,
    pub(super) ctime: crate::ext::Timestamp,
    pub(super) size: u64,
    pub(super) nlink: u32,
    pub(super) mode: u16,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) generation: u32,
}

impl Stamp {
    pub(super) fn of(i: &Inode) -> Stamp {
        Stamp {
            mtime: i.mtime,
            ctime: i.ctime,
            size: i.size,
            nlink: i.nlink,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            generation: i.generation,
        }
    }
}

/// At most this many names in disk directories are remembered; past it, entries get the
/// short time-to-live.
pub(super) const NAMES_MAX: usize = 1 << 20;

impl Tables {
    pub(super) fn pin(&mut self, id: u64) {
        *self.refs.entry(id).or_insert(0) += 1;
    }

    pub(super) fn fresh_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(2) + 1;
        self.next_id
    }
}

impl View {
    /// The id of synthetic directory `path`, with one reference taken.
    pub(super) fn synth_id(&self, path: &str) -> u64 {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let id = match t.synth_rev.get(path) {
            Some(id) => *id,
            None => {
                let id = SYNTH_BIT | t.fresh_id();
                t.synth.insert(id, path.to_owned());
                t.synth_rev.insert(path.to_owned(), id);
                id
            }
        };
        t.pin(id);
        id
    }

    /// The id of host file `path`, with one reference taken.
    pub(super) fn host_id(&self, mount: usize, path: &Path, md: &fs::Metadata) -> u64 {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let key = (mount, md.dev(), md.ino());
        let id = match t.host_rev.get(&key) {
            Some(id) => *id,
            None => {
                let id = HOST_BIT | t.fresh_id();
                t.host.insert(id, (mount, path.to_owned(), key));
                t.host_rev.insert(key, id);
                id
            }
        };
        t.pin(id);
        id
    }

    /// Drop `n` references of `id` (a FORGET, or an internal use ending); at none, the id
    /// leaves every table. The view's root is never dropped.
    pub fn unref(&self, id: u64, n: u64) {
        if id == 1 || id == self.root() {
            return;
        }
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = t.refs.get_mut(&id) else {
            return;
        };
        *c = c.saturating_sub(n);
        if *c > 0 {
            return;
        }
        t.refs.remove(&id);
        if id & HOST_BIT != 0
            && let Some((_, _, key)) = t.host.remove(&id)
        {
            t.host_rev.remove(&key);
        }
        if id & SYNTH_BIT != 0
            && let Some(p) = t.synth.remove(&id)
        {
            t.synth_rev.remove(&p);
        }
        t.known.remove(&id);
        t.stamps.remove(&id);
        if let Some(n) = t.names.remove(&id) {
            t.names_len -= n.len();
        }
        t.dir_paths.remove(&id);
    }

    /// How many node ids the tables hold (for tests and diagnostics).
    pub fn table_len(&self) -> usize {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.refs.len()
            + t.host.len()
            + t.synth.len()
            + t.known.len()
            + t.dir_paths.len()
            + t.stamps.len()
            + t.names_len
    }

    pub(super) fn remember_dir(&self, id: u64, path: &str) {
        if self.nested {
            let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            t.dir_paths.entry(id).or_insert_with(|| path.to_owned());
        }
    }

    /// Record an ext id handed out, with one reference taken.
    pub(super) fn remember_ext(&self, id: u64) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.known.insert(id);
        t.pin(id);
    }

    /// Remember that the kernel was given `name` in disk directory `parent`, leading to
    /// `child`.
    pub(super) fn remember_name(&self, parent: u64, name: &[u8], child: u64) {
        let parent = if parent == 1 { self.root() } else { parent };
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if t.names_len >= NAMES_MAX {
            return;
        }
        if t.names
            .entry(parent)
            .or_default()
            .insert(name.to_vec(), child)
            .is_none()
        {
            t.names_len += 1;
        }
    }

    /// Whether entries and attributes of node `id` may live as long as a generation: disk
    /// and synthetic nodes change only with a new generation or mount table, which tell the
    /// kernel what to forget; hostfs files (and host FUSE mount points seen through hostfs,
    /// shown as empty directories) change without telling anyone.
    pub(crate) fn lasts_a_generation(&self, id: u64) -> bool {
        if id & HOST_BIT != 0 {
            return false;
        }
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let host_point = t
            .synth
            .get(&id)
            .is_some_and(|p| p.starts_with(HOST_FUSE_POINT));
        t.names_len < NAMES_MAX && !host_point
    }

    pub(crate) fn dir_path(&self, id: u64) -> Option<String> {
        if id == 1 || id == self.root() {
            return Some(self.top.clone());
        }
        if !self.nested {
            return None;
        }
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.dir_paths.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_an_image_chooses_alike_still_spread_over_buckets() {
        let h = IdHash::default();
        // Ids that differ only above bit 32 (one inode number on 4,096 mounts) or only in
        // high bits of the inode number: a bucket index taken from the low bits of a plain
        // multiply would be the same for all of them.
        for ids in [
            (0..4096u64).map(|k| (k << 32) | 7).collect::<Vec<_>>(),
            (0..4096u64).map(|k| (k << 20) | 1).collect(),
        ] {
            let buckets: HashSet<u64> = ids.iter().map(|&id| h.hash_one(id) & 0xFFF).collect();
            assert!(
                buckets.len() > 2000,
                "{} of 4096 buckets used",
                buckets.len()
            );
        }

        // One key, one hash, in every table of the process (they share the keys).
        assert_eq!(h.hash_one(42u64), IdHash::default().hash_one(42u64));
    }
}
