//! Shell completions: for the UML kernel's command line, generated from the option table, and
//! for clap commands (`uml`, later `umlfs`, `umld`), clap_complete's static scripts plus small
//! hooks for the values only the running system knows.
//!
//! The kernel scripts ([`kernel_scripts`]) share one candidate engine written in POSIX shell
//! (`engine.rs`) that bash and zsh run in-process and fish runs through `sh -c`, so the three
//! shells offer the same words: option keys with their summaries, ubd units and flags, files for
//! disks, channel types, transports and their fields, vec keys, sizes, sockets and directories.
//!
//! They offer what the kernel in question has ([`offered_on`]). For `linux …` (`linux.uml`,
//! `vmlinux`, `./build/linux`) that is the kernel the command word runs, found as the shell
//! would (a path as written, a name on `PATH`); for the kernel words of `uml check WORD…` and
//! `uml run --arg WORD` the kernel `uml` would run: the line's `--kernel` or `--kernel-version`,
//! else its default (`$UML_KERNEL`, `uml kernel use`, `linux` on `PATH`, a built kernel). Each
//! TAB asks that kernel's profile once, in milliseconds: `uml kernel info --json`, which caches
//! it by the binary's identity, or, when `uml` is not on `PATH` or does not answer, the kernel's
//! own `--version` and `--showconfig`; each under `timeout` and silent on error. Every candidate
//! not every kernel has carries a guard generated from its [`Kernels`] (a series range and a
//! config symbol), so `eth` and its transports are offered for 6.1 and `seccomp=` for 7.x,
//! `ncpus=` only for a kernel built with `CONFIG_SMP`, the `pcap` transport only for one with
//! `CONFIG_UML_NET_PCAP`. When no profile can be had (no kernel, not a UML kernel, not
//! runnable), the scripts offer what Debian's builds of 6.1 and 7.x have ([`OFFERED_KERNELS`],
//! [`offered`]): the union, `eth` as well as `seccomp=`. Obsolete options and the warning-only
//! `udb` and `debug` are documented in the man page and never completed; `uml check` says which
//! words the kernel that will run lacks.
//!
//! The command hooks ([`command_scripts`]) add, for the arguments each binary declares with a
//! [`Hook`] (by clap argument id; the generator never guesses from an argument's name):
//! running umids (the directories in the [`Hook::UmlDir`] option's directory (`uml --uml-dir`),
//! else `$UML_DIR`, else `~/.uml`, whose names do
//! not start with `.`; the scripts read the directory rather than run `uml list`, so completion
//! stays instant and works while the binary is being rebuilt), device names for `config` and
//! `remove`, and guest lines for `console`. Arguments that take kernel words (`uml check
//! WORD…`, `uml run --arg WORD`) are completed by the same engine as `linux …`.
//!
//! Install paths: bash-completion loads a file named after the command, so the kernel's bash
//! and fish scripts are written once per name in [`KERNEL_NAMES`]; zsh's `_linux` names them
//! all on its `#compdef` line.

mod engine;

use std::fmt::Write as _;

use clap::Command;
use clap_complete::Shell;

use super::{Kernels, OptionSpec, Status, ValueKind, all};
use crate::kernel::{Profile, Version};

/// The kernels whose options the completions offer when they cannot ask the kernel in question
/// for its profile: Debian's builds of 6.1 and 7.2.
pub const OFFERED_KERNELS: &[Version] = &[Version::new(6, 1, 0), Version::new(7, 2, 0)];

/// Does one of [`OFFERED_KERNELS`] have it?
pub(crate) fn on_offered_kernel(kernels: Kernels) -> bool {
    OFFERED_KERNELS
        .iter()
        .any(|v| !kernels.presence(&Profile::assumed(*v)).is_absent())
}

/// The ubd flags (`arch/um/drivers/ubd_kern.c`, `ubd_setup_common`): the table's help text names
/// them; completion needs each with a word of help.
pub(crate) const UBD_FLAGS: &[(char, &str)] = &[
    ('r', "read-only"),
    ('s', "synchronous I/O (O_SYNC)"),
    ('d', "raw: no COW detection"),
    ('c', "shared: no host lock"),
    ('t', "no discard (TRIM)"),
];

/// Can the kernel completions offer `spec` at all? Current options can, not obsolete ones nor
/// current ones whose only effect is a warning (`udb`, the typo catcher, and `debug`, which only
/// says it is not needed).
pub fn offerable(spec: &OptionSpec) -> bool {
    spec.status() == Status::Current && spec.kernel_message().is_none()
}

/// Is `spec` offered when no profile of the kernel can be had? Offerable options that one of
/// [`OFFERED_KERNELS`] has are; ones those kernels are not built with (`dtb=`, `ncpus=`) are
/// not.
pub fn offered(spec: &OptionSpec) -> bool {
    offerable(spec) && on_offered_kernel(spec.kernels())
}

/// Is `spec` offered for the kernel of `profile`? Offerable options that it has, or may have
/// (a series between the two examined).
pub fn offered_on(spec: &OptionSpec, profile: &Profile) -> bool {
    offerable(spec) && !spec.presence(profile).is_absent()
}

/// The candidate engine alone, as POSIX shell: `__uml_kernel_profile` and
/// `__uml_kernel_candidates` (see `engine.rs`), for tests that drive it without a completion
/// system.
pub fn engine_script() -> String {
    engine::engine()
}

/// What `__uml_kernel_profile` prints for the kernel of `profile`, and the shells hand the
/// engine in `$__uk_prof`: `SERIES SYMBOL...`.
pub fn profile_line(profile: &Profile) -> String {
    engine::profile_line(profile)
}

/// How many units a unit option (`ubd`, `con`, `ssl`, `eth`, `vec`) has, for listing: the
/// kernel's limit from the table where it has one ([`OptionSpec::units`]), else 4.
pub(crate) fn unit_count(spec: &OptionSpec) -> u32 {
    spec.units()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(4)
}

/// Names under which the UML kernel is installed, each completed the same way.
pub const KERNEL_NAMES: &[&str] = &["linux", "linux.uml", "vmlinux"];

/// One generated file, its path relative to `completions/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `bash/linux`, `zsh/_uml`, `fish/uml.fish`, …
    pub path: String,
    /// The script.
    pub text: String,
}

const HEADER: &str = "generated by umlkit from its option model; do not edit";

