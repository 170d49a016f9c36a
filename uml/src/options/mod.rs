//! The UML kernel's command-line options, declared once as data.
//!
//! [`all`] is one static table of every option the UML kernels umlkit knows understand (6.1 as
//! Debian builds it, checked against 6.1.176, and 7.x, checked against 7.2.12), plus the obsolete
//! ones from the old Debian man page with what the kernel really does with them. Each
//! [`OptionSpec`] says which kernels have it ([`Kernels`]: a version range and a config symbol,
//! asked of a [`Profile`] with [`OptionSpec::presence`]), how the kernel matches the word (by
//! prefix, longest first, exactly as `arch/um/kernel/um_arch.c` and `init/main.c` do), its typed
//! parser, value grammar, default, [`Status`], where it ends up if the kernel leaves it for init
//! ([`InitSlot`], [`Removal`]) and what a kernel without it does with the word ([`Fate`]), a
//! summary, a longer help text and per-field [`Completion`] hints.
//!
//! The sub-grammars live in their own tables: the `eth` transports ([`transports`]), the `vec`
//! transports and keys ([`vec_transports`], [`vec_common_keys`]) and the console channel types
//! ([`channels`]).
//!
//! Guarantee: a man page, `--help` text and bash/zsh/fish completions can be generated from these
//! tables alone; [`crate::cmdline`] parses with [`lookup`] and the entry's own parser, and
//! [`crate::check`] judges by the entry's [`Kernels`], so parser, checker and documentation
//! cannot disagree on which option a word is or which kernels have it.

#[cfg(feature = "docs")]
pub mod complete;
#[cfg(feature = "docs")]
pub mod man;
mod table;

use std::fmt;

use table::{CHANNELS, OPTIONS, TRANSPORTS, VEC_COMMON_KEYS, VEC_TRANSPORTS};

use crate::cmdline::{Arg, ParseError};
use crate::kernel::{Profile, Version};

/// Every option, in the order a reference page should list them: argv-stage UML options,
/// setup-stage UML options, generic kernel options, config-dependent ones, ones new after 6.1,
/// then obsolete ones.
pub fn all() -> &'static [OptionSpec] {
    OPTIONS
}

/// The option the kernel would hand `word` to, or `None` when no handler claims it (the kernel
/// then passes it to init).
///
/// Matching follows the kernel: a [`Matching::Prefix`] entry claims every word that starts with
/// its name, and the longest matching name wins (so `ssl-non-raw` beats `ssl`, `console=` beats
/// `con`, `debugtrace` is listed on its own although the kernel's `debug` prefix also fires).
pub fn lookup(word: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .filter(|spec| spec.matches(word))
        .max_by_key(|spec| spec.name.len())
}

/// The table entry whose [`OptionSpec::name`] is exactly `name` (e.g. `"mem="`, `"ubd"`).
pub fn by_name(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.name == name)
}

/// The `eth` transport called `name` (`daemon`, `tuntap`, …), including ones Debian never
/// builds (`pcap`, see [`TransportSpec::kernels`]).
pub fn transport(name: &str) -> Option<&'static TransportSpec> {
    TRANSPORTS.iter().find(|t| t.name == name)
}

/// Every `eth` transport.
pub fn transports() -> &'static [TransportSpec] {
    TRANSPORTS
}

/// Every `vec` transport (`transport=` values).
pub fn vec_transports() -> &'static [VecTransportSpec] {
    VEC_TRANSPORTS
}

/// The `vec` transport called `name`.
pub fn vec_transport(name: &str) -> Option<&'static VecTransportSpec> {
    VEC_TRANSPORTS.iter().find(|t| t.name == name)
}

/// Keys every `vec` transport accepts (`transport`, `mac`, `mtu`, …).
pub fn vec_common_keys() -> &'static [FieldSpec] {
    VEC_COMMON_KEYS
}

/// Every console/serial-line channel type (`fd:`, `null`, `pts`, `tty:`, …).
pub fn channels() -> &'static [ChannelSpec] {
    CHANNELS
}

