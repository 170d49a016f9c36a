//! jbd2 journal replay into an in-memory overlay (nothing is ever written back).
//!
//! Follows the kernel's three-pass recovery (fs/jbd2/recovery.c): scan for the last complete
//! transaction (checksums define the end of the log), collect revoke records, then map every
//! logged block that is not revoked to its journal copy. The result maps filesystem block →
//! image block of the journal copy (plus the escape flag), so reading a replayed block is a
//! single positional read.

use std::collections::HashMap;

use super::bytes::{be16, be32, be64};
use super::checksum::{crc32_be, crc32c_raw};
use super::error::{ExtError, JournalError};
use super::mapping::Run;
use super::{BlockSource, Filesystem, OverlayBlock};

pub(crate) const JBD2_MAGIC: u32 = 0xC03B_3998;

const BT_DESCRIPTOR: u32 = 1;
const BT_COMMIT: u32 = 2;
const BT_SB_V1: u32 = 3;
const BT_SB_V2: u32 = 4;
const BT_REVOKE: u32 = 5;

const COMPAT_CHECKSUM: u32 = 0x1;
const INCOMPAT_REVOKE: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
const KNOWN_INCOMPAT: u32 = INCOMPAT_REVOKE
    | INCOMPAT_64BIT
    | INCOMPAT_ASYNC_COMMIT
    | INCOMPAT_CSUM_V2
    | INCOMPAT_CSUM_V3
    | INCOMPAT_FAST_COMMIT;

const FLAG_ESCAPE: u16 = 0x1;
const FLAG_SAME_UUID: u16 = 0x2;
const FLAG_LAST_TAG: u16 = 0x8;

/// What opening did with the journal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalReplayInfo {
    /// The filesystem was marked as needing recovery (mounted, or not cleanly unmounted).
    pub needs_recovery: bool,
    /// Committed transactions applied in memory.
    pub transactions: u32,
    /// Sequence number of the first transaction in the log.
    pub first_sequence: u32,
    /// Sequence number after the last complete transaction.
    pub end_sequence: u32,
    /// Distinct filesystem blocks whose current contents come from the journal.
    pub blocks: usize,
    /// Revoke records applied.
    pub revoked: usize,
    /// Logged blocks skipped because their checksum did not match, or pointing outside the
    /// filesystem.
    pub bad_blocks: u32,
    /// Replayed blocks whose journal copy was escaped (it began with the jbd2 magic).
    pub escaped: usize,
    /// The replayed part of the log runs across the end of the journal and restarts at its
    /// beginning.
    pub wrapped: bool,
    /// The journal has a fast-commit area; its records are not applied (the state is that of
    /// the last full commit).
    pub fast_commit_ignored: bool,
}

impl JournalReplayInfo {
    pub(crate) fn clean(needs_recovery: bool) -> Self {
        JournalReplayInfo {
            needs_recovery,
            ..Default::default()
        }
    }
}

pub(crate) struct Replay {
    pub overlay: HashMap<u64, OverlayBlock>,
    pub info: JournalReplayInfo,
}

struct Tag {
    fs_block: u64,
    jpos: u32,
    escape: bool,
    csum: u32,
}

struct Txn {
    seq: u32,
    tags: Vec<Tag>,
    revokes: Vec<u64>,
}

/// `a` is a later transaction than `b` (u32 sequence numbers wrap).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

struct Journal<'a, S: BlockSource> {
    fs: &'a Filesystem<S>,
    /// The journal inode: log positions are mapped through it on demand (no table sized by
    /// what the superblock declares).
    jinode: super::inode::Inode,
    maxlen: u32,
    first: u32,
    last: u32,
    incompat: u32,
    compat: u32,
    seed: u32,
}