/// The kernel's scripts: bash (one per name, since bash-completion loads by command name),
/// zsh (`_linux`, one `#compdef` line for every name) and fish (one per name, for autoloading).
pub fn kernel_scripts() -> Vec<Script> {
    let names = KERNEL_NAMES.join(" ");
    let bash = format!(
        "# bash completion for the User-mode Linux kernel ({names}); {HEADER}\n\
         {support}\
         _uml_kernel() {{\n    \
             local cur prev words cword __uk_prof\n    \
             _init_completion -n =: || return\n    \
             # What the kernel the command word runs has.\n    \
             __uk_prof=$(__uml_kernel_profile cmd \"${{words[0]}}\")\n    \
             __uml_kernel_reply \"$cur\"\n\
         }}\n\
         complete -F _uml_kernel {names}\n",
        support = bash_kernel_support(),
    );
    let zsh = format!(
        "#compdef {names}\n# zsh completion for the User-mode Linux kernel; {HEADER}\n\
         {support}\
         _uml_kernel() {{\n    \
             # What the kernel the command word runs has.\n    \
             local __uk_prof\n    \
             __uk_prof=$(__uml_kernel_profile cmd \"${{(Q)words[1]}}\")\n    \
             __uml_kernel_compadd\n\
         }}\n\
         _uml_kernel \"$@\"\n",
        support = zsh_kernel_support(),
    );
    let fish = format!(
        "# fish completion for the User-mode Linux kernel ({names}); {HEADER}\n\
         {support}\
         complete {cs} -f -a '(__uml_kernel_complete)'\n",
        support = fish_kernel_support(),
        cs = KERNEL_NAMES
            .iter()
            .map(|n| format!("-c {n}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mut out = Vec::new();
    for name in KERNEL_NAMES {
        out.push(Script {
            path: format!("bash/{name}"),
            text: bash.clone(),
        });
    }
    out.push(Script {
        path: "zsh/_linux".into(),
        text: zsh,
    });
    for name in KERNEL_NAMES {
        out.push(Script {
            path: format!("fish/{name}.fish"),
            text: fish.clone(),
        });
    }
    out
}

/// bash: the engine and `__uml_kernel_reply CUR`, which fills COMPREPLY for a kernel word.
fn bash_kernel_support() -> String {
    format!(
        "{engine}\
         __uml_kernel_reply() {{\n    \
             local cur=$1 line tok prefix nospace=\n    \
             # bash breaks words at = and :, and replaces only the text after the last one.\n    \
             prefix=${{cur%\"${{cur##*[=:]}}\"}}\n    \
             COMPREPLY=()\n    \
             # (tab is a blank to read: an empty description would shift the fields)\n    \
             while IFS= read -r line; do\n        \
                 tok=${{line%%$'\\t'*}}\n        \
                 [ -n \"$tok\" ] || continue\n        \
                 COMPREPLY+=(\"${{tok#\"$prefix\"}}\")\n        \
                 [ \"${{line##*$'\\t'}}\" = n ] && nospace=1\n    \
             done < <(__uml_kernel_candidates \"$cur\")\n    \
             [ -n \"$nospace\" ] && compopt -o nospace\n    \
             return 0\n\
         }}\n",
        engine = engine::engine()
    )
}

/// zsh: the engine (sticky sh emulation) and `__uml_kernel_compadd`, which adds the matches
/// for `$PREFIX` with `compset -P` so that only the part after the last `=`, `:` or `,` shows.
fn zsh_kernel_support() -> String {
    format!(
        "emulate sh -c {engine_q}\n\
         __uml_kernel_compadd() {{\n    \
             local cur=$PREFIX line tok rest desc pfx\n    \
             local -a lines s_toks s_disp n_toks n_disp\n    \
             lines=(\"${{(@f)$(__uml_kernel_candidates \"$cur\")}}\")\n    \
             compset -P '*[=:,]'\n    \
             pfx=${{cur[1,$(( ${{#cur}} - ${{#PREFIX}} ))]}}\n    \
             for line in $lines; do\n        \
                 [[ -n $line ]] || continue\n        \
                 tok=${{line%%$'\\t'*}}\n        \
                 rest=${{line#*$'\\t'}}\n        \
                 desc=${{rest%$'\\t'*}}\n        \
                 tok=${{tok[$(( ${{#pfx}} + 1 )),-1]}}\n        \
                 if [[ $line == *$'\\t'n ]]; then\n            \
                     n_toks+=(\"$tok\"); n_disp+=(\"$tok${{desc:+  -- $desc}}\")\n        \
                 else\n            \
                     s_toks+=(\"$tok\"); s_disp+=(\"$tok${{desc:+  -- $desc}}\")\n        \
                 fi\n    \
             done\n    \
             (( ${{#n_toks}} )) && compadd -Q -S '' -l -d n_disp -a n_toks\n    \
             (( ${{#s_toks}} )) && compadd -Q -l -d s_disp -a s_toks\n    \
             return 0\n\
         }}\n",
        engine_q = sh_quote(&engine::engine())
    )
}

/// fish: the engine as a string for `sh -c`; `__uml_kernel_offer PROFILE`, which prints the
/// candidates for the current token, and `__uml_kernel_complete`, which does so for the kernel
/// the command word runs.
fn fish_kernel_support() -> String {
    format!(
        "set -g __uml_kernel_engine {engine_q}\n\
         function __uml_kernel_complete\n    \
             set -l cmd (commandline -opc)[1]\n    \
             __uml_kernel_offer (sh -c \"$__uml_kernel_engine\"'\n__uml_kernel_profile cmd \"$1\"' sh \"$cmd\")\n\
         end\n\
         function __uml_kernel_offer\n    \
             set -l word (commandline -ct)\n    \
             # fish adds a space after a single candidate unless it ends in / = : , and the\n    \
             # like; an unfinished stem (ubd) is replaced by what it expands to.\n    \
             for i in 1 2 3\n        \
                 set -l c (sh -c \"$__uml_kernel_engine\"'\n__uk_prof=$2\n__uml_kernel_candidates \"$1\"' sh \"$word\" \"$argv[1]\")\n        \
                 if test (count $c) = 1; and string match -qr '\\tn$' -- $c[1]; \
         and not string match -qr '[/=:,.@-]\\t' -- $c[1]\n            \
                     set word (string replace -r '\\t.*' '' -- $c[1])\n            \
                     continue\n        \
                 end\n        \
                 string replace -r '\\t?\\t[sn]$' '' -- $c\n        \
                 return\n    \
             end\n\
         end\n",
        engine_q = fish_quote(&engine::engine()),
    )
}

/// What one argument of a binary completes to beyond clap's own static completion. Each binary
/// declares its hooks as `(clap argument id, Hook)` pairs and hands them to [`command_scripts`],
/// which applies a hook to every argument of that id where the hook fits (a positional value in
/// the command, or in any visible subcommand when it has some) and refuses a declaration that
/// fits no argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A positional argument naming a running instance: its umid.
    Umid,
    /// A positional argument naming a device an instance's mconsole `config`/`remove` knows
    /// (`ubd1`, `con0`, `eth0`, `mem`).
    Device,
    /// A positional argument naming a console or serial line (`con0`, `ssl1`).
    Line,
    /// A positional umlfs source: a running instance's umid followed by `:`, or a file.
    Source,
    /// A positional argument or option of a subcommand that takes kernel command-line words
    /// (`uml check WORD…`, `uml run --arg WORD`), completed like `linux …` for the kernel the
    /// line names.
    KernelWords,
    /// An option naming the kernel those words are for (`--kernel`), in a subcommand with
    /// [`Hook::KernelWords`].
    Kernel,
    /// An option naming only the kernel's version (`--kernel-version`), likewise.
    KernelVersion,
    /// An option naming the uml_dir in which running umids are found (`--uml-dir`). Without
    /// one, the umids are those of `$UML_DIR`, else `~/.uml`.
    UmlDir,
    /// An option whose value is a comma-separated list of these words (`umlfs -o`), each
    /// with a line of help; a word spelled `NAME=VALUE` takes a value and is offered as
    /// `NAME=`. Each piece of the list is completed on its own.
    CommaList(&'static [(&'static str, &'static str)]),
}

impl Hook {
    fn dynamic(self) -> Option<Dynamic> {
        match self {
            Hook::Umid => Some(Dynamic::Umid),
            Hook::Device => Some(Dynamic::Device),
            Hook::Line => Some(Dynamic::Line),
            Hook::Source => Some(Dynamic::Source),
            Hook::KernelWords
            | Hook::Kernel
            | Hook::KernelVersion
            | Hook::UmlDir
            | Hook::CommaList(_) => None,
        }
    }

    /// Where the hook fits, for an error.
    fn place(self) -> &'static str {
        match self {
            Hook::Umid | Hook::Device | Hook::Line | Hook::Source => {
                "a positional argument of the command or of a visible subcommand"
            }
            Hook::KernelWords => "an argument of a visible subcommand",
            Hook::Kernel | Hook::KernelVersion => {
                "an option with a long name in a subcommand with kernel words"
            }
            Hook::UmlDir => "an option with a long name",
            Hook::CommaList(_) => "option that takes a value",
        }
    }
}

/// A [`Hook`] declaration that fits no argument of the command: a renamed argument, a hook on
/// the wrong kind of argument, or a second hook for the same id.
#[derive(Debug, thiserror::Error)]
#[error(
    "{bin}: the completion hook {hook:?} is declared for the argument id {id:?}, but no {place} has that id"
)]
pub struct HookError {
    /// The binary whose completions were asked for.
    pub bin: String,
    /// The declared clap argument id.
    pub id: String,
    /// The declared hook.
    pub hook: Hook,
    place: &'static str,
}