/// One kernel command-line option.
#[derive(Debug)]
pub struct OptionSpec {
    pub(crate) name: &'static str,
    pub(crate) matching: Matching,
    pub(crate) syntax: &'static str,
    pub(crate) value: ValueKind,
    pub(crate) default: Option<&'static str>,
    pub(crate) stage: Stage,
    pub(crate) status: Status,
    pub(crate) kernels: Kernels,
    pub(crate) init: Option<InitSlot>,
    pub(crate) removed: Removal,
    pub(crate) absent_fate: Option<&'static str>,
    pub(crate) parse: Option<ParseFn>,
    pub(crate) units: Option<u64>,
    pub(crate) kernel_message: Option<&'static str>,
    pub(crate) summary: &'static str,
    pub(crate) help: &'static str,
    pub(crate) fields: &'static [FieldSpec],
}

/// Entries live in one static table: two are the same option when they are the same entry.
impl PartialEq for OptionSpec {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for OptionSpec {}

impl OptionSpec {
    /// The text the kernel compares words against, e.g. `mem=`, `ubd`, `ssl-non-raw`, `rw`.
    /// For [`Matching::Key`] entries it is the part before `=` (`mode`, `gdb-pid`).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// How a word is matched against [`name`](Self::name).
    pub fn matching(&self) -> Matching {
        self.matching
    }
    /// Does the kernel hand `word` to this option's handler?
    pub fn matches(&self, word: &str) -> bool {
        match self.matching {
            Matching::Prefix => word.starts_with(self.name),
            Matching::Exact => word == self.name,
            Matching::Key => word
                .split_once('=')
                .is_some_and(|(key, _)| key == self.name),
        }
    }
    /// Synopsis for a man page, e.g. `ubd<n><flags>=<file>[,<backing>][,<serial>]`.
    pub fn syntax(&self) -> &'static str {
        self.syntax
    }
    /// The value grammar.
    pub fn value(&self) -> ValueKind {
        self.value
    }
    /// What the kernel uses when the option is absent, as text (`64M`, `~/.uml/`).
    pub fn default(&self) -> Option<&'static str> {
        self.default
    }
    /// Which part of the kernel parses it.
    pub fn stage(&self) -> Stage {
        self.stage
    }
    /// Current or obsolete (obsolete on every kernel: the tt-mode options of the old man page).
    pub fn status(&self) -> Status {
        self.status
    }
    /// Which kernels have the option.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }
    /// Does the kernel described by `profile` have the option?
    pub fn presence(&self, profile: &Profile) -> Presence {
        self.kernels.presence(profile)
    }
    /// Where the word ends up on a kernel that has the option, if the handler leaves it on the
    /// command line: `Some(Argv)` for bare words like `nosysemu`, `Some(Env)` for `mem=…` on
    /// 6.1; `None` when it is consumed or removed (see [`removed_on`](Self::removed_on)).
    pub fn init_on(&self, profile: &Profile) -> Option<InitSlot> {
        match self.removed_on(profile) {
            Some(true) => None,
            _ => self.init,
        }
    }
    /// Where the word ends up when the handler leaves it on the line (the kernel's own fate of
    /// the word on the oldest kernel that has the option).
    pub fn init(&self) -> Option<InitSlot> {
        self.init
    }
    /// Does the argv-stage handler remove the word from the kernel command line (`*add = 0`,
    /// `um_arch.c`)? `None` when it is not known for this kernel's series.
    pub fn removed_on(&self, profile: &Profile) -> Option<bool> {
        match self.removed {
            Removal::Never => Some(false),
            Removal::Always => Some(true),
            Removal::Since(change) => change.reached(profile.version),
        }
    }
    /// How the handler's removal from the command line depends on the kernel.
    pub fn removal(&self) -> Removal {
        self.removed
    }
    /// The argv-stage handler removes the word from the kernel command line on every kernel
    /// (`umid=`, `xterm=`).
    pub fn removed_from_cmdline(&self) -> bool {
        self.removed == Removal::Always
    }
    /// What a kernel without the option does with `word`: the entry's own description where the
    /// generic kernel still claims the word (`debug`, `iomem=`), otherwise what
    /// `unknown_bootoption()` (`init/main.c`) does with any unclaimed word.
    pub fn fate_when_absent(&self, word: &str) -> String {
        match self.absent_fate {
            Some(fate) => fate.to_owned(),
            None => Fate::of_unclaimed(word).describe().to_owned(),
        }
    }
    /// What a kernel without the option does with the word, where the generic kernel still
    /// claims it (`debug`: the generic loglevel); `None` when the word is simply unclaimed.
    pub fn absent_fate(&self) -> Option<&'static str> {
        self.absent_fate
    }
    /// Parses the text after [`name`](Self::name) into a typed argument, for options that have
    /// a typed form.
    pub(crate) fn parser(&self) -> Option<ParseFn> {
        self.parse
    }
    /// How many units a unit option has (`ubd` 16, `con` 16, `ssl` 64), where the kernel has
    /// a limit: the parser, the checker and the completions use this one number.
    pub fn units(&self) -> Option<u64> {
        self.units
    }
    /// What the kernel logs when it sees this option at all (obsolete warnings).
    pub fn kernel_message(&self) -> Option<&'static str> {
        self.kernel_message
    }
    /// One line for completion menus and `--help`.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// A paragraph for a man page and `uml check --explain`.
    pub fn help(&self) -> &'static str {
        self.help
    }
    /// The value's fields in order, each with a completion hint. Empty for flags.
    pub fn fields(&self) -> &'static [FieldSpec] {
        self.fields
    }
    /// True for options that do nothing on any kernel (obsolete).
    pub fn is_noop(&self) -> bool {
        !matches!(self.status, Status::Current)
    }
}