impl<S: BlockSource> Journal<'_, S> {
    /// The image block holding log position `pos`.
    fn phys(&self, pos: u32) -> Result<u64, ExtError> {
        if pos >= self.maxlen {
            return Err(JournalError::Corrupt("a log position lies outside the journal").into());
        }
        match self.fs.map_run(&self.jinode, u64::from(pos))? {
            Run::Mapped { pblk, .. } => Ok(pblk),
            Run::Zero { .. } => Err(JournalError::Corrupt("the journal file has a hole").into()),
        }
    }

    fn read(&self, pos: u32) -> Result<std::sync::Arc<[u8]>, ExtError> {
        self.fs.read_block(self.phys(pos)?)
    }

    fn advance(&self, pos: u32) -> u32 {
        let next = pos.saturating_add(1);
        if next >= self.last { self.first } else { next }
    }

    fn csum_v23(&self) -> bool {
        self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    fn is64(&self) -> bool {
        self.incompat & INCOMPAT_64BIT != 0
    }

    /// Descriptor and revoke blocks end in a crc32c of the block with the tail zeroed.
    fn tail_ok(&self, blk: &[u8]) -> bool {
        let n = blk.len();
        let Some(body) = blk.get(..n.saturating_sub(4)) else {
            return false;
        };
        crc32c_raw(crc32c_raw(self.seed, body), &[0; 4]) == be32(blk, n - 4)
    }

    fn tag_size(&self) -> usize {
        if self.incompat & INCOMPAT_CSUM_V3 != 0 {
            return 16;
        }
        let mut s = 12;
        if self.incompat & INCOMPAT_CSUM_V2 != 0 {
            s += 2;
        }
        if !self.is64() {
            s -= 4;
        }
        s
    }

    fn commit_ok(&self, blk: &[u8], crc_v1: u32) -> bool {
        if self.csum_v23() {
            let mut c = crc32c_raw(self.seed, blk.get(..0x10).unwrap_or(&[]));
            c = crc32c_raw(c, &[0; 4]);
            c = crc32c_raw(c, blk.get(0x14..).unwrap_or(&[]));
            return c == be32(blk, 0x10);
        }
        if self.compat & COMPAT_CHECKSUM != 0 {
            let (ty, size, found) = (
                blk.get(0x0C).copied(),
                blk.get(0x0D).copied(),
                be32(blk, 0x10),
            );
            return (found == crc_v1 && ty == Some(1) && size == Some(4))
                || (ty == Some(0) && size == Some(0) && found == 0);
        }
        true
    }
}