/// What a hook completes for a positional argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dynamic {
    /// A running instance's umid.
    Umid,
    /// A device an instance's mconsole `config`/`remove` knows (`ubd1`, `con0`, `eth0`, `mem`).
    Device,
    /// A console or serial line (`con0`, `ssl1`).
    Line,
    /// A umlfs source: a running instance's umid followed by `:`, or a file (an image).
    Source,
}

/// The hook declared for an argument, if any.
fn hook_of(hooks: &[(&str, Hook)], arg: &clap::Arg) -> Option<Hook> {
    let id = arg.get_id().as_str();
    hooks.iter().find(|(h, _)| *h == id).map(|(_, hook)| *hook)
}

/// The dynamic kind a positional argument is declared with.
fn dynamic_of(
    hooks: &[(&str, Hook)],
    arg: &clap::Arg,
    used: &mut Vec<(String, Hook)>,
) -> Option<Dynamic> {
    let hook = hook_of(hooks, arg)?;
    let kind = hook.dynamic()?;
    used.push((arg.get_id().to_string(), hook));
    Some(kind)
}

/// Every `(subcommand, positional index, kind)` with a dynamic value; the ids it used go to
/// `used`.
fn dynamic_slots(
    cmd: &Command,
    hooks: &[(&str, Hook)],
    used: &mut Vec<(String, Hook)>,
) -> Vec<(String, usize, Dynamic)> {
    let mut slots = Vec::new();
    // A command without subcommands (umlfs): its own positionals, under the empty name.
    if cmd.get_subcommands().next().is_none() {
        let mut positionals: Vec<&clap::Arg> = cmd.get_positionals().collect();
        positionals.sort_by_key(|a| a.get_index().unwrap_or(usize::MAX));
        for (i, arg) in positionals.iter().enumerate() {
            if let Some(kind) = dynamic_of(hooks, arg, used) {
                slots.push((String::new(), i, kind));
            }
        }
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut positionals: Vec<&clap::Arg> = sub.get_positionals().collect();
        positionals.sort_by_key(|a| a.get_index().unwrap_or(usize::MAX));
        for (i, arg) in positionals.iter().enumerate() {
            if let Some(kind) = dynamic_of(hooks, arg, used) {
                slots.push((sub.get_name().to_owned(), i, kind));
                for alias in sub.get_visible_aliases() {
                    slots.push((alias.to_owned(), i, kind));
                }
            }
        }
    }
    slots
}

/// Options (of any subcommand) that take a value in the next word, so a hook does not count
/// that word as a positional argument.
fn value_options(cmd: &Command) -> Vec<String> {
    let mut out: Vec<String> = options_of(cmd)
        .filter(|arg| arg.get_action().takes_values())
        .flat_map(spellings_of)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every option (not positional argument) of `cmd` and of its subcommands, at any depth.
fn options_of(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    let mut commands = vec![cmd];
    let mut i = 0;
    while let Some(c) = commands.get(i) {
        commands.extend(c.get_subcommands());
        i += 1;
    }
    commands
        .into_iter()
        .flat_map(|c| c.get_arguments())
        .filter(|a| !a.is_positional())
}

/// Arguments that take kernel command-line words, completed like `linux …`: the positionals
/// (`uml check WORD…`) and options (`uml run --arg`) declared [`Hook::KernelWords`].
#[derive(Debug, Default)]
struct KernelArgs {
    /// `(subcommand, positional id)`.
    positional: Vec<(String, String)>,
    /// `(subcommand, spellings)`: `--arg`, `-a`.
    options: Vec<(String, Vec<String>)>,
    /// The options of those subcommands that name the kernel the words are for
    /// ([`Hook::Kernel`]: `--kernel`), and its version alone ([`Hook::KernelVersion`]:
    /// `--kernel-version`).
    kernel: Vec<String>,
    kernel_version: Vec<String>,
}

fn kernel_args(
    cmd: &Command,
    hooks: &[(&str, Hook)],
    used: &mut Vec<(String, Hook)>,
) -> KernelArgs {
    let mut out = KernelArgs::default();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        for arg in sub.get_arguments() {
            if hook_of(hooks, arg) != Some(Hook::KernelWords) {
                continue;
            }
            used.push((arg.get_id().to_string(), Hook::KernelWords));
            if arg.is_positional() {
                out.positional
                    .push((sub.get_name().to_owned(), arg.get_id().to_string()));
            } else {
                out.options
                    .push((sub.get_name().to_owned(), spellings_of(arg)));
            }
        }
    }
    let mut subs: Vec<&str> = out.positional.iter().map(|(s, _)| s.as_str()).collect();
    subs.extend(out.options.iter().map(|(s, _)| s.as_str()));
    for sub in cmd
        .get_subcommands()
        .filter(|s| subs.contains(&s.get_name()))
    {
        for arg in sub.get_arguments().filter(|a| !a.is_positional()) {
            let (hook, list) = match hook_of(hooks, arg) {
                Some(Hook::Kernel) => (Hook::Kernel, &mut out.kernel),
                Some(Hook::KernelVersion) => (Hook::KernelVersion, &mut out.kernel_version),
                _ => continue,
            };
            for l in arg.get_long_and_visible_aliases().unwrap_or_default() {
                list.push(format!("--{l}"));
                used.push((arg.get_id().to_string(), hook));
            }
        }
    }
    for list in [&mut out.kernel, &mut out.kernel_version] {
        list.sort();
        list.dedup();
    }
    out
}