/// How the kernel matches a word to an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// The word starts with the name (`strncmp` over the name's length; `ubd`, `mem=`, `quiet`).
    Prefix,
    /// The word is exactly the name (`rw`, `skas0`).
    Exact,
    /// The word is `<name>=<anything>` (unknown options that init gets in its environment).
    Key,
}

/// The shape of an option's value, for documentation and completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// No value: the word alone (`noreboot`, `ssl-non-raw`).
    Flag,
    /// A memparse size: a base-0 number with an optional `K M G T P E` suffix.
    Size,
    /// An integer.
    Number,
    /// A host path.
    Path,
    /// Free text.
    Text,
    /// Comma-separated positional fields, described by [`OptionSpec::fields`].
    Fields,
    /// `ubd<n><flags>=<file>[,<backing>][,<serial>]`.
    Ubd,
    /// A channel pair `<in>,<out>` or a single channel, see [`channels`].
    Channels,
    /// `<transport>,<positional fields>`, see [`transports`].
    Transport,
    /// `<key>=<value>,…`, see [`vec_transports`] and [`vec_common_keys`].
    KeyValues,
}

/// Which part of the kernel parses an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// UML's argv scan (`__uml_setup`, `um_arch.c`), before the kernel starts.
    Argv,
    /// UML drivers' `__setup` handlers during generic parsing (`ubd`, `con`, `eth`, …).
    Setup,
    /// Generic kernel parameters (`root=`, `init=`, `loglevel=`, early params).
    Generic,
    /// A module parameter (`virtio_uml.device=`).
    Module,
    /// Claimed by nothing in this build: passed to init.
    Unclaimed,
}

/// Whether the option still does what it promised on the kernels that have a handler for it.
/// Which kernels those are is [`Kernels`]'s business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Does what it says on the kernels of [`OptionSpec::kernels`].
    Current,
    /// Does nothing any more; the fate is in [`OptionSpec::init`] and
    /// [`OptionSpec::kernel_message`].
    Obsolete,
}

/// Parses what follows an option's name into a typed argument.
pub(crate) type ParseFn = fn(&str) -> Result<Arg, ParseError>;

/// A kernel series, `major.minor`: the option set does not change within a stable series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series(pub u32, pub u32);

