//! Text from a guest (mconsole replies, `proc` output, panic messages, notify payloads) made
//! safe for a host terminal.
//!
//! A guest can put any bytes into what it sends. Printed as they are, escape sequences would
//! drive the terminal of the person reading them: retitle the window, clear the screen, move
//! the cursor over earlier output, or answer back through the terminal's reports.
//! [`printable`] shows every such character as a visible escape instead. `uml console` is the
//! one place guest output goes to the terminal as it is: it is a terminal by design.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character made visible: C0 controls and DEL as `\xNN`, C1
/// controls and the Unicode bidirectional overrides (which reorder what a reader sees) as
/// `\u{NNNN}`. Newlines and tabs are kept, so multi-line output keeps its shape; a caller that
/// prints one line replaces `\n` itself. Text with nothing to change is returned as it is.
///
/// ```
/// assert_eq!(uml::text::printable("ok\n"), "ok\n");
/// assert_eq!(uml::text::printable("\x1b]0;x\x07"), "\\x1b]0;x\\x07");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// An error with its causes, `outer: cause: cause`, as the commands print them: library
/// errors keep their causes as sources, never in their own text, so each cause shows once.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: a cycle of sources would be a bug, never a reason to hang.
    for _ in 0..16 {
        let Some(s) = source else { break };
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn plain_text_lines_and_tabs_are_kept() {
        let text = "Linux host 7.2.13 #1 x86_64\n\tMemTotal: 1 kB\nüñí\n";
        assert!(matches!(printable(text), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable(text), text);
    }

    #[test]
    fn escapes_and_other_controls_become_visible() {
        assert_eq!(
            printable("a\x1b[2Jb\rc\x00d\x7fe\u{9b}f\u{202e}g"),
            "a\\x1b[2Jb\\x0dc\\x00d\\x7fe\\u{009b}f\\u{202e}g"
        );
    }

    #[test]
    fn the_result_has_no_control_character_but_newline_and_tab() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(
            !printable(&all)
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
    }
}
