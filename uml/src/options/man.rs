//! Man pages generated from the option table and from clap command definitions.
//!
//! [`kernel_options_page`] renders `uml-kernel-options(7)`, the reference of the UML kernel's
//! command line, from [`super::all`] and the transport/channel tables alone: every option,
//! current and obsolete, with its grammar, default, the kernels that have it and its fate elsewhere. It is named so
//! that it cannot collide with the `linux.uml(1)` HowTo that Debian's user-mode-linux ships.
//! [`command_pages`] renders a page per command and visible subcommand of any clap command
//! (`uml`, later `umlfs`, `umld`), with extra sections (EXAMPLES, FILES, …) on the top page.
//!
//! Guarantee: the output depends only on the tables, the clap definitions and [`Meta`], so
//! regenerating is byte-for-byte reproducible; no page embeds the build time.

use std::fmt::Write as _;

use roff::{Inline, Roff, bold, italic, roman};

use super::{
    Completion, FieldSpec, InitSlot, Kernels, OptionSpec, Stage, Status, ValueKind, all, channels,
    transports, vec_common_keys, vec_transports,
};

/// The date written into every page when `SOURCE_DATE_EPOCH` is not set: the last change to
/// what the pages say. Bump it together with a change to the tables or the commands.
pub const DATE: &str = "2026-12-05";

/// The header fields every page shares.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The footer's source, e.g. `umlkit 0.1.0`.
    pub source: String,
    /// The manual's title, e.g. `umlkit manual`.
    pub manual: String,
}

impl Meta {
    /// umlkit's header: `SOURCE_DATE_EPOCH` (the reproducible-builds convention) as the date
    /// when it is set to a valid number, else [`DATE`].
    pub fn umlkit(version: &str) -> Meta {
        let date = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(civil_date)
            .unwrap_or_else(|| DATE.to_owned());
        Meta {
            date,
            source: format!("umlkit {version}"),
            manual: "umlkit manual".to_owned(),
        }
    }
}

/// One generated page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The file name, `<name>.<section>` (`uml-run.1`).
    pub file_name: String,
    /// The roff source.
    pub text: String,
}

/// A section appended to a command's top page.
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading, upper case (`EXAMPLES`).
    pub title: &'static str,
    /// Its content in order.
    pub blocks: Vec<Block>,
}

/// A piece of a [`Section`]. Text is plain: roff escaping is done here.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph.
    Para(String),
    /// A tagged paragraph: the tag in bold, the text indented below it.
    Item(String, String),
    /// A literal command line or file excerpt, shown unfilled and indented.
    Code(String),
}