impl Series {
    fn of(version: Version) -> Series {
        Series(version.major, version.minor)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Where in kernel history something changed, as precisely as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// In this series (read from the kernel source's history).
    At(Series),
    /// Somewhere after `absent` and no later than `present`: the two kernels umlkit examined
    /// (`--help`, `--showconfig`, the source, a boot) disagree, and the series between them
    /// were not examined.
    Between { absent: Series, present: Series },
}

impl Change {
    /// Has a kernel of this version the change? `None` for a series between the two examined.
    pub fn reached(self, version: Version) -> Option<bool> {
        let series = Series::of(version);
        match self {
            Change::At(s) => Some(series >= s),
            Change::Between { absent, present } => {
                if series <= absent {
                    Some(false)
                } else if series >= present {
                    Some(true)
                } else {
                    None
                }
            }
        }
    }

    fn describe_since(self) -> String {
        match self {
            Change::At(s) => format!("since {s}"),
            Change::Between { absent, present } => {
                format!("since after {absent} (absent in {absent}, present in {present})")
            }
        }
    }

    fn describe_until(self) -> String {
        match self {
            Change::At(s) => format!("removed in {s}"),
            Change::Between { absent, present } => {
                format!("removed after {absent} (present in {absent}, gone in {present})")
            }
        }
    }
}

/// Whether an argv-stage handler removes its word from the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The word stays; what reaches init is [`OptionSpec::init`].
    Never,
    /// On every kernel (`umid=`, `xterm=`).
    Always,
    /// From this change on (`mem=`, `uml_dir=` and `noreboot` reach init in 6.1, not in 7.2).
    Since(Change),
}

/// Which kernels have an option (or transport, channel, key): a version range and a config
/// symbol, all of which must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// The change that brought it; `None`: every kernel umlkit knows (6.1 and later).
    pub since: Option<Change>,
    /// The change that removed it; `None`: still there in the newest kernel examined.
    pub until: Option<Change>,
    /// The config symbol (without `CONFIG_`) the kernel must be built with.
    pub config: Option<&'static str>,
}

impl Kernels {
    /// Every kernel.
    pub const ALL: Kernels = Kernels {
        since: None,
        until: None,
        config: None,
    };

    /// Kernels built with `symbol`.
    pub const fn config(symbol: &'static str) -> Kernels {
        Kernels {
            config: Some(symbol),
            ..Kernels::ALL
        }
    }

    /// Does the kernel of `profile` have it?
    pub fn presence(&self, profile: &Profile) -> Presence {
        let since = self.since.map(|c| c.reached(profile.version));
        let until = self.until.map(|c| c.reached(profile.version));
        if since == Some(Some(false)) {
            return Presence::TooOld;
        }
        if until == Some(Some(true)) {
            return Presence::Removed;
        }
        if let Some(symbol) = self.config
            && !profile.has(symbol)
        {
            return Presence::NotBuilt(symbol);
        }
        if since == Some(None) || until == Some(None) {
            return Presence::Unknown;
        }
        Presence::Present
    }

    /// In words, for the man page: `all kernels`, `since after 6.1 (…); with CONFIG_SMP`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.since {
            parts.push(c.describe_since());
        }
        if let Some(c) = self.until {
            parts.push(c.describe_until());
        }
        if let Some(symbol) = self.config {
            parts.push(format!("built with CONFIG_{symbol}"));
        }
        if parts.is_empty() {
            "every kernel (6.1 and later)".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Whether a kernel has an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It has it.
    Present,
    /// Its series lies between the two examined kernels that disagree.
    Unknown,
    /// It came after this kernel.
    TooOld,
    /// It was removed before this kernel.
    Removed,
    /// This kernel was built without the config symbol.
    NotBuilt(&'static str),
}

impl Presence {
    /// The kernel certainly lacks it.
    pub fn is_absent(self) -> bool {
        matches!(
            self,
            Presence::TooOld | Presence::Removed | Presence::NotBuilt(_)
        )
    }

    /// Why a kernel lacks it, e.g. `was removed before 7.2`, for messages.
    pub fn reason(self, profile: &Profile) -> String {
        let series = profile.series();
        match self {
            Presence::Present => format!("is present in {series}"),
            Presence::Unknown => format!("may or may not exist in {series}"),
            Presence::TooOld => format!("came after {series}"),
            Presence::Removed => format!("was removed before {series}"),
            Presence::NotBuilt(symbol) => {
                format!("is not built into this {series} kernel (no CONFIG_{symbol})")
            }
        }
    }
}

/// What the kernel does with a word no handler claims (`unknown_bootoption()`, `init/main.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A `.` before any `=`: taken as a parameter of a module that is not there, and dropped.
    Dropped,
    /// One of init's arguments.
    Argv,
    /// One of init's environment variables.
    Env,
}

