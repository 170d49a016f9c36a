//! Object paths of machines: `/org/umlkit/uml1/machine/<escaped umid>`.
//!
//! The escaping is systemd's `bus_label_escape` (`src/basic/bus-label.c`), which
//! `org.freedesktop.machine1` uses: every byte outside `[A-Za-z0-9]`, and a digit in first
//! place, becomes `_` and two lowercase hex digits; the empty string becomes `_`.

/// The manager object's path.
pub const MANAGER_PATH: &str = "/org/umlkit/uml1";
/// The interface of the manager object (the service emits its signals by this name).
pub(crate) const MANAGER_INTERFACE: &str = "org.umlkit.uml1.Manager";
/// The prefix of every machine object's path.
pub const MACHINE_PREFIX: &str = "/org/umlkit/uml1/machine/";

/// One object-path element for `umid`, escaped like systemd's bus labels.
pub fn escape_label(umid: &str) -> String {
    if umid.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(umid.len() * 3);
    for (i, b) in umid.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// The object path of the machine `umid`.
pub fn machine_path(umid: &str) -> String {
    format!("{MACHINE_PREFIX}{}", escape_label(umid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_like_systemd() {
        assert_eq!(escape_label("web1"), "web1");
        assert_eq!(escape_label("run-abc123"), "run_2dabc123");
        assert_eq!(escape_label("1st"), "_31st");
        assert_eq!(escape_label(""), "_");
        assert_eq!(escape_label("a.b_c"), "a_2eb_5fc");
        assert_eq!(escape_label("é"), "_c3_a9");
    }

    #[test]
    fn every_machine_path_is_a_valid_object_path() {
        for umid in ["web1", "", "1", "a b/c", "ünï", "x-y.z"] {
            let path = machine_path(umid);
            assert!(
                zbus::ObjectPath::try_from(path.as_str()).is_ok(),
                "{path} is not an object path"
            );
        }
    }
}