/// `uml-kernel-options(7)`: every option of the table, with the kernels that have it.
pub fn kernel_options_page(meta: &Meta) -> Page {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "UML-KERNEL-OPTIONS",
            "7",
            meta.date.as_str(),
            meta.source.as_str(),
            meta.manual.as_str(),
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(
        "uml-kernel-options - command-line options of User-mode Linux kernels (6.1 and 7.x)",
    )]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        bold("linux"),
        roman(" ["),
        italic("option"),
        roman(" ...] [--] ["),
        italic("init argument"),
        roman(" ...]"),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    para(
        &mut r,
        "A User-mode Linux kernel is an ordinary host program, usually installed as linux, \
         linux.uml or vmlinux. Its arguments form the kernel command line. This page describes \
         the options of the UML kernels umlkit knows, 6.1 (checked against Debian's 6.1.176) \
         and 7.x (checked against 7.2.12 built from Debian's linux-source-7.2), the options \
         that exist only in builds with a particular config symbol, and the obsolete options \
         of older UML releases together with what the kernel does with each. Every entry says \
         which kernels have it: a version range (\"since after 6.1\" means absent in 6.1.176 \
         and present in 7.2.12, the series between not examined) and the CONFIG_ symbol it \
         needs, as linux --showconfig prints it. A kernel without an option treats the word \
         like any unclaimed word. uml check says which options the kernel that will run has.",
    );
    para(
        &mut r,
        "UML options are matched by prefix, the longest name first: ubd1r=disk.img reaches the \
         ubd handler, ssl-non-raw beats ssl. Each argument is checked first against UML's own \
         table (argv stage), then against the generic kernel parameters and the drivers' setup \
         handlers. The command line holds at most 4096 bytes. A word no handler claims is passed \
         to init: without = as one of its arguments, as name=value as one of its environment \
         variables (at most 128 of each; a later duplicate name replaces an earlier one), \
         except a word with a . before any = (192.168.0.1, foo.bar=1), which is taken for a \
         parameter of a module that is not there and dropped. Of repeated root=, rootfstype= \
         and init= the last one counts. Some \
         UML options stay on the line after they are handled, so init sees them too; the \
         entries below say so.",
    );
    para(
        &mut r,
        "Without root= the kernel appends root=98:0 (the first ubd disk); without console= it \
         appends console=tty0.",
    );

    let current = |s: &&OptionSpec| s.status() == Status::Current;
    section_of(
        &mut r,
        "UML OPTIONS",
        all()
            .iter()
            .filter(current)
            .filter(|s| s.stage() != Stage::Generic),
    );
    section_of(
        &mut r,
        "GENERIC KERNEL OPTIONS",
        all()
            .iter()
            .filter(current)
            .filter(|s| s.stage() == Stage::Generic),
    );
    r.control("SH", ["CONSOLE CHANNELS"]);
    para(
        &mut r,
        "con and ssl take a channel description: one channel for both directions, or \
         <input>,<output>. A host device must be written tty:<device>; a bare path such as \
         con1=/dev/tty8 (as older documentation shows) does not parse.",
    );
    for ch in channels() {
        let tag = match ch.argument() {
            Some(arg) => format!("{}:<{}>", ch.name(), arg.name()),
            None => ch.name().to_owned(),
        };
        let text = match ch.kernels().config {
            Some(symbol) => format!("{}. Needs CONFIG_{symbol}", ch.summary()),
            None => ch.summary().to_owned(),
        };
        item(&mut r, &tag, &text);
    }
    r.control("SH", ["NETWORK TRANSPORTS"]);
    para(
        &mut r,
        "eth<n>=<transport>,<field>,... takes positional fields; an empty field keeps its \
         default. Only kernels built with CONFIG_UML_NET have eth: Debian's 6.1 has the \
         transports below except pcap; 7.x has no legacy driver at all, so there eth<n>= lands \
         in init's environment and vec<n>: is the only network device.",
    );
    for t in transports() {
        let fields: Vec<String> = t
            .fields()
            .iter()
            .map(|f| format!("<{}>", f.name()))
            .collect();
        let tag = if fields.is_empty() {
            format!("eth<n>={}", t.name())
        } else {
            format!("eth<n>={},{}", t.name(), fields.join(","))
        };
        let mut text = format!("{}. Kernels: {}", t.summary(), t.kernels().describe());
        if t.ignores_extra_fields() {
            text.push_str(". Extra fields are ignored with a warning.");
        } else {
            text.push_str(". Extra fields fail with \"Extra garbage on specification\".");
        }
        item(&mut r, &tag, &text);
        fields_list(&mut r, t.fields(), t.required());
    }
    para(
        &mut r,
        "vec<n>:transport=<name>,<key>=<value>,... creates a device with the vector driver. \
         Keys every transport accepts:",
    );
    fields_list(&mut r, vec_common_keys(), &[]);
    for t in vec_transports() {
        let mut text = t.summary().to_owned();
        for (a, b) in t.pairs() {
            let _ = write!(text, ". {a} and {b} go together");
        }
        item(&mut r, &format!("transport={}", t.name()), &text);
        fields_list(&mut r, t.keys(), t.required());
    }

    r.control("SH", ["OBSOLETE OPTIONS"]);
    para(
        &mut r,
        "These options of older UML releases (documented in the old Debian linux.uml page) do \
         nothing in 6.1 or 7.x. Each entry says what the kernel does with the word instead.",
    );
    for spec in all().iter().filter(|s| s.status() == Status::Obsolete) {
        option_entry(&mut r, spec);
    }

    r.control("SH", ["SHELL COMPLETION"]);
    para(
        &mut r,
        "umlkit installs bash, zsh and fish completions for linux, linux.uml and vmlinux, and \
         for the kernel words of uml check and uml run --arg. They offer the options, units, \
         channels, transports and their fields that the kernel in question has: for linux the \
         kernel the command word runs (./build/linux, or linux found on PATH), for uml the \
         kernel it would run (the line's --kernel or --kernel-version, else UML_KERNEL, the \
         default of uml kernel use, linux on PATH, the newest built kernel). So a 6.1 kernel \
         gets eth<n>= and its transports and no seccomp=, a 7.x kernel seccomp= and no eth, \
         and a kernel built with CONFIG_SMP ncpus=. Each TAB asks the kernel's profile once: \
         uml kernel info --json, which caches it, or the kernel's own --version and \
         --showconfig when uml is not on PATH, each for at most a few seconds. When the kernel \
         cannot be asked (it is missing, not executable, or not a UML kernel), they offer what \
         Debian's 6.1 and 7.x builds have between them. Obsolete options are never offered.",
    );
    r.control("SH", ["ENVIRONMENT"]);
    item(&mut r, "HOME", "Where ~/.uml, the default uml_dir, is.");
    item(
        &mut r,
        "TMPDIR, TMP, TEMP",
        "Where the guest's memory file is created (then /dev/shm if it is a tmpfs, then /tmp).",
    );
    item(
        &mut r,
        "PATH",
        "Searched for uml_net, port-helper, slirp and in.telnetd; the kernel appends /usr/lib/uml.",
    );
    item(
        &mut r,
        "UML_PORT_HELPER",
        "Overrides the path of port-helper.",
    );
    item(&mut r, "DISPLAY", "Needed by the xterm channel.");
    r.control("SH", ["EXIT STATUS"]);
    para(
        &mut r,
        "0 after a halt or power-off, unless the guest wrote another number to /proc/exitcode. \
         A panic ends in SIGABRT (shell status 134) and leaves the instance directory behind. \
         SIGINT or SIGTERM clean up and exit 1. A reboot re-executes the kernel with the same \
         arguments in the same process, unless noreboot is given.",
    );
    r.control("SH", ["NOTES"]);
    para(
        &mut r,
        "The kernel's own --help is out of date in places: it allows ubd units 0-7 (6.1 and \
         7.2 have 0-15, or a-p), and its mem= text mentions only the K and M suffixes. The HowTo that \
         Debian installs as linux.uml(1) omits the ubd r flag and writes a tty channel without \
         its tty: prefix.",
    );
    r.control("SH", ["EXAMPLES"]);
    para(
        &mut r,
        "Boot the host's own root directory read-only with a shell:",
    );
    code(
        &mut r,
        "linux mem=256M root=/dev/root rootfstype=hostfs rootflags=/ ro init=/bin/sh",
    );
    para(
        &mut r,
        "A COW disk over a shared base image, a console on a new pseudo-terminal and a network \
         device on a switch:",
    );
    code(
        &mut r,
        "linux umid=web1 ubd0=web1.cow,base.img con0=fd:0,fd:1 con1=pts \\\n    \
         eth0=daemon,,unix,/tmp/switch.ctl",
    );
    r.control("SH", ["SEE ALSO"]);
    see_also(
        &mut r,
        &[("uml", "1"), ("uml-check", "1"), ("uml-run", "1")],
    );
    Page {
        file_name: "uml-kernel-options.7".to_owned(),
        text: tidy(&r.render()),
    }
}