/// The words offered for [`Dynamic::Device`] and [`Dynamic::Line`].
fn device_words(kind: Dynamic) -> Vec<String> {
    let mut words = Vec::new();
    // mconsole `config`/`remove` take the devices of the unit options; `console` the lines.
    let wanted: &[ValueKind] = match kind {
        Dynamic::Device => &[ValueKind::Ubd, ValueKind::Channels, ValueKind::Transport],
        Dynamic::Line => &[ValueKind::Channels],
        Dynamic::Umid | Dynamic::Source => &[],
    };
    for spec in all().iter().filter(|s| wanted.contains(&s.value())) {
        for u in 0..unit_count(spec) {
            words.push(format!("{}{u}", spec.name()));
        }
    }
    if kind == Dynamic::Device {
        words.push("mem".into());
    }
    words
}

/// The spellings of the options declared [`Hook::UmlDir`] (`--uml-dir`), in the command or
/// any subcommand.
fn uml_dir_options(
    cmd: &Command,
    hooks: &[(&str, Hook)],
    used: &mut Vec<(String, Hook)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for arg in options_of(cmd).filter(|a| hook_of(hooks, a) == Some(Hook::UmlDir)) {
        for l in arg.get_long_and_visible_aliases().unwrap_or_default() {
            out.push(format!("--{l}"));
            used.push((arg.get_id().to_string(), Hook::UmlDir));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// An option declared [`Hook::CommaList`]: its spellings (`-o`, `--options`) and words.
struct CommaList {
    spellings: Vec<String>,
    words: &'static [(&'static str, &'static str)],
}

impl CommaList {
    /// The candidates: `uid=N` is offered as `uid=`.
    fn candidates(&self) -> impl Iterator<Item = (String, &'static str)> + '_ {
        self.words.iter().map(|(w, help)| match w.split_once('=') {
            Some((name, _)) => (format!("{name}="), *help),
            None => ((*w).to_owned(), *help),
        })
    }
}

/// How an option is written: `--long` and its visible aliases, then `-s`.
fn spellings_of(arg: &clap::Arg) -> Vec<String> {
    let mut spellings: Vec<String> = arg
        .get_long_and_visible_aliases()
        .unwrap_or_default()
        .iter()
        .map(|l| format!("--{l}"))
        .collect();
    if let Some(c) = arg.get_short() {
        spellings.push(format!("-{c}"));
    }
    spellings
}

/// The options (of the command or any subcommand) declared [`Hook::CommaList`].
fn comma_lists(
    cmd: &Command,
    hooks: &[(&str, Hook)],
    used: &mut Vec<(String, Hook)>,
) -> Vec<CommaList> {
    let mut out = Vec::new();
    for arg in options_of(cmd).filter(|a| a.get_action().takes_values()) {
        if let Some(Hook::CommaList(words)) = hook_of(hooks, arg) {
            used.push((arg.get_id().to_string(), Hook::CommaList(words)));
            out.push(CommaList {
                spellings: spellings_of(arg),
                words,
            });
        }
    }
    out
}

/// The completions of a clap command `bin` for bash, zsh and fish, with the hooks `bin`
/// declares for its arguments (`(clap argument id, hook)`).
///
/// # Errors
///
/// [`HookError`] when a declared id names no argument the hook fits.
pub fn command_scripts(
    cmd: Command,
    bin: &str,
    hooks: &[(&str, Hook)],
) -> Result<Vec<Script>, HookError> {
    let mut cmd = cmd;
    cmd.build();
    let mut used = Vec::new();
    let slots = dynamic_slots(&cmd, hooks, &mut used);
    let value_opts = value_options(&cmd);
    let kernel = kernel_args(&cmd, hooks, &mut used);
    let uml_dir = uml_dir_options(&cmd, hooks, &mut used);
    let lists = comma_lists(&cmd, hooks, &mut used);
    // A declaration applied nowhere: an id no argument has, a hook on the wrong kind of
    // argument, or a second hook for an id (the first one wins).
    let unused = hooks
        .iter()
        .find(|(id, hook)| !used.iter().any(|(u, h)| u == id && h == hook));
    if let Some((id, hook)) = unused {
        return Err(HookError {
            bin: bin.to_owned(),
            id: (*id).to_owned(),
            hook: *hook,
            place: hook.place(),
        });
    }
    let hidden: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut out = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), bin, &mut buf);
        let base = drop_hidden(shell, &String::from_utf8_lossy(&buf), &hidden);
        let f = bin.replace('-', "_");
        let (path, text) = match shell {
            Shell::Bash => (
                format!("bash/{bin}"),
                bash_hooks(&base, bin, &f, &slots, &kernel, &value_opts, &uml_dir)
                    + &bash_lists(bin, &f, &lists),
            ),
            Shell::Zsh => (
                format!("zsh/_{bin}"),
                zsh_hooks(&base, &f, hooks, &slots, &kernel, &uml_dir, &lists),
            ),
            _ => (
                format!("fish/{bin}.fish"),
                fish_hooks(&base, bin, &f, &slots, &kernel, &value_opts, &uml_dir)
                    + &fish_lists(bin, &f, &lists),
            ),
        };
        out.push(Script { path, text });
    }
    Ok(out)
}

/// clap_complete offers hidden subcommands (`uml generate`) like any other; take them out of
/// the lists a user sees. Their parsing branches stay, unreachable from a listing.
fn drop_hidden(shell: Shell, text: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let mut line = line.to_owned();
        let mut keep = true;
        for h in hidden {
            match shell {
                Shell::Bash if trimmed.starts_with("opts=\"") => {
                    line = line
                        .split(' ')
                        .filter(|w| w != h && *w != format!("{h}\""))
                        .collect::<Vec<_>>()
                        .join(" ");
                    if !line.ends_with('"') {
                        line.push('"');
                    }
                }
                Shell::Zsh if trimmed.starts_with(&format!("'{h}:")) => keep = false,
                Shell::Fish if line.contains(&format!("-a \"{h}\"")) => keep = false,
                _ => {}
            }
        }
        if keep {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn slot_cases(slots: &[(String, usize, Dynamic)], kind: Dynamic, sep: &str) -> String {
    slots
        .iter()
        .filter(|(_, _, k)| *k == kind)
        .map(|(s, i, _)| format!("{s}:{i}"))
        .collect::<Vec<_>>()
        .join(sep)
}

fn bash_hooks(
    base: &str,
    bin: &str,
    f: &str,
    slots: &[(String, usize, Dynamic)],
    kernel: &KernelArgs,
    value_opts: &[String],
    uml_dir: &[String],
) -> String {
    let mut s = format!("# bash completion for {bin}; {HEADER}\n");
    // clap_complete registers its function last; ours replaces that registration.
    s.push_str(base);
    s.push_str(&bash_kernel_support());
    let kernel_opts: Vec<String> = kernel
        .options
        .iter()
        .flat_map(|(sub, sp)| sp.iter().map(move |o| format!("{sub}:{o}")))
        .collect();
    let kernel_subs: Vec<String> = kernel.positional.iter().map(|(s, _)| s.clone()).collect();
    let _ = write!(
        s,
        "\n# Running instances: the directories of the uml_dir, as `uml list` finds them.\n\
         __{f}_umids() {{\n    \
             local d=$1 i\n    \
             [ -n \"$d\" ] || d=${{UML_DIR:-$HOME/.uml}}\n    \
             for i in \"$d\"/*/; do\n        \
                 [ -d \"$i\" ] || continue\n        \
                 i=${{i%/}}\n        \
                 printf '%s\\n' \"${{i##*/}}\"\n    \
             done\n\
         }}\n\
         _{f}_dynamic() {{\n    \
             local cur prev words cword i w sub= pos=0 dir= skip= kern= kver= __uk_prof\n    \
             _init_completion -n =: || return\n    \
             for ((i = 1; i < cword; i++)); do\n        \
                 w=${{words[i]}}\n        \
                 if [ -n \"$skip\" ]; then skip=; continue; fi\n        \
                 case $w in\n        \
                 {udir}) skip=1; dir=${{words[i+1]}} ;;\n        \
                 {udir_eq}) dir=${{w#*=}} ;;\n        \
                 {kernel}) skip=1; kern=${{words[i+1]}} ;;\n        \
                 {kernel_eq}) kern=${{w#*=}} ;;\n        \
                 {kver}) skip=1; kver=${{words[i+1]}} ;;\n        \
                 {kver_eq}) kver=${{w#*=}} ;;\n        \
                 {vals}) skip=1 ;;\n        \
                 -*) ;;\n        \
                 *) if [ -z \"$sub\" ]; then sub=$w; else pos=$((pos + 1)); fi ;;\n        \
                 esac\n    \
             done\n    \
             dir=${{dir/#\\~/$HOME}}\n    \
             kern=${{kern/#\\~/$HOME}}\n    \
             # Kernel words: for the kernel {bin} would run (--kernel, --kernel-version, its default).\n    \
             case $sub:$prev in\n    \
             {kernel_opts})\n        \
                 __uk_prof=$(__uml_kernel_profile uml \"${{words[0]}}\" \"$kern\" \"$kver\")\n        \
                 __uml_kernel_reply \"$cur\"; return 0 ;;\n    \
             esac\n    \
             case $cur in -*) _{f} \"$@\"; return ;; esac\n    \
             case $sub in\n    \
             {kernel_subs})\n        \
                 __uk_prof=$(__uml_kernel_profile uml \"${{words[0]}}\" \"$kern\" \"$kver\")\n        \
                 __uml_kernel_reply \"$cur\"; return 0 ;;\n    \
             esac\n    \
             case $sub:$pos in\n    \
             {umid}) COMPREPLY=($(compgen -W \"$(__{f}_umids \"$dir\")\" -- \"$cur\")); return 0 ;;\n    \
             {device}) COMPREPLY=($(compgen -W '{device_words}' -- \"$cur\")); return 0 ;;\n    \
             {line}) COMPREPLY=($(compgen -W '{line_words}' -- \"$cur\")); return 0 ;;\n    \
             {source}) COMPREPLY=($(compgen -W \"$(__{f}_umids \"$dir\" | sed 's/$/:/')\" -- \"$cur\") $(compgen -f -- \"$cur\")); compopt -o nospace; return 0 ;;\n    \
             esac\n    \
             _{f} \"$@\"\n\
         }}\n\
         complete -F _{f}_dynamic -o nosort -o bashdefault -o default {bin}\n",
        vals = or_pattern(value_opts),
        udir = or_pattern(uml_dir),
        udir_eq = or_pattern(&with_value(uml_dir)),
        kernel = or_pattern(&kernel.kernel),
        kernel_eq = or_pattern(&with_value(&kernel.kernel)),
        kver = or_pattern(&kernel.kernel_version),
        kver_eq = or_pattern(&with_value(&kernel.kernel_version)),
        kernel_opts = or_pattern(&kernel_opts),
        kernel_subs = or_pattern(&kernel_subs),
        umid = or_case(&slot_cases(slots, Dynamic::Umid, "|")),
        device = or_case(&slot_cases(slots, Dynamic::Device, "|")),
        line = or_case(&slot_cases(slots, Dynamic::Line, "|")),
        source = or_case(&slot_cases(slots, Dynamic::Source, "|")),
        device_words = device_words(Dynamic::Device).join(" "),
        line_words = device_words(Dynamic::Line).join(" "),
    );
    s
}

/// bash: the pieces of [`Hook::CommaList`] values, in a function that hands every other word
/// to the hooks' and takes over the registration.
fn bash_lists(bin: &str, f: &str, lists: &[CommaList]) -> String {
    if lists.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n# Comma-separated lists: each piece completed on its own, after the pieces before it.\n",
    );
    let mut cases = String::new();
    for (k, list) in lists.iter().enumerate() {
        let words: Vec<String> = list.candidates().map(|(w, _)| w).collect();
        let _ = write!(
            s,
            "__{f}_list_{k}() {{\n    \
                 local piece=${{cur##*,}} keep=${{cur%\"${{cur##*[=:]}}\"}}\n    \
                 COMPREPLY=($(compgen -P \"${{cur%\"$piece\"}}\" -W {words} -- \"$piece\"))\n    \
                 # readline replaces only what follows the last = or : of the word.\n    \
                 COMPREPLY=(\"${{COMPREPLY[@]#\"$keep\"}}\")\n    \
                 compopt -o nospace\n\
             }}\n",
            words = sh_quote(&words.join(" ")),
        );
        let _ = writeln!(
            cases,
            "    {}) __{f}_list_{k}; return 0 ;;",
            list.spellings.join("|")
        );
    }
    let _ = write!(
        s,
        "_{f}_lists() {{\n    \
             local cur prev words cword\n    \
             _init_completion -n =: || return\n    \
             case $prev in\n\
         {cases}    \
             esac\n    \
             _{f}_dynamic \"$@\"\n\
         }}\n\
         complete -F _{f}_lists -o nosort -o bashdefault -o default {bin}\n"
    );
    s
}

/// fish: the pieces of [`Hook::CommaList`] values, each offered after the pieces before it.
fn fish_lists(bin: &str, f: &str, lists: &[CommaList]) -> String {
    let mut s = String::new();
    for (k, list) in lists.iter().enumerate() {
        let pairs: Vec<String> = list
            .candidates()
            .map(|(w, help)| format!("$base{} {}", fish_quote(&w), fish_quote(help)))
            .collect();
        let _ = write!(
            s,
            "\n# A comma-separated list ({spellings}): each piece completed on its own.\n\
             function __{f}_list_{k}\n    \
                 set -l base (string match -r -- '^.*,' (commandline -ct)); or set base ''\n    \
                 printf '%s\\t%s\\n' {pairs}\n\
             end\n\
             complete -c {bin} {flags} -r -f -a '(__{f}_list_{k})'\n",
            spellings = list.spellings.join(", "),
            pairs = pairs.join(" "),
            flags = fish_flags(&list.spellings),
        );
    }
    s
}

fn zsh_hooks(
    base: &str,
    f: &str,
    declared: &[(&str, Hook)],
    slots: &[(String, usize, Dynamic)],
    kernel: &KernelArgs,
    uml_dir: &[String],
    lists: &[CommaList],
) -> String {
    let mut list_funcs = String::new();
    for (k, list) in lists.iter().enumerate() {
        let specs: Vec<String> = list
            .words
            .iter()
            .map(|(w, help)| {
                let help = help.replace('[', r"\[").replace(']', r"\]");
                match w.split_once('=') {
                    Some((name, value)) => sh_quote(&format!("{name}[{help}]:{value}: ")),
                    None => sh_quote(&format!("{w}[{help}]")),
                }
            })
            .collect();
        let _ = write!(
            list_funcs,
            "# A comma-separated list ({spellings}): each piece completed on its own.\n\
             (( $+functions[_{f}_list_{k}] )) ||\n\
             _{f}_list_{k}() {{\n    \
                 _values -s , 'option' {specs}\n\
             }}\n",
            spellings = list.spellings.join(", "),
            specs = specs.join(" "),
        );
    }
    let hooks = format!(
        "# {HEADER} (hooks)\n\
         {list_funcs}\
         {support}\
         # Running instances: the directories of the uml_dir, as `uml list` finds them.\n\
         (( $+functions[_{f}_umids] )) ||\n\
         _{f}_umids() {{\n    \
             local d=${{UML_DIR:-$HOME/.uml}} i\n    \
             # The whole line: inside a subcommand, $words starts at the subcommand.\n    \
             local -a umids all=(${{(Q)${{(z)BUFFER}}}})\n\
         {find_dir}    \
             d=${{d/#\\~/$HOME}}\n    \
             umids=($d/*(N/:t))\n    \
             _describe -t umids 'running instance' umids\n\
         }}\n\
         # Kernel words, for the kernel the line names (--kernel, --kernel-version) or the default.\n\
         (( $+functions[_{f}_kernel_words] )) ||\n\
         _{f}_kernel_words() {{\n    \
             local -a all=(${{(Q)${{(z)BUFFER}}}})\n    \
             local i k= v= __uk_prof\n\
         {find_kernel}    \
             k=${{k/#\\~/$HOME}}\n    \
             __uk_prof=$(__uml_kernel_profile uml \"${{all[1]}}\" \"$k\" \"$v\")\n    \
             __uml_kernel_compadd\n\
         }}\n\
         (( $+functions[_{f}_devices] )) ||\n\
         _{f}_devices() {{\n    \
             local -a devices=({device_words})\n    \
             _describe -t devices 'device' devices -S ''\n\
         }}\n\
         (( $+functions[_{f}_lines] )) ||\n\
         _{f}_lines() {{\n    \
             local -a lines=({line_words})\n    \
             _describe -t lines 'line' lines\n\
         }}\n\
         # A umlfs source: a running instance as `UMID:`, or an image file.\n\
         (( $+functions[_{f}_sources] )) ||\n\
         _{f}_sources() {{\n    \
             local d=${{UML_DIR:-$HOME/.uml}}\n    \
             local -a umids=($d/*(N/:t))\n    \
             (( $#umids )) && compadd -S '' -- ${{^umids}}:\n    \
             _files\n\
         }}\n",
        support = zsh_kernel_support(),
        find_dir = zsh_find(&[("d", uml_dir)]),
        find_kernel = zsh_find(&[("k", &kernel.kernel), ("v", &kernel.kernel_version)]),
        device_words = device_words(Dynamic::Device).join(" "),
        line_words = device_words(Dynamic::Line).join(" "),
    );
    // clap_complete writes a positional as `':<id> -- <help>:_default'` (`'*::<id> -- …` when
    // it repeats) and an option as `'--<long>=[<help>]:<VALUE>:_default'` (`'-<s>+[…`), each in
    // the `(<subcommand>)` branch of its subcommand; the hooks replace the action of the dynamic
    // ones.
    let mut rules: Vec<(Option<&str>, Vec<String>, String)> = Vec::new();
    for (kind, func) in [
        (Dynamic::Umid, "umids"),
        (Dynamic::Device, "devices"),
        (Dynamic::Line, "lines"),
        (Dynamic::Source, "sources"),
    ] {
        if !slots.iter().any(|(_, _, k)| *k == kind) {
            continue;
        }
        for (id, _) in declared.iter().filter(|(_, h)| h.dynamic() == Some(kind)) {
            rules.push((
                None,
                vec![format!("':{id} -- "), format!("'::{id} -- ")],
                format!("_{f}_{func}"),
            ));
        }
    }
    for (sub, id) in &kernel.positional {
        rules.push((
            Some(sub.as_str()),
            vec![format!("'*::{id} -- "), format!("':{id} -- ")],
            format!("_{f}_kernel_words"),
        ));
    }
    for (k, list) in lists.iter().enumerate() {
        rules.push((
            None,
            zsh_option_heads(&list.spellings),
            format!("_{f}_list_{k}"),
        ));
    }
    for (sub, spellings) in &kernel.options {
        rules.push((
            Some(sub.as_str()),
            zsh_option_heads(spellings),
            format!("_{f}_kernel_words"),
        ));
    }
    let mut text = String::new();
    let mut section = String::new();
    for line in base.lines() {
        let mut l = line.to_owned();
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            section = name.to_owned();
        }
        for (sub, heads, func) in &rules {
            if sub.is_some_and(|s| s != section) || !heads.iter().any(|h| trimmed.starts_with(h)) {
                continue;
            }
            if let Some(pos) = l.rfind(":_default'") {
                l.replace_range(pos.., &format!(":{func}'{}", &l[pos + 10..]));
            }
        }
        text.push_str(&l);
        text.push('\n');
    }
    let marker = format!("if [ \"$funcstack[1]\" = \"_{f}\" ]; then");
    match text.find(&marker) {
        Some(at) => {
            text.insert_str(at, &format!("{hooks}\n"));
        }
        None => text.push_str(&hooks),
    }
    text.insert_str(
        text.find('\n').map(|i| i + 1).unwrap_or(0),
        &format!("# {HEADER}\n"),
    );
    text
}

/// zsh: how clap_complete begins the spec of an option with these spellings (`'--long=[`,
/// `'-s+[`, each also repeatable: `'*--long=[`).
fn zsh_option_heads(spellings: &[String]) -> Vec<String> {
    spellings
        .iter()
        .flat_map(|o| {
            let head = if o.starts_with("--") {
                format!("{o}=[")
            } else {
                format!("{o}+[")
            };
            [format!("'*{head}"), format!("'{head}")]
        })
        .collect()
}

/// fish: `complete`'s flags for an option with these spellings (`-l long -s s`).
fn fish_flags(spellings: &[String]) -> String {
    spellings
        .iter()
        .map(|o| match o.strip_prefix("--") {
            Some(l) => format!("-l {l}"),
            None => format!("-s {}", o.trim_start_matches('-')),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// zsh: sets each `(variable, options)` from the last of its options in `$all` (`k` and `v`
/// from `--kernel` and `--kernel-version`).
fn zsh_find(vars: &[(&str, &[String])]) -> String {
    let mut s = String::new();
    for (var, options) in vars {
        for o in *options {
            let _ = write!(
                s,
                "    i=${{all[(I){o}]}}\n    (( i > 0 )) && {var}=${{all[i+1]}}\n    \
                 i=${{all[(I){o}=*]}}\n    (( i > 0 )) && {var}=${{all[i]#*=}}\n"
            );
        }
    }
    s
}

fn fish_hooks(
    base: &str,
    bin: &str,
    f: &str,
    slots: &[(String, usize, Dynamic)],
    kernel: &KernelArgs,
    value_opts: &[String],
    uml_dir: &[String],
) -> String {
    let mut s = format!("# fish completion for {bin}; {HEADER}\n");
    s.push_str(base);
    s.push_str(&fish_kernel_support());
    for (sub, _) in &kernel.positional {
        let _ = writeln!(
            s,
            "complete -c {bin} -n '__fish_{f}_using_subcommand {sub}' -f -a '(__{f}_kernel_words)'"
        );
    }
    for (sub, spellings) in &kernel.options {
        let _ = writeln!(
            s,
            "complete -c {bin} -n '__fish_{f}_using_subcommand {sub}' {} -r -f -a '(__{f}_kernel_words)'",
            fish_flags(spellings)
        );
    }
    let find = fish_find(&[("k", &kernel.kernel), ("v", &kernel.kernel_version)]);
    let _ = write!(
        s,
        "\n# Kernel words, for the kernel the line names (--kernel, --kernel-version) or the default.\n\
         function __{f}_kernel_words\n    \
             set -l toks (commandline -opc)\n    \
             set -l k ''\n    \
             set -l v ''\n    \
             for i in (seq (count $toks))\n        \
                 switch $toks[$i]\n\
         {find}        end\n    \
             end\n    \
             set k (string replace -r '^~' $HOME -- $k)\n    \
             __uml_kernel_offer (sh -c \"$__uml_kernel_engine\"'\n__uml_kernel_profile uml \"$1\" \"$2\" \"$3\"' sh \"$toks[1]\" \"$k\" \"$v\")\n\
         end\n",
    );
    let _ = write!(
        s,
        "\n# Running instances: the directories of the uml_dir, as `uml list` finds them.\n\
         function __{f}_umids\n    \
             set -l dir $UML_DIR\n    \
             test -n \"$dir\"; or set dir $HOME/.uml\n    \
             set -l toks (commandline -opc)\n    \
             for i in (seq (count $toks))\n        \
                 switch $toks[$i]\n\
         {find_dir}            \
                 end\n        \
             end\n    \
             set dir (string replace -r '^~' $HOME -- $dir)\n    \
             for d in $dir/*/\n        \
                 basename $d\n    \
             end\n\
         end\n\
         # True when the word being completed is positional argument $2 (from 0) of subcommand $1.\n\
         function __{f}_slot\n    \
             set -l toks (commandline -opc)\n    \
             set -e toks[1]\n    \
             set -l sub\n    \
             set -l pos 0\n    \
             set -l skip 0\n    \
             for t in $toks\n        \
                 if test $skip = 1\n            \
                     set skip 0\n            \
                     continue\n        \
                 end\n        \
                 switch $t\n            \
                     case {vals}\n                \
                         set skip 1\n            \
                     case '-*'\n            \
                     case '*'\n                \
                         if test -z \"$sub\"\n                    \
                             set sub $t\n                \
                         else\n                    \
                             set pos (math $pos + 1)\n                \
                         end\n        \
                 end\n    \
             end\n    \
             test \"$sub\" = \"$argv[1]\"; and test $pos = $argv[2]\n\
         end\n",
        vals = value_opts.join(" "),
        find_dir = fish_find(&[("dir", uml_dir)]),
    );
    for (sub, i, kind) in slots {
        let what = match kind {
            Dynamic::Umid => format!("(__{f}_umids)"),
            Dynamic::Source => format!("(for u in (__{f}_umids); echo $u:; end)"),
            Dynamic::Device => device_words(*kind).join(" "),
            Dynamic::Line => device_words(*kind).join(" "),
        };
        // A source may also be an image file: keep file completion there.
        let files = if *kind == Dynamic::Source { "" } else { " -f" };
        let _ = writeln!(
            s,
            "complete -c {bin} -n '__{f}_slot \"{sub}\" {i}'{files} -a '{what}'"
        );
    }
    s
}

/// fish: the `case` branches of a `switch $toks[$i]` that set each `(variable, options)` from
/// its options (`k` and `v` from `--kernel` and `--kernel-version`).
fn fish_find(vars: &[(&str, &[String])]) -> String {
    let mut s = String::new();
    for (var, options) in vars {
        for o in *options {
            let _ = write!(
                s,
                "            case {o}\n                \
                     set -l j (math $i + 1)\n                \
                     set -q toks[$j]; and set {var} $toks[$j]\n            \
                 case '{o}=*'\n                \
                     set {var} (string replace -r '^[^=]*=' '' -- $toks[$i])\n"
            );
        }
    }
    s
}

/// `a|b|c` for a bash `case`, or a pattern that never matches when empty.
fn or_case(alts: &str) -> String {
    if alts.is_empty() {
        "__never__".to_owned()
    } else {
        alts.to_owned()
    }
}

fn or_pattern(words: &[String]) -> String {
    or_case(&words.join("|"))
}

/// `--kernel=*` for `--kernel`: the option with its value in the same word.
fn with_value(options: &[String]) -> Vec<String> {
    options.iter().map(|o| format!("{o}=*")).collect()
}

/// Single-quote for sh and zsh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Single-quote for fish (inside '…' only \\ and \' are escapes).
fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    /// `tool [--dir DIR] show ID [NAME]`: a positional `umid`-like argument by another id.
    fn tool() -> Command {
        Command::new("tool")
            .arg(Arg::new("dir").long("dir").global(true))
            .subcommand(
                Command::new("show")
                    .arg(Arg::new("id").required(true))
                    .arg(Arg::new("umid"))
                    .arg(Arg::new("words").action(ArgAction::Append)),
            )
    }

    fn bash(scripts: &[Script]) -> &str {
        &scripts.iter().find(|s| s.path == "bash/tool").unwrap().text
    }

    #[test]
    fn hooks_follow_the_declaration_not_the_argument_names() {
        let scripts =
            command_scripts(tool(), "tool", &[("id", Hook::Umid), ("dir", Hook::UmlDir)]).unwrap();
        let bash = bash(&scripts);
        // The declared `id` (positional 0 of `show`) completes umids; `umid` (positional 1),
        // undeclared, does not, whatever its name.
        assert!(bash.contains("show:0) COMPREPLY=($(compgen -W \"$(__tool_umids"));
        assert!(!bash.contains("show:1)"));
        // The uml_dir is read from the declared option.
        assert!(bash.contains("--dir) skip=1; dir="));
        assert!(!bash.contains("--uml-dir"));
    }

    #[test]
    fn without_a_uml_dir_option_no_option_is_read_for_it() {
        let scripts = command_scripts(tool(), "tool", &[("id", Hook::Umid)]).unwrap();
        // (`--dir` still takes the next word as its value: it is not counted as a positional.)
        for s in &scripts {
            assert!(
                !s.text.contains("--dir) skip=1; dir=")
                    && !s.text.contains("(I)--dir")
                    && !s.text.contains("and set dir $toks"),
                "{}",
                s.path
            );
        }
    }

    #[test]
    fn a_declaration_that_fits_no_argument_is_refused() {
        for (id, hook) in [
            // No argument has that id.
            ("umids", Hook::Umid),
            // An option, where the hook needs a positional argument.
            ("dir", Hook::Device),
            // A positional, where the hook needs an option.
            ("id", Hook::UmlDir),
            // An option naming the kernel, in a command without kernel words.
            ("dir", Hook::Kernel),
            // A positional, where a comma-separated list needs an option.
            ("id", Hook::CommaList(&[("ro", "Read-only.")])),
        ] {
            let err = command_scripts(tool(), "tool", &[(id, hook)]).unwrap_err();
            assert_eq!((err.id.as_str(), err.hook), (id, hook));
            let msg = err.to_string();
            assert!(
                msg.starts_with("tool: ") && msg.contains(&format!("{id:?}")),
                "{msg}"
            );
        }
        // A second hook for one id: only the first applies, so the second is refused.
        let twice = [("id", Hook::Umid), ("id", Hook::Line)];
        let err = command_scripts(tool(), "tool", &twice).unwrap_err();
        assert_eq!((err.id.as_str(), err.hook), ("id", Hook::Line));
    }

    #[test]
    fn a_comma_list_offers_value_words_by_name_and_escapes_its_help() {
        let words: &'static [(&str, &str)] = &[("uid=N", "Owner [N]."), ("ro", "It's ro.")];
        let scripts = command_scripts(tool(), "tool", &[("dir", Hook::CommaList(words))]).unwrap();
        let text = |p: &str| &scripts.iter().find(|s| s.path == p).unwrap().text;
        assert!(
            bash(&scripts).contains("-W 'uid= ro'"),
            "{}",
            bash(&scripts)
        );
        assert!(bash(&scripts).contains("    --dir) __tool_list_0; return 0 ;;"));
        let zsh = text("zsh/_tool");
        assert!(
            zsh.contains(r"'uid[Owner \[N\].]:N: ' 'ro[It'\''s ro.]'"),
            "{zsh}"
        );
        assert!(zsh.contains(":_tool_list_0'"), "{zsh}");
        let fish = text("fish/tool.fish");
        assert!(
            fish.contains(r"$base'uid=' 'Owner [N].' $base'ro' 'It\'s ro.'"),
            "{fish}"
        );
        assert!(fish.contains("complete -c tool -l dir -r -f -a '(__tool_list_0)'"));
    }

    #[test]
    fn kernel_words_take_the_kernel_options_of_their_subcommand() {
        let cmd = tool().subcommand(
            Command::new("check")
                .arg(Arg::new("kern").long("kern"))
                .arg(Arg::new("args").action(ArgAction::Append)),
        );
        let scripts = command_scripts(
            cmd,
            "tool",
            &[("args", Hook::KernelWords), ("kern", Hook::Kernel)],
        )
        .unwrap();
        let bash = bash(&scripts);
        assert!(bash.contains("--kern) skip=1; kern="));
        assert!(bash.contains("check)\n        __uk_prof="), "{bash}");
        // `show words` was not declared: not kernel words.
        assert!(!bash.contains("show)\n        __uk_prof="));
    }
}