impl Fate {
    /// The fate of an unclaimed `word`. `unknown_bootoption()` looks for a `.` in the name part
    /// only (`strnchr(param, len, '.')`), so `192.168.0.100` and `foo.bar=1` are dropped while
    /// `key=a.b` reaches the environment. Verified on 7.2.12 by printing init's argv and env.
    pub fn of_unclaimed(word: &str) -> Fate {
        let name = word.split_once('=').map_or(word, |(k, _)| k);
        if name.contains('.') {
            Fate::Dropped
        } else if word.contains('=') {
            Fate::Env
        } else {
            Fate::Argv
        }
    }

    /// `is dropped`, `lands in init's argv`, `lands in init's environment`.
    pub fn describe(self) -> &'static str {
        match self {
            Fate::Dropped => "is dropped as a parameter of a module that is not there",
            Fate::Argv => "lands in init's argv",
            Fate::Env => "lands in init's environment",
        }
    }
}

/// Where an option the kernel does not consume ends up in init (`init/main.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSlot {
    /// A word without `=`: one of init's arguments.
    Argv,
    /// `name=value`: one of init's environment variables.
    Env,
}

/// One field of a value: a positional field, a `key=` of a key/value list, or the file part.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub(crate) name: &'static str,
    pub(crate) completion: Completion,
    pub(crate) default: Option<&'static str>,
    pub(crate) help: &'static str,
}

impl FieldSpec {
    /// The field's name (`mac`, `ctl`, or the `vec` key itself).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// How a shell should complete it.
    pub fn completion(&self) -> Completion {
        self.completion
    }
    /// The kernel's value when the field is empty or absent.
    pub fn default(&self) -> Option<&'static str> {
        self.default
    }
    /// One line.
    pub fn help(&self) -> &'static str {
        self.help
    }
}

/// What a completion generator should offer for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Nothing useful to offer.
    None,
    /// Any file.
    File,
    /// A directory.
    Directory,
    /// A unix socket file.
    Socket,
    /// A size (`128M`).
    Size,
    /// A number.
    Number,
    /// One of these words.
    Candidates(&'static [&'static str]),
    /// A host terminal device (`/dev/tty*`, `/dev/pts/*`).
    HostTty,
    /// A host network interface name.
    NetInterface,
    /// A MAC address.
    Mac,
    /// An IP address.
    Address,
    /// An executable on `PATH`.
    Command,
}

/// One `eth` transport.
#[derive(Debug)]
pub struct TransportSpec {
    pub(crate) name: &'static str,
    pub(crate) kernels: Kernels,
    pub(crate) ignores_extra: bool,
    pub(crate) required: &'static [&'static str],
    pub(crate) summary: &'static str,
    pub(crate) fields: &'static [FieldSpec],
}

impl TransportSpec {
    /// The name after `eth<n>=`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Which kernels have it (`CONFIG_UML_NET_<NAME>`): a kernel without it ignores the whole
    /// `eth` option without a word (`net_kern.c`).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }
    /// The kernel warns about, then ignores, fields past the last one (`daemon`, `vde`); every
    /// other transport fails with `Extra garbage on specification`.
    pub fn ignores_extra_fields(&self) -> bool {
        self.ignores_extra
    }
    /// Fields that must not be empty.
    pub fn required(&self) -> &'static [&'static str] {
        self.required
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// Positional fields after the name, in order. `slirp`'s last field repeats.
    pub fn fields(&self) -> &'static [FieldSpec] {
        self.fields
    }
}

