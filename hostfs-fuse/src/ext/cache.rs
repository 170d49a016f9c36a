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
