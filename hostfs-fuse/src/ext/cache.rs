//! A small bounded cache of metadata blocks, sharded so threads rarely contend.
//!
//! Eviction is "drop an arbitrary entry of a full shard": cheap, bounded, and good enough for
//! the hot set (inode tables, extent and index blocks, directory blocks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<u64, Arc<[u8]>>>;

#[derive(Debug)]
pub(crate) struct BlockCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

impl BlockCache {
    /// A cache holding at most about `bytes` bytes of `block_size`-byte blocks.
    pub fn new(bytes: usize, block_size: usize) -> BlockCache {
        let per_shard = (bytes / block_size.max(1) / SHARDS).max(4);
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    fn shard(&self, block: u64) -> Option<&Shard> {
        let h = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
        self.shards.get(h as usize % SHARDS)
    }

    pub fn get(&self, block: u64) -> Option<Arc<[u8]>> {
        let shard = self.shard(block)?;
        let map = shard.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&block).cloned()
    }

    pub fn insert(&self, block: u64, data: Arc<[u8]>) {
        let Some(shard) = self.shard(block) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.per_shard
            && !map.contains_key(&block)
            && let Some(&victim) = map.keys().next()
        {
            map.remove(&victim);
        }
        map.insert(block, data);
    }
}

/// Parsed group descriptors, a few slots deep (`group % SLOTS`): parsing one means a checksum
/// over it, and a walk asks for the same few groups for every inode it reads. Like the block
/// cache it lives as long as its [`super::Filesystem`], a point in time.
#[derive(Debug)]
pub(crate) struct DescMemo<T: Copy> {
    slots: Vec<Mutex<Option<(u64, T)>>>,
}

const DESC_SLOTS: usize = 64;

impl<T: Copy> DescMemo<T> {
    pub fn new() -> DescMemo<T> {
        DescMemo {
            slots: (0..DESC_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, g: u64) -> Option<&Mutex<Option<(u64, T)>>> {
        self.slots.get((g % DESC_SLOTS as u64) as usize)
    }

    pub fn get(&self, g: u64) -> Option<T> {
        let s = self.slot(g)?.lock().unwrap_or_else(|e| e.into_inner());
        s.filter(|(k, _)| *k == g).map(|(_, v)| v)
    }

    pub fn put(&self, g: u64, v: T) {
        if let Some(s) = self.slot(g) {
            *s.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, v));
        }
    }
}