/// A page that is not a clap command (`org.umlkit.uml1(5)` from the D-Bus interface XML, a
/// configuration file): NAME from `name` and `summary`, then `sections` in order.
pub fn custom_page(
    name: &str,
    section: &str,
    summary: &str,
    meta: &Meta,
    sections: &[Section],
) -> Page {
    let mut r = Roff::new();
    let title = name.to_uppercase();
    r.control(
        "TH",
        [
            title.as_str(),
            section,
            meta.date.as_str(),
            meta.source.as_str(),
            meta.manual.as_str(),
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(format!("{name} - {summary}"))]);
    render_sections(&mut r, sections);
    Page {
        file_name: format!("{name}.{section}"),
        text: tidy(&r.render()),
    }
}

/// A page for `cmd` and one for each of its visible subcommands (`uml-run.1`, …), in `section`.
/// `extra` sections follow the generated ones on the top page only.
pub fn command_pages(
    cmd: clap::Command,
    section: &str,
    meta: &Meta,
    extra: &[Section],
) -> Vec<Page> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect_pages(&cmd, section, meta, extra, true, &mut pages);
    pages
}

fn collect_pages(
    cmd: &clap::Command,
    section: &str,
    meta: &Meta,
    extra: &[Section],
    top: bool,
    pages: &mut Vec<Page>,
) {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .date(&meta.date)
        .source(&meta.source)
        .manual(&meta.manual);
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = man.render_title(&mut buf);
    let _ = man.render_name_section(&mut buf);
    let _ = man.render_synopsis_section(&mut buf);
    let _ = man.render_description_section(&mut buf);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut buf);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        let _ = man.render_subcommands_section(&mut buf);
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    let mut r = Roff::new();
    // clap's after-help: "Examples:" and an indented list become EXAMPLES, other text NOTES.
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        let after = after.to_string();
        let section = match after.strip_prefix("Examples:") {
            Some(list) => Section {
                title: "EXAMPLES",
                blocks: vec![Block::Code(dedent(list.trim_matches('\n')))],
            },
            None => Section {
                title: "NOTES",
                blocks: vec![Block::Para(
                    after.split_whitespace().collect::<Vec<_>>().join(" "),
                )],
            },
        };
        render_sections(&mut r, std::slice::from_ref(&section));
    }
    if top {
        render_sections(&mut r, extra);
    }
    let mut see: Vec<String> = Vec::new();
    if !top && let Some(parent) = name.rsplit_once('-').map(|(p, _)| p) {
        see.push(format!("{parent}({section})"));
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        see.push(format!(
            "{}({section})",
            sub.get_display_name().unwrap_or(sub.get_name())
        ));
    }
    if (!top || !extra.iter().any(|s| s.title == "SEE ALSO")) && !see.is_empty() {
        r.control("SH", ["SEE ALSO"]);
        r.text([roman(see.join(", "))]);
    }
    if let Some(v) = cmd.get_version() {
        r.control("SH", ["VERSION"]);
        r.text([roman(format!("v{v}"))]);
    }
    text.push_str(&r.render());
    pages.push(Page {
        file_name: format!("{name}.{section}"),
        text: tidy(&text),
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_pages(sub, section, meta, extra, false, pages);
    }
}

