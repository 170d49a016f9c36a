//! Native-endian words at an offset of a byte buffer from the host's kernel (socket requests
//! of the daemon transport, socket-diagnostics answers): `None` past the end, never a panic.

/// The `u16` at byte `off` of `buf`.
pub(crate) fn ne_u16(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        buf.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The `u32` at byte `off` of `buf`.
pub(crate) fn ne_u32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        buf.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_inside_the_buffer_only() {
        let b = 0x0403_0201u32.to_ne_bytes();
        assert_eq!(ne_u32(&b, 0), Some(0x0403_0201));
        assert_eq!(ne_u16(&b, 2), Some(u16::from_ne_bytes([b[2], b[3]])));
        assert_eq!(ne_u32(&b, 1), None);
        assert_eq!(ne_u16(&b, 3), None);
        assert_eq!(ne_u32(&b, usize::MAX), None);
    }
}