pub(crate) fn replay<S: BlockSource>(fs: &Filesystem<S>) -> Result<Replay, ExtError> {
    let bs = fs.bs;
    if fs.sb.journal_inum == 0 {
        return Err(JournalError::External.into());
    }
    let jinode = fs.inode(u64::from(fs.sb.journal_inum))?;
    let inode_blocks = (jinode.size / bs).min(fs.sb.blocks_count);
    let jsb_phys = match fs.map_run(&jinode, 0)? {
        Run::Mapped { pblk, .. } => pblk,
        Run::Zero { .. } => {
            return Err(JournalError::Corrupt("the journal superblock is a hole").into());
        }
    };
    let jsb = fs.read_block(jsb_phys)?;
    if be32(&jsb, 0) != JBD2_MAGIC {
        return Err(JournalError::Corrupt("the journal superblock has a bad magic number").into());
    }
    let btype = be32(&jsb, 4);
    let v2 = match btype {
        BT_SB_V1 => false,
        BT_SB_V2 => true,
        _ => {
            return Err(
                JournalError::Corrupt("the journal superblock has an unknown block type").into(),
            );
        }
    };
    if u64::from(be32(&jsb, 0x0C)) != bs {
        return Err(
            JournalError::Corrupt("the journal block size differs from the filesystem's").into(),
        );
    }
    let maxlen = be32(&jsb, 0x10);
    let first = be32(&jsb, 0x14);
    let sequence = be32(&jsb, 0x18);
    let start = be32(&jsb, 0x1C);
    let (compat, incompat) = if v2 {
        (be32(&jsb, 0x24), be32(&jsb, 0x28))
    } else {
        (0, 0)
    };
    let mut uuid = [0u8; 16];
    if v2 {
        uuid.copy_from_slice(jsb.get(0x30..0x40).unwrap_or(&[0; 16]));
    }
    if incompat & !KNOWN_INCOMPAT != 0 {
        return Err(JournalError::Unsupported(format!(
            "unknown incompatible journal features {:#x}",
            incompat & !KNOWN_INCOMPAT
        ))
        .into());
    }
    let v23 = incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3);
    if v23 == (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) || (v23 != 0 && compat & COMPAT_CHECKSUM != 0) {
        return Err(
            JournalError::Corrupt("the journal claims two checksum versions at once").into(),
        );
    }
    if v2 && be32(&jsb, 0x40) > 1 {
        return Err(
            JournalError::Unsupported("a journal shared by several filesystems".into()).into(),
        );
    }
    if v23 != 0 {
        if jsb.get(0x50) != Some(&4) {
            return Err(JournalError::Unsupported(
                "a journal checksum type other than crc32c".into(),
            )
            .into());
        }
        let mut c = crc32c_raw(0xFFFF_FFFF, jsb.get(..0xFC).unwrap_or(&[]));
        c = crc32c_raw(c, &[0; 4]);
        c = crc32c_raw(c, jsb.get(0x100..0x400).unwrap_or(&[]));
        if c != be32(&jsb, 0xFC) {
            return Err(
                JournalError::Corrupt("the journal superblock checksum does not match").into(),
            );
        }
    }
    // The journal must fit in both its inode and the image: this also bounds the block map
    // allocated below.
    let image_blocks = fs.image_len / bs;
    if u64::from(maxlen) > inode_blocks.min(image_blocks) || first == 0 || first >= maxlen {
        return Err(
            JournalError::Corrupt("the journal length or first log block is out of range").into(),
        );
    }
    let mut last = maxlen;
    let fast_commit = incompat & INCOMPAT_FAST_COMMIT != 0;
    if fast_commit {
        let n = match be32(&jsb, 0x54) {
            0 => 256,
            n => n,
        };
        last = maxlen.saturating_sub(n);
        if last <= first {
            return Err(
                JournalError::Corrupt("the fast-commit area leaves no room for the log").into(),
            );
        }
    }
    let mut info = JournalReplayInfo {
        needs_recovery: true,
        first_sequence: sequence,
        end_sequence: sequence,
        fast_commit_ignored: fast_commit,
        ..Default::default()
    };
    if start == 0 {
        return Ok(Replay {
            overlay: HashMap::new(),
            info,
        });
    }
    if start < first || start >= last {
        return Err(JournalError::Corrupt("the log start lies outside the log area").into());
    }
    // Journal blocks are logical blocks of the journal inode, which may be fragmented: they
    // are mapped as the log is read.
    let j = Journal {
        fs,
        jinode,
        maxlen,
        first,
        last,
        incompat,
        compat,
        seed: crc32c_raw(0xFFFF_FFFF, &uuid),
    };
    let (txns, wrapped) = scan(&j, sequence, start)?;
    info.wrapped = wrapped;
    info.transactions = txns.len() as u32;
    info.end_sequence = sequence.wrapping_add(info.transactions);

    let mut revoked: HashMap<u64, u32> = HashMap::new();
    for t in &txns {
        for &b in &t.revokes {
            info.revoked += 1;
            let e = revoked.entry(b).or_insert(t.seq);
            if after(t.seq, *e) {
                *e = t.seq;
            }
        }
    }
    let mut overlay = HashMap::new();
    for t in &txns {
        for tag in &t.tags {
            if revoked
                .get(&tag.fs_block)
                .is_some_and(|&r| !after(t.seq, r))
            {
                continue;
            }
            if tag.fs_block >= fs.sb.blocks_count {
                info.bad_blocks += 1;
                continue;
            }
            if j.csum_v23() {
                let data = j.read(tag.jpos)?;
                let c = crc32c_raw(crc32c_raw(j.seed, &t.seq.to_be_bytes()), &data);
                let ok = if incompat & INCOMPAT_CSUM_V3 != 0 {
                    c == tag.csum
                } else {
                    (c & 0xFFFF) == tag.csum
                };
                if !ok {
                    tracing::warn!(
                        block = tag.fs_block,
                        seq = t.seq,
                        "journal block checksum mismatch; skipped"
                    );
                    info.bad_blocks += 1;
                    continue;
                }
            }
            let phys = j.phys(tag.jpos)?;
            overlay.insert(
                tag.fs_block,
                OverlayBlock {
                    phys,
                    escape: tag.escape,
                },
            );
        }
    }
    info.blocks = overlay.len();
    info.escaped = overlay
        .values()
        .filter(|o: &&OverlayBlock| o.escape)
        .count();
    tracing::debug!(?info, "journal replayed in memory");
    Ok(Replay { overlay, info })
}