/// Makes roff from several renders lint-clean for `groff -ww` and `mandoc -T lint`: one
/// apostrophe preamble (every roff render starts with it), no `.PP` right after `.SH`, no
/// trailing blanks, non-ASCII characters as `\[uXXXX]` escapes (groff reads its input as
/// Latin-1 without preconv), and text lines wrapped at 80 bytes (mandoc's style check).
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut preamble_seen = 0;
    let mut after_sh = false;
    let mut nofill = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            preamble_seen += 1;
            if preamble_seen > 2 {
                continue;
            }
        }
        if after_sh && line == ".PP" {
            continue;
        }
        after_sh = line.starts_with(".SH");
        let mut escaped = String::with_capacity(line.len());
        for c in line.chars() {
            if c.is_ascii() {
                escaped.push(c);
            } else {
                let _ = write!(escaped, "\\[u{:04X}]", u32::from(c));
            }
        }
        if line == ".nf" {
            nofill = true;
        } else if line == ".fi" {
            nofill = false;
        }
        if escaped.starts_with('.') || escaped.starts_with('\'') || escaped.len() <= 80 {
            out.push_str(&escaped);
            out.push('\n');
            continue;
        }
        if nofill {
            wrap_nofill(&escaped, &mut out);
        } else {
            wrap(&escaped, &mut out);
        }
    }
    out
}

/// Breaks an unfilled (`.nf`) line at spaces with `\c`, which joins the pieces again on output.
fn wrap_nofill(line: &str, out: &mut String) {
    let mut rest = line;
    while rest.len() > 80 {
        let cut = rest[..78]
            .rfind(' ')
            .filter(|&i| i > 0)
            .map(|i| i + 1)
            .unwrap_or(rest.len());
        if cut >= rest.len() {
            break;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\\c\n");
        rest = &rest[cut..];
        if rest.starts_with('.') || rest.starts_with('\'') {
            out.push_str("\\&");
        }
    }
    out.push_str(rest);
    out.push('\n');
}

/// Breaks a roff text line at spaces into lines of at most 80 bytes where the words allow;
/// a piece that would start with a control character gets a `\&` in front.
fn wrap(line: &str, out: &mut String) {
    let mut current = String::new();
    for word in line.split(' ') {
        if !current.is_empty() && current.len() + 1 + word.len() > 80 {
            out.push_str(&current);
            out.push('\n');
            current.clear();
        }
        if current.is_empty() {
            if word.starts_with('.') || word.starts_with('\'') {
                current.push_str("\\&");
            }
        } else {
            current.push(' ');
        }
        current.push_str(word);
    }
    out.push_str(&current);
    out.push('\n');
}

fn section_of<'a>(r: &mut Roff, title: &str, specs: impl Iterator<Item = &'a OptionSpec>) {
    r.control("SH", [title]);
    for spec in specs {
        option_entry(r, spec);
    }
}

