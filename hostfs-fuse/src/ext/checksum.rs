//! The three CRCs ext4 and jbd2 use: crc32c (stored as the raw register, no inversions),
//! CRC-16/MODBUS for `gdt_csum` descriptors, and the MSB-first CRC-32 of jbd2 v1 commits.

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const fn crc32_be_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();
static CRC32_BE: [u32; 256] = crc32_be_table();

/// crc32c register update without pre- or post-inversion (what ext4 and jbd2 store).
pub(crate) fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-16 with reflected polynomial 0xA001, no final xor (ext4 `gdt_csum` descriptors).
pub(crate) fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// MSB-first CRC-32 (poly 0x04C11DB7, no reflection, no final xor): jbd2 v1 commit checksum.
pub(crate) fn crc32_be(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32_BE[(((crc >> 24) ^ u32::from(b)) & 0xFF) as usize] ^ (crc << 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_match_the_published_ones() {
        assert_eq!(crc32c_raw(0xFFFF_FFFF, b"123456789"), 0x1CF9_6D7C);
        assert_eq!(crc16(0xFFFF, b"123456789"), 0x4B37);
        assert_eq!(crc32_be(0xFFFF_FFFF, b"123456789"), 0x0376_E6E7);
    }
}