/// Pass 1: the committed transactions from `start`, in order.
/// Also returns whether the committed part of the log wraps around the end of the journal.
fn scan<S: BlockSource>(
    j: &Journal<'_, S>,
    sequence: u32,
    start: u32,
) -> Result<(Vec<Txn>, bool), ExtError> {
    let bs = j.fs.bs as usize;
    let log_len = u64::from(j.last - j.first);
    let tail = if j.csum_v23() { 4 } else { 0 };
    let tag_size = j.tag_size();
    let mut txns = Vec::new();
    let mut seq = sequence;
    let mut pos = start;
    let mut visited = 0u64;
    let mut crc_v1 = 0xFFFF_FFFFu32;
    let mut wrapped = false;
    let mut committed_wrapped = false;
    let mut cur = Txn {
        seq,
        tags: Vec::new(),
        revokes: Vec::new(),
    };
    while visited < log_len {
        let blk = j.read(pos)?;
        visited += 1;
        if be32(&blk, 0) != JBD2_MAGIC || be32(&blk, 8) != seq {
            break;
        }
        let next = j.advance(pos);
        wrapped |= next < pos;
        match be32(&blk, 4) {
            BT_DESCRIPTOR => {
                if j.csum_v23() && !j.tail_ok(&blk) {
                    tracing::warn!(
                        seq,
                        pos,
                        "journal descriptor checksum mismatch; the log ends here"
                    );
                    break;
                }
                if j.compat & COMPAT_CHECKSUM != 0 {
                    crc_v1 = crc32_be(crc_v1, &blk);
                }
                let mut off = 12;
                let mut dpos = next;
                while off + tag_size <= bs - tail {
                    let flags = be16(&blk, off + 6);
                    let mut fs_block = u64::from(be32(&blk, off));
                    if j.is64() {
                        fs_block |= u64::from(be32(&blk, off + 8)) << 32;
                    }
                    let csum = if j.incompat & INCOMPAT_CSUM_V3 != 0 {
                        be32(&blk, off + 12)
                    } else {
                        u32::from(be16(&blk, off + 4))
                    };
                    if j.compat & COMPAT_CHECKSUM != 0 {
                        crc_v1 = crc32_be(crc_v1, &j.read(dpos)?);
                    }
                    cur.tags.push(Tag {
                        fs_block,
                        jpos: dpos,
                        escape: flags & FLAG_ESCAPE != 0,
                        csum,
                    });
                    let after_data = j.advance(dpos);
                    wrapped |= after_data < dpos;
                    dpos = after_data;
                    visited += 1;
                    off += tag_size;
                    if flags & FLAG_SAME_UUID == 0 {
                        off += 16;
                    }
                    if flags & FLAG_LAST_TAG != 0 {
                        break;
                    }
                }
                pos = dpos;
            }
            BT_REVOKE => {
                if j.csum_v23() && !j.tail_ok(&blk) {
                    tracing::warn!(
                        seq,
                        pos,
                        "journal revoke block checksum mismatch; the log ends here"
                    );
                    break;
                }
                let rsize = if j.is64() { 8 } else { 4 };
                let used = be32(&blk, 12) as usize;
                if used < 16 || used > bs - tail {
                    break;
                }
                let mut off = 16;
                while off + rsize <= used {
                    let b = if j.is64() {
                        be64(&blk, off)
                    } else {
                        u64::from(be32(&blk, off))
                    };
                    cur.revokes.push(b);
                    off += rsize;
                }
                pos = next;
            }
            BT_COMMIT => {
                if !j.commit_ok(&blk, crc_v1) {
                    tracing::warn!(
                        seq,
                        pos,
                        "journal commit block checksum mismatch; the log ends here"
                    );
                    break;
                }
                let done = std::mem::replace(
                    &mut cur,
                    Txn {
                        seq: seq.wrapping_add(1),
                        tags: Vec::new(),
                        revokes: Vec::new(),
                    },
                );
                txns.push(done);
                committed_wrapped = wrapped;
                seq = seq.wrapping_add(1);
                crc_v1 = 0xFFFF_FFFF;
                pos = next;
            }
            _ => break,
        }
    }
    Ok((txns, committed_wrapped))
}