/// One `vec` transport.
#[derive(Debug)]
pub struct VecTransportSpec {
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) keys: &'static [FieldSpec],
    pub(crate) required: &'static [&'static str],
    pub(crate) pairs: &'static [(&'static str, &'static str)],
}

impl VecTransportSpec {
    /// The `transport=` value.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
    /// Keys this transport accepts besides [`vec_common_keys`].
    pub fn keys(&self) -> &'static [FieldSpec] {
        self.keys
    }
    /// Keys that must be present.
    pub fn required(&self) -> &'static [&'static str] {
        self.required
    }
    /// Keys that must be given together or not at all.
    pub fn pairs(&self) -> &'static [(&'static str, &'static str)] {
        self.pairs
    }
}

/// One console/serial-line channel type.
#[derive(Debug)]
pub struct ChannelSpec {
    pub(crate) name: &'static str,
    pub(crate) kernels: Kernels,
    pub(crate) argument: Option<FieldSpec>,
    pub(crate) summary: &'static str,
}

impl ChannelSpec {
    /// The type as written (`fd`, `null`, `pts`, …); with an argument it is followed by `:`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Which kernels have it (`CONFIG_<TYPE>_CHAN`, `arch/um/drivers/Kconfig`).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }
    /// The part after `:` (`fd:<n>`, `port:<n>`, `tty:<device>`), if the type takes one.
    pub fn argument(&self) -> Option<&FieldSpec> {
        self.argument.as_ref()
    }
    /// One line.
    pub fn summary(&self) -> &'static str {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(lookup("ssl-non-raw").unwrap().name(), "ssl-non-raw");
        assert_eq!(lookup("ssl3=pts").unwrap().name(), "ssl");
        assert_eq!(lookup("console=tty0").unwrap().name(), "console=");
        assert_eq!(lookup("con3=null").unwrap().name(), "con");
        assert_eq!(lookup("rootfstype=hostfs").unwrap().name(), "rootfstype=");
        assert_eq!(lookup("debugtrace").unwrap().name(), "debugtrace");
        assert_eq!(lookup("udbx").unwrap().name(), "udb");
    }

    #[test]
    fn unknown_words_match_nothing() {
        assert!(lookup("hello").is_none());
        assert!(lookup("foo=bar").is_none());
        // `rw` is matched exactly by the generic parser; `rwx` goes to init.
        assert!(lookup("rwx").is_none());
    }

    #[test]
    fn obsolete_options_say_where_they_land() {
        let mode = lookup("mode=tt").unwrap();
        assert_eq!(mode.status(), Status::Obsolete);
        assert_eq!(mode.init(), Some(InitSlot::Env));
        assert_eq!(lookup("honeypot").unwrap().init(), Some(InitSlot::Argv));
        assert_eq!(lookup("mem=64M").unwrap().init(), Some(InitSlot::Env));
        assert_eq!(lookup("umid=x").unwrap().init(), None);
    }

    #[test]
    fn table_is_consistent() {
        for spec in all() {
            assert!(!spec.summary().is_empty(), "{} has a summary", spec.name());
            assert!(!spec.help().is_empty(), "{} has help", spec.name());
            assert!(spec.syntax().starts_with(spec.name().trim_end_matches('=')));
            assert_eq!(
                all()
                    .iter()
                    .filter(|s| s.name() == spec.name() && s.matching() == spec.matching())
                    .count(),
                1,
                "{} is declared once",
                spec.name()
            );
            if spec.value() == ValueKind::Flag {
                assert!(spec.fields().is_empty(), "{} is a flag", spec.name());
            }
        }
        for t in transports() {
            for r in t.required() {
                assert!(t.fields().iter().any(|f| f.name() == *r));
            }
        }
        for t in vec_transports() {
            for (a, b) in t.pairs() {
                assert!(t.keys().iter().any(|f| f.name() == *a));
                assert!(t.keys().iter().any(|f| f.name() == *b));
            }
        }
    }
}