fn option_entry(r: &mut Roff, spec: &OptionSpec) {
    r.control("TP", []);
    r.text([bold(spec.syntax())]);
    r.text([roman(spec.help())]);
    let mut facts: Vec<String> = Vec::new();
    if let Some(d) = spec.default() {
        facts.push(format!("Default: {d}."));
    }
    if let Some(m) = spec.kernel_message() {
        facts.push(format!("The kernel logs: \"{m}\"."));
    }
    if spec.status() == Status::Current {
        facts.push(format!("Kernels: {}.", spec.kernels().describe()));
        if spec.kernels() != Kernels::ALL {
            let example = spec.syntax().replace(['<', '>'], "");
            facts.push(format!(
                "A kernel without it: the word {}.",
                spec.fate_when_absent(&example)
            ));
        }
    } else {
        match spec.init() {
            Some(InitSlot::Argv) => facts.push("The word reaches init's arguments.".into()),
            Some(InitSlot::Env) => facts.push("The word reaches init's environment.".into()),
            None => {}
        }
    }
    if !facts.is_empty() {
        r.control("IP", []);
        r.text([roman(facts.join(" "))]);
    }
    let described = matches!(spec.value(), ValueKind::Fields | ValueKind::Ubd);
    if described && !spec.fields().is_empty() && spec.status() == Status::Current {
        r.control("RS", []);
        fields_list(r, spec.fields(), &[]);
        r.control("RE", []);
    }
}

fn fields_list(r: &mut Roff, fields: &[FieldSpec], required: &[&str]) {
    for f in fields {
        let mut text = f.help().to_owned();
        if required.contains(&f.name()) && !text.contains("required") {
            text.push_str(" (required)");
        }
        if let Some(d) = f.default() {
            let _ = write!(text, "; default {d}");
        }
        if let Completion::Candidates(words) = f.completion()
            && !text.contains(words.first().copied().unwrap_or(""))
        {
            let _ = write!(text, "; one of {}", words.join(", "));
        }
        r.control("IP", [format!("<{}>", f.name()).as_str(), "4"]);
        r.text([roman(text)]);
    }
}

/// Removes the indentation every non-blank line shares.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_sections(r: &mut Roff, sections: &[Section]) {
    for s in sections {
        r.control("SH", [s.title]);
        for b in &s.blocks {
            match b {
                Block::Para(t) => para(r, t),
                Block::Item(tag, t) => item(r, tag, t),
                Block::Code(t) => code(r, t),
            }
        }
    }
}

fn para(r: &mut Roff, text: &str) {
    r.control("PP", []);
    r.text([roman(text)]);
}

fn item(r: &mut Roff, tag: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(tag)]);
    r.text([roman(text)]);
}

fn code(r: &mut Roff, text: &str) {
    r.control("PP", []);
    r.control("RS", ["4"]);
    r.control("nf", []);
    r.text([roman(text)]);
    r.control("fi", []);
    r.control("RE", []);
}

fn see_also(r: &mut Roff, pages: &[(&str, &str)]) {
    let mut inlines: Vec<Inline> = Vec::new();
    for (i, (name, sec)) in pages.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(*name));
        inlines.push(roman(format!("({sec})")));
    }
    r.text(inlines);
}

/// `YYYY-MM-DD` of a Unix time (UTC), by the days-from-civil inverse of H. Hinnant.
fn civil_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date_matches_known_days() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_795_910_400), "2026-11-29");
    }

    #[test]
    fn custom_page_is_lint_shaped() {
        let page = custom_page(
            "org.umlkit.uml1",
            "5",
            "the D-Bus interface of umld",
            &Meta::umlkit("0"),
            &[Section {
                title: "DESCRIPTION",
                blocks: vec![Block::Para("x ".repeat(100)), Block::Code(".hidden".into())],
            }],
        );
        assert_eq!(page.file_name, "org.umlkit.uml1.5");
        assert!(page.text.contains(".TH ORG.UMLKIT.UML1 5 "));
        assert!(
            page.text
                .lines()
                .all(|l| l.len() <= 80 || l.starts_with('.'))
        );
        assert!(!page.text.contains(".SH DESCRIPTION\n.PP"));
        assert!(page.text.contains("\\&.hidden"));
    }

    #[test]
    fn kernel_page_documents_every_option() {
        let page = kernel_options_page(&Meta::umlkit("0"));
        for spec in all() {
            let escaped = spec.syntax().replace('-', "\\-");
            assert!(
                page.text.contains(&escaped),
                "{} is documented",
                spec.syntax()
            );
        }
    }
}
