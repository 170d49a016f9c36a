//! Classic pcap capture files (the format tcpdump and Wireshark read): a 24-byte global header
//! with magic `0xA1B2C3D4` in host order, version 2.4, link type 1 (`LINKTYPE_ETHERNET`), then
//! one 16-byte record header (seconds, microseconds, captured length, original length) before
//! each frame.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const PCAP_MAGIC: u32 = 0xA1B2_C3D4;
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames are never longer than this, so nothing is ever cut.
const SNAPLEN: u32 = 65535;

/// Appends frames to a pcap file.
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
    dirty: bool,
}

impl PcapWriter {
    /// Create (or truncate) `path` and write the global header.
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(path)?);
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&PCAP_MAGIC.to_ne_bytes());
        header.extend_from_slice(&2u16.to_ne_bytes());
        header.extend_from_slice(&4u16.to_ne_bytes());
        header.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
        header.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
        header.extend_from_slice(&SNAPLEN.to_ne_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&header)?;
        out.flush()?;
        Ok(PcapWriter { out, dirty: false })
    }

    /// Append one frame, stamped with `when`.
    pub fn write_frame(&mut self, when: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX).min(SNAPLEN);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(since.as_secs() as u32).to_ne_bytes());
        rec[4..8].copy_from_slice(&since.subsec_micros().to_ne_bytes());
        rec[8..12].copy_from_slice(&len.to_ne_bytes());
        rec[12..16].copy_from_slice(&len.to_ne_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&frame[..len as usize])?;
        self.dirty = true;
        Ok(())
    }

    /// Push buffered records to the file (done whenever the switch goes idle, so readers see
    /// every frame soon after it passed).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            self.out.flush()?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_has_the_classic_header_and_one_record_per_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let mut w = PcapWriter::create(&path).unwrap();
        w.write_frame(
            UNIX_EPOCH + std::time::Duration::from_micros(5_000_007),
            &[1u8; 42],
        )
        .unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 42);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(bytes[24..28].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(bytes[28..32].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(bytes[32..36].try_into().unwrap()), 42);
    }
}
