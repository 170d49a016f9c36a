//! The switch's status file (`uml switch --stats FILE`): its counters and ports as JSON,
//! what `uml switch list` shows.
//!
//! A file rather than a query on a socket: reading it needs no connection to the switch
//! (which may run as another user), and writing it costs the switch one small write a second
//! at most. The file is replaced atomically (written beside it, then renamed), so a reader
//! sees one whole status or the one before. Its size is bounded by the port limit (1024).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SwitchStats;

/// What a switch reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub control: PathBuf,
    pub bess: Option<PathBuf>,
    pub stats: SwitchStats,
    pub ports: Vec<PortStatus>,
}

/// One port's identity and traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub id: usize,
    /// `daemon`, `bess` or `tap`.
    pub kind: String,
    /// Who the peer is: its request version and address, or its pid and uid.
    pub peer: String,
    /// Frames received from the port.
    pub rx_frames: u64,
    /// Frames sent to the port.
    pub tx_frames: u64,
    /// Frames for the port that were dropped (its queue was full or it was gone).
    pub dropped: u64,
    /// Frames waiting for the port's socket to have room.
    pub queued: usize,
    /// Bytes of those frames.
    pub queued_bytes: usize,
    /// Bytes sent to the port that it has not read yet (kernel memory, `SIOCOUTQ`).
    pub unread_bytes: usize,
    /// The port's send buffer limit asked of the kernel (which doubles it).
    pub socket_buffer: usize,
}

impl Status {
    /// Replace `path` with this status, atomically.
    ///
    /// # Errors
    /// The temporary file cannot be written or renamed.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// The status in `path`.
    ///
    /// # Errors
    /// The file cannot be read or is not a status.
    pub fn read(path: &Path) -> io::Result<Status> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.stats");
        let status = Status {
            pid: 7,
            control: "/x/ctl".into(),
            bess: Some("/x/bess".into()),
            stats: SwitchStats {
                frames_received: 3,
                ports: 1,
                ..SwitchStats::default()
            },
            ports: vec![PortStatus {
                id: 0,
                kind: "bess".into(),
                peer: "bess pid 1 uid 0".into(),
                rx_frames: 3,
                tx_frames: 2,
                dropped: 1,
                queued: 0,
                queued_bytes: 0,
                unread_bytes: 0,
                socket_buffer: 1 << 18,
            }],
        };
        status.write(&path).unwrap();
        assert_eq!(Status::read(&path).unwrap(), status);
        assert!(!dir.path().join("s.stats.tmp").exists());
    }
}
