//! The candidate engine for the kernel's command line, emitted as POSIX shell from the tables.
//!
//! One engine serves the three shells: bash and zsh (in `sh` emulation) run it in-process, fish
//! runs it through `sh -c`. `__uml_kernel_candidates WORD` prints one line per candidate:
//! `<whole word>\t<description>\t<s|n>`, where `n` means "do not add a space" (the word ends in
//! `=`, `,`, `:` or `/`, or is an unfinished stem such as `ubd`). Every candidate starts with
//! WORD, so each shell only decides how to show it. `__uml_kernel_profile` says what the kernel
//! in question has, for the shell to hand the candidates in `$__uk_prof` (see [`PROFILE`]).

use std::fmt::Write as _;

use super::super::{Change, Kernels, Series, vec_common_keys, vec_transports};
use super::super::{
    Completion, FieldSpec, Matching, OptionSpec, ValueKind, all, channels, transports,
};
use super::{UBD_FLAGS, offerable, on_offered_kernel, unit_count};
use crate::kernel::{ASSUMED_VECTOR_ONLY_SINCE, Profile, Version};

/// Sizes offered for size fields: common guest RAM sizes.
const SIZES: &str = "64M 128M 256M 512M 1G 2G";

/// The engine's fixed part: emission, files, separators.
const RUNTIME: &str = r#"__uk_emit() {
    case $1 in
    "$__uk_cur"*) printf '%s\t%s\t%s\n' "$1" "$2" "$3" ;;
    esac
}
# __uk_split SEPARATORS: the word's value ($__uk_val) cut at the last separator into
# $__uk_base (everything before the current piece) and $__uk_piece; $__uk_n counts the pieces
# before it.
__uk_split() {
    __uk_piece=$__uk_val
    __uk_n=0
    while :; do
        case $__uk_piece in
        *[$1]*) __uk_piece=${__uk_piece#*[$1]}; __uk_n=$((__uk_n + 1)) ;;
        *) break ;;
        esac
    done
    __uk_base=${__uk_cur%"$__uk_piece"}
}
# __uk_words SUFFIX WORD...: fixed words for the current piece.
__uk_words() {
    __uk_sfx=$1
    shift
    for __uk_w in "$@"; do
        case $__uk_sfx$__uk_w in
        *[=,:/]) __uk_emit "$__uk_base$__uk_w$__uk_sfx" "" n ;;
        *) __uk_emit "$__uk_base$__uk_w$__uk_sfx" "" s ;;
        esac
    done
}
# __uk_files f|d|s: files, directories only, or sockets (and the directories that lead to them).
__uk_files() {
    for __uk_f in "$__uk_piece"*; do
        if [ -d "$__uk_f" ]; then
            __uk_emit "$__uk_base$__uk_f/" "" n
        elif [ "$1" = f ] && { [ -e "$__uk_f" ] || [ -L "$__uk_f" ]; }; then
            __uk_emit "$__uk_base$__uk_f" "" s
        elif [ "$1" = s ] && [ -S "$__uk_f" ]; then
            __uk_emit "$__uk_base$__uk_f" "" s
        fi
    done
}
__uk_ttys() {
    for __uk_f in /dev/tty* /dev/pts/[0-9]*; do
        [ -c "$__uk_f" ] && __uk_emit "$__uk_base$__uk_f" "" s
    done
}
__uk_ifaces() {
    for __uk_f in /sys/class/net/*; do
        [ -e "$__uk_f" ] && __uk_emit "$__uk_base${__uk_f##*/}" "" s
    done
}
__uk_units() {
    __uk_stem=$1 __uk_sep=$2 __uk_count=$3 __uk_desc=$4
    __uk_u=0
    while [ "$__uk_u" -lt "$__uk_count" ]; do
        __uk_emit "$__uk_stem$__uk_u$__uk_sep" "$__uk_desc $__uk_u" n
        __uk_u=$((__uk_u + 1))
    done
}
# ubd<digits><flags>: the units that start with the digits, and once a unit is complete, its
# flags and the = that ends the name.
__uk_ubd_name() {
    __uk_d=${1%%[!0-9]*}
    __uk_fl=${1#"$__uk_d"}
    if [ -z "$__uk_d" ]; then
        __uk_u=0
        while [ "$__uk_u" -lt 16 ]; do
            __uk_emit "ubd$__uk_u" "disk unit $__uk_u" n
            __uk_u=$((__uk_u + 1))
        done
        return
    fi
    if [ -z "$__uk_fl" ]; then
        __uk_u=0
        while [ "$__uk_u" -lt 16 ]; do
            [ "$__uk_u" != "$__uk_d" ] && __uk_emit "ubd$__uk_u" "disk unit $__uk_u" n
            __uk_u=$((__uk_u + 1))
        done
    fi
    case $__uk_d in
    [0-9]|1[0-5]) ;;
    *) return ;;
    esac
    __uk_emit "$__uk_cur=" "attach a file" n
    __uk_ubd_flags
}
# The candidates: every one starts with WORD. A candidate not every kernel has is guarded by
# __uk_ok, which asks the profile in $__uk_prof (see __uml_kernel_profile).
__uml_kernel_candidates() {
    __uk_cur=$1
    __uk_load
    case $__uk_cur in
    vec*:*)
        __uk_val=${__uk_cur#*:}
        __uk_vec
        ;;
    *=*)
        __uk_key=${__uk_cur%%=*}
        __uk_val=${__uk_cur#*=}
        __uk_value
        ;;
    *) __uk_keys ;;
    esac
    return 0
}
"#;

/// How the engine learns what the kernel has. Each candidate that not every kernel has is
/// guarded by `__uk_ok IN_UNION SINCE UNTIL SYMBOL` ([`guard`]), which asks the profile the
/// shell's completion function put into `$__uk_prof` before it asked for candidates:
/// `SERIES SYMBOL...`, the series as `major*1000+minor` and the guards' config symbols that the
/// kernel is built with. `__uml_kernel_profile` prints that line: from `uml kernel info --json`
/// (profiled once per binary and cached by umlkit, so a few milliseconds), else from the kernel's
/// own `--version` and `--showconfig`; each bounded by `timeout` and silent. When neither answers
/// (no kernel, not a UML kernel, not runnable), `$__uk_prof` is empty and a guard passes exactly
/// when one of [`super::OFFERED_KERNELS`] has the candidate: the union the scripts offered before
/// they could ask.
const PROFILE: &str = r#"__uk_load() {
    __uk_ser=${__uk_prof%% *}
    case $__uk_ser in
    ''|*[!0-9]*) __uk_ser= __uk_cfg= ;;
    *) __uk_cfg=" ${__uk_prof#"$__uk_ser"} " ;;
    esac
}
# __uk_ok IN_UNION SINCE UNTIL SYMBOL: has the kernel it? Without a profile: is it in the union
# of the kernels the scripts were made for (IN_UNION 1)? With one: is its series at least SINCE
# and below UNTIL (0: no bound), and is it built with SYMBOL (-: none needed)?
__uk_ok() {
    if [ -z "$__uk_ser" ]; then
        [ "$1" = 1 ]
        return
    fi
    [ "$2" = 0 ] || [ "$__uk_ser" -ge "$2" ] || return 1
    [ "$3" = 0 ] || [ "$__uk_ser" -lt "$3" ] || return 1
    case $4 in -) return 0 ;; esac
    case $__uk_cfg in *" $4 "*) return 0 ;; esac
    return 1
}
# __uk_run SECONDS CMD ARG...: CMD without input or error output, stopped after SECONDS.
__uk_run() {
    __uk_t=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout "$__uk_t" "$@" </dev/null 2>/dev/null
    else
        "$@" </dev/null 2>/dev/null
    fi
}
# (The profile is computed in a subshell of its own: these helpers set variables rather than
# print, which saves a fork each.)
# __uk_path WORD: $__uk_f, the executable a command word runs, as the shell would find it.
__uk_path() {
    case $1 in
    '~/'*) __uk_f=$HOME/${1#'~/'} ;;
    */*) __uk_f=$1 ;;
    *)
        __uk_f=$(command -v "$1" 2>/dev/null) || return 1
        case $__uk_f in /*) ;; *) return 1 ;; esac
        ;;
    esac
    [ -f "$__uk_f" ] && [ -x "$__uk_f" ]
}
# __uk_series RELEASE: $__uk_s, major*1000+minor of 6.1.176, 7.2, 7.2.13-um.
__uk_series() {
    case $1 in [0-9]*.[0-9]*) ;; *) return 1 ;; esac
    __uk_ma=${1%%.*}
    __uk_mi=${1#*.}
    __uk_mi=${__uk_mi%%[!0-9]*}
    case $__uk_ma in *[!0-9]*|0?*|??????*) return 1 ;; esac
    case $__uk_mi in ''|*[!0-9]*|0?*|????*) return 1 ;; esac
    __uk_s=$((__uk_ma * 1000 + __uk_mi))
}
# __uk_line SERIES CONFIG: the profile line; CONFIG is `=` and the symbols when the config was
# read, else empty and the symbols are those of Debian's build of that series.
__uk_line() {
    case $2 in
    =*) printf '%s%s\n' "$1" "${2#=}" ;;
    *) __uk_assumed "$1" ;;
    esac
}
# __uk_by_uml UML [KERNEL]: the profile `UML kernel info --json [KERNEL]` prints.
__uk_by_uml() {
    __uk_l=$(__uk_run 3 "$1" kernel info --json ${2:+"$2"} | awk -v want="$__uk_want" '
        /^    "major": [0-9]+,?$/ { maj = $2 + 0; v++ }
        /^    "minor": [0-9]+,?$/ { min = $2 + 0; v++ }
        /^  "config": [{]/ { c = 1; known = 1; next }
        c && /^  [}]/ { c = 0 }
        c && /^    "[A-Z0-9_]+": "[ym]",?$/ {
            s = substr($1, 2, length($1) - 3)
            if (index(want, " " s " ")) out = out " " s
        }
        END { if (v == 2) print maj "." min " " (known ? "=" out : "") }')
    __uk_series "${__uk_l%% *}" || return 1
    __uk_line "$__uk_s" "${__uk_l#* }"
}
# __uk_direct KERNEL: the profile from the kernel itself: `--version` prints the release alone,
# `--showconfig` the .config, both before the kernel starts.
__uk_direct() {
    __uk_v=$(__uk_run 1 "$1" --version) || return 1
    case $__uk_v in *'
'*) return 1 ;; esac
    __uk_series "$__uk_v" || return 1
    __uk_c=$(__uk_run 1 "$1" --showconfig | awk -v want="$__uk_want" '
        $0 == "CONFIG_UML=y" { uml = 1 }
        /^CONFIG_[A-Z0-9_]+=[ym]$/ {
            s = substr($0, 8, length($0) - 9)
            if (index(want, " " s " ")) out = out " " s
        }
        END { if (uml) print "=" out }')
    __uk_line "$__uk_s" "$__uk_c"
}
# __uk_profile cmd WORD: the kernel a command word runs (`./linux`, `linux` on PATH).
# __uk_profile uml WORD KERNEL VERSION: the kernel `uml` (its command word WORD) would run:
# the --kernel KERNEL and --kernel-version VERSION of its line, else its default.
__uk_profile() {
    case $1 in
    cmd)
        __uk_path "$2" || return 0
        __uk_k=$__uk_f
        __uk_path uml && __uk_by_uml "$__uk_f" "$__uk_k" && return 0
        __uk_direct "$__uk_k"
        ;;
    uml)
        if [ -n "$4" ]; then
            __uk_series "$4" && __uk_line "$__uk_s" ''
            return 0
        fi
        __uk_path "$2" && __uk_by_uml "$__uk_f" "$3" && return 0
        [ -n "$3" ] && __uk_path "$3" && __uk_direct "$__uk_f"
        ;;
    esac
    return 0
}
"#;

/// The whole engine: the runtime plus the functions generated from the tables.
pub(super) fn engine() -> String {
    let mut s = String::from(RUNTIME);
    s.push_str(PROFILE);
    profile_tables(&mut s);
    keys(&mut s);
    ubd_flags(&mut s);
    value(&mut s);
    eth(&mut s);
    vec(&mut s);
    s
}

/// `major*1000+minor`, the series as the engine compares it.
fn series_number(series: Series) -> u32 {
    series.0 * 1000 + series.1
}

/// The lowest series that may have something that came with `change`.
fn since_bound(change: Change) -> u32 {
    match change {
        Change::At(s) => series_number(s),
        Change::Between { absent, .. } => series_number(absent) + 1,
    }
}

/// The lowest series that certainly lacks something `change` removed.
fn until_bound(change: Change) -> u32 {
    match change {
        Change::At(s) => series_number(s),
        Change::Between { present, .. } => series_number(present),
    }
}

/// The shell test that the kernel has a candidate of `kernels` (see `__uk_ok`): `None` when
/// every kernel has it. It agrees with [`Kernels::presence`]: a kernel certainly without it
/// fails, one of a series nobody examined passes.
pub(super) fn guard(kernels: Kernels) -> Option<String> {
    let union = on_offered_kernel(kernels);
    let since = kernels.since.map_or(0, since_bound);
    let until = kernels.until.map_or(0, until_bound);
    if union && since == 0 && until == 0 && kernels.config.is_none() {
        return None;
    }
    Some(format!(
        "__uk_ok {} {since} {until} {}",
        u8::from(union),
        kernels.config.unwrap_or("-")
    ))
}

/// `guard && ` for a command that only runs on a kernel that has it, or nothing.
fn guarded(kernels: Kernels) -> String {
    guard(kernels).map_or_else(String::new, |g| format!("{g} && "))
}

/// The first line of a `case` branch that a kernel without it leaves at once, or nothing.
fn guard_line(indent: &str, kernels: Kernels) -> String {
    guard(kernels).map_or_else(String::new, |g| format!("{indent}{g} || return\n"))
}

/// Every config symbol a guard names: what a profile line records.
pub(crate) fn guard_symbols() -> Vec<&'static str> {
    let mut symbols: Vec<&'static str> = all()
        .iter()
        .filter(|o| offerable(o))
        .map(OptionSpec::kernels)
        .chain(transports().iter().map(|t| t.kernels()))
        .chain(channels().iter().map(|c| c.kernels()))
        .filter_map(|k| k.config)
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    symbols
}

/// The profile line of `profile`, as `__uml_kernel_profile` prints it.
pub(crate) fn profile_line(profile: &Profile) -> String {
    let mut line = series_number(Series(profile.version.major, profile.version.minor)).to_string();
    for symbol in guard_symbols() {
        if profile.has(symbol) {
            line.push(' ');
            line.push_str(symbol);
        }
    }
    line
}

/// `__uk_assumed SERIES` (the profile line of Debian's build of a series, for a kernel whose
/// config cannot be read, as [`Profile::assumed`] has it) and `__uml_kernel_profile`, which
/// names the symbols to record.
fn profile_tables(s: &mut String) {
    let symbols = guard_symbols();
    let of = |version: Version| -> String {
        let profile = Profile::assumed(version);
        symbols
            .iter()
            .filter(|sym| profile.has(sym))
            .map(|sym| format!(" {sym}"))
            .collect()
    };
    let threshold = ASSUMED_VECTOR_ONLY_SINCE;
    let before = Version::new(threshold.major, threshold.minor.saturating_sub(1), 0);
    debug_assert!(threshold.patch == 0 && threshold.minor > 0);
    let _ = write!(
        s,
        "__uk_assumed() {{\n    if [ \"$1\" -lt {t} ]; then\n        printf '%s%s\\n' \"$1\" {old}\n    \
         else\n        printf '%s%s\\n' \"$1\" {new}\n    fi\n}}\n\
         # __uml_kernel_profile cmd WORD | uml WORD KERNEL VERSION: the profile line for $__uk_prof\n\
         # (see __uk_profile), or nothing.\n\
         __uml_kernel_profile() {{\n    __uk_want={want}\n    __uk_profile \"$@\"\n}}\n",
        t = series_number(Series(threshold.major, threshold.minor)),
        old = q(&of(before)),
        new = q(&of(threshold)),
        want = q(&format!(" {} ", symbols.join(" "))),
    );
}

/// Single-quote `text` for sh.
fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn keys(s: &mut String) {
    s.push_str("__uk_keys() {\n    case $__uk_cur in\n");
    for spec in all().iter().filter(|o| offerable(o)) {
        if let Some(sep) = unit_separator(spec) {
            let stem = spec.name();
            let on = guarded(spec.kernels());
            if spec.value() == ValueKind::Ubd {
                let _ = writeln!(
                    s,
                    "    ubd*)\n        case ${{__uk_cur#ubd}} in\n        \
                     *[!0-9{flags}]*) ;;\n        \
                     *) {on}{{ __uk_ubd_name \"${{__uk_cur#ubd}}\"; return; }} ;;\n        \
                     esac\n        ;;",
                    flags = UBD_FLAGS.iter().map(|(f, _)| *f).collect::<String>()
                );
            } else {
                let _ = writeln!(
                    s,
                    "    {stem}*)\n        case ${{__uk_cur#{stem}}} in\n        \
                     *[!0-9]*) ;;\n        *)"
                );
                if spec.value() == ValueKind::Channels {
                    let _ = writeln!(
                        s,
                        "            {on}__uk_emit {} {} n",
                        q(&format!("{stem}=")),
                        q(&format!("{} (all)", spec.summary()))
                    );
                }
                let _ = writeln!(
                    s,
                    "            {on}__uk_units {stem} {} {} {}\n            ;;\n        esac\n        ;;",
                    q(sep),
                    unit_count(spec),
                    q(spec.summary())
                );
            }
        }
    }
    s.push_str("    esac\n");
    for spec in all().iter().filter(|o| offerable(o)) {
        let nospace = spec.value() != ValueKind::Flag;
        // A stem (`con`) is offered until it is typed; then its units are.
        let guard = if unit_separator(spec).is_some() {
            format!("[ ${{#__uk_cur}} -lt {} ] && ", spec.name().len())
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "    {guard}{}__uk_emit {} {} {}",
            guarded(spec.kernels()),
            q(&word(spec)),
            q(spec.summary()),
            if nospace { "n" } else { "s" }
        );
    }
    s.push_str("}\n");
}

fn ubd_flags(s: &mut String) {
    s.push_str("__uk_ubd_flags() {\n");
    for (flag, help) in UBD_FLAGS {
        let _ = writeln!(
            s,
            "    case $__uk_fl in *{flag}*) ;; *) __uk_emit \"${{__uk_cur}}{flag}\" {} n ;; esac",
            q(help)
        );
    }
    s.push_str("}\n");
}

/// The shell call that completes one field.
fn field_call(completion: Completion, suffix: &str) -> String {
    match completion {
        Completion::File => "__uk_files f".into(),
        Completion::Directory => "__uk_files d".into(),
        Completion::Socket => "__uk_files s".into(),
        Completion::Size => format!("__uk_words '' {SIZES}"),
        Completion::Candidates(words) => {
            let ws: Vec<String> = words.iter().map(|w| q(w)).collect();
            format!("__uk_words {} {}", q(suffix), ws.join(" "))
        }
        Completion::HostTty => "__uk_ttys".into(),
        Completion::NetInterface => "__uk_ifaces".into(),
        Completion::None
        | Completion::Number
        | Completion::Mac
        | Completion::Address
        | Completion::Command => ":".into(),
    }
}

/// `<fields>` separated by `sep`: a case over the field index.
fn fields_case(s: &mut String, indent: &str, fields: &[FieldSpec], comma_after: bool) {
    let _ = writeln!(s, "{indent}case $__uk_n in");
    for (i, f) in fields.iter().enumerate() {
        let more = comma_after && i + 1 < fields.len();
        let _ = writeln!(
            s,
            "{indent}{i}) {} ;;",
            field_call(f.completion(), if more { "," } else { "" })
        );
    }
    let _ = writeln!(s, "{indent}esac");
}

fn value(s: &mut String) {
    s.push_str("__uk_value() {\n    case $__uk_key in\n");
    for spec in all().iter().filter(|o| offerable(o)) {
        let on = guard_line("        ", spec.kernels());
        match spec.value() {
            ValueKind::Flag => {}
            ValueKind::Ubd => {
                let _ = writeln!(
                    s,
                    "    ubd) {}__uk_split ,; __uk_words '' sync ;;",
                    guard(spec.kernels()).map_or_else(String::new, |g| format!("{g} || return; "))
                );
                let _ = write!(s, "    ubd[0-9a-p]*)\n{on}        __uk_split ,:\n");
                fields_case(s, "        ", spec.fields(), false);
                s.push_str("        ;;\n");
            }
            ValueKind::Channels => {
                let stem = spec.name();
                let _ = writeln!(
                    s,
                    "    {stem}|{stem}[0-9]*)\n{on}        __uk_split ,\n        \
                     [ \"$__uk_n\" -gt 1 ] && return\n        case $__uk_piece in"
                );
                for ch in channels() {
                    if let Some(arg) = ch.argument() {
                        let _ = writeln!(
                            s,
                            "        {}:*) {}__uk_val=$__uk_piece; __uk_split :; {} ;;",
                            ch.name(),
                            guard(ch.kernels())
                                .map_or_else(String::new, |g| format!("{g} || return; ")),
                            field_call(arg.completion(), "")
                        );
                    }
                }
                s.push_str("        *)\n");
                for ch in channels() {
                    let word = if ch.argument().is_some() {
                        format!("{}:", ch.name())
                    } else {
                        ch.name().to_owned()
                    };
                    let flag = if word.ends_with(':') { "n" } else { "s" };
                    let _ = writeln!(
                        s,
                        "            {}__uk_emit \"$__uk_base\"{} {} {flag}",
                        guarded(ch.kernels()),
                        q(&word),
                        q(ch.summary())
                    );
                }
                s.push_str("            ;;\n        esac\n        ;;\n");
            }
            ValueKind::Transport => {
                let _ = writeln!(
                    s,
                    "    {}[0-9]*)\n{on}        __uk_split ,\n        if [ \"$__uk_n\" = 0 ]; then",
                    spec.name()
                );
                for t in transports() {
                    let _ = writeln!(
                        s,
                        "            {}__uk_emit \"$__uk_base\"{} {} n",
                        guarded(t.kernels()),
                        q(&format!("{},", t.name())),
                        q(t.summary())
                    );
                }
                s.push_str(
                    "        else\n            __uk_eth \"${__uk_val%%,*}\"\n        fi\n        ;;\n",
                );
            }
            ValueKind::KeyValues => {}
            _ => {
                let key = spec.name().trim_end_matches('=');
                let _ = write!(s, "    {})\n{on}", pattern(key));
                // A literal before the first field (`mconsole=notify:<socket>`) is offered first.
                let word = word(spec);
                let rest = &spec.syntax()[word.len().min(spec.syntax().len())..];
                let literal = rest.split('<').next().unwrap_or("");
                let sep = if rest.contains(">:<") { ":" } else { "," };
                if !literal.is_empty() {
                    let _ = writeln!(
                        s,
                        "        case $__uk_val in\n        {lit}*) __uk_val=${{__uk_val#{lit}}} ;;\n        \
                         *) __uk_emit {} {} n; return ;;\n        esac",
                        q(&format!("{word}{literal}")),
                        q(spec.summary()),
                        lit = q(literal),
                    );
                }
                let _ = writeln!(s, "        __uk_split {}", q(sep));
                fields_case(s, "        ", spec.fields(), sep == ",");
                s.push_str("        ;;\n");
            }
        }
    }
    s.push_str("    esac\n}\n");
}

/// A `case` pattern matching `key` literally (`virtio_uml.device` has a dot, which is literal in
/// a case pattern anyway; quoting keeps that true for any future name).
fn pattern(key: &str) -> String {
    q(key)
}

fn eth(s: &mut String) {
    s.push_str("__uk_eth() {\n    __uk_n=$((__uk_n - 1))\n    case $1 in\n");
    for t in transports() {
        let _ = write!(
            s,
            "    {})\n{}",
            q(t.name()),
            guard_line("        ", t.kernels())
        );
        fields_case(s, "        ", t.fields(), true);
        s.push_str("        ;;\n");
    }
    s.push_str("    esac\n}\n");
}

fn vec(s: &mut String) {
    // Keys for the chosen transport: the first `transport=` in the value.
    let vec = all()
        .iter()
        .find(|o| o.value() == ValueKind::KeyValues)
        .map_or(Kernels::ALL, |o| o.kernels());
    let _ = write!(s, "__uk_vec() {{\n{}", guard_line("    ", vec));
    s.push_str(
        "    __uk_split ,\n    __uk_t=\n    case ,$__uk_val in\n    \
         *,transport=*) __uk_t=${__uk_val#*transport=}; __uk_t=${__uk_t%%,*} ;;\n    esac\n    \
         case $__uk_piece in\n    *=*)\n        __uk_k=${__uk_piece%%=*}\n        \
         __uk_val=$__uk_piece\n        __uk_split =\n        case $__uk_k in\n",
    );
    let mut seen: Vec<&str> = Vec::new();
    let all_keys = vec_common_keys()
        .iter()
        .chain(vec_transports().iter().flat_map(|t| t.keys().iter()));
    for k in all_keys {
        if seen.contains(&k.name()) {
            continue;
        }
        seen.push(k.name());
        let _ = writeln!(
            s,
            "        {}) {} ;;",
            q(k.name()),
            field_call(k.completion(), "")
        );
    }
    s.push_str("        esac\n        ;;\n    *)\n");
    for k in vec_common_keys() {
        vec_key(s, "        ", k);
    }
    s.push_str("        case $__uk_t in\n");
    for t in vec_transports() {
        let _ = writeln!(s, "        {})", q(t.name()));
        for k in t.keys() {
            vec_key(s, "            ", k);
        }
        s.push_str("            ;;\n");
    }
    s.push_str("        esac\n        ;;\n    esac\n}\n");
}

/// Offer `key=` unless the value already has that key.
fn vec_key(s: &mut String, indent: &str, k: &FieldSpec) {
    let _ = writeln!(
        s,
        "{indent}case ,$__uk_val in *,{name}=*) ;; *) __uk_emit \"$__uk_base\"{} {} n ;; esac",
        q(&format!("{}=", k.name())),
        q(k.help()),
        name = k.name(),
    );
}

/// The word a candidate offers for `spec`: its name, and the `=` of a `key=value` option whose
/// name is the key (`dtb=`, `time-travel=`).
fn word(spec: &OptionSpec) -> String {
    if spec.matching() == Matching::Key {
        format!("{}=", spec.name())
    } else {
        spec.name().to_owned()
    }
}

/// `=` for `ubd`, `con`, `ssl`, `eth`; `:` for `vec`; `None` for options without units.
fn unit_separator(spec: &OptionSpec) -> Option<&'static str> {
    match spec.value() {
        ValueKind::Ubd | ValueKind::Channels | ValueKind::Transport => Some("="),
        ValueKind::KeyValues => Some(":"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::SYMBOLS;
    use crate::options::Kernels;

    #[test]
    fn every_guard_symbol_is_in_the_profile() {
        // `uml kernel info --json` records only these; a guard on another symbol would never
        // pass with a profile read through `uml`.
        for symbol in guard_symbols() {
            assert!(
                SYMBOLS.contains(&symbol),
                "{symbol} is recorded in a profile"
            );
        }
    }

    #[test]
    fn guards_bound_the_series_as_presence_does() {
        let between = Change::Between {
            absent: Series(6, 1),
            present: Series(7, 2),
        };
        let since = Kernels {
            since: Some(between),
            ..Kernels::ALL
        };
        let until = Kernels {
            until: Some(between),
            ..Kernels::ALL
        };
        assert_eq!(guard(Kernels::ALL), None);
        assert_eq!(guard(since).as_deref(), Some("__uk_ok 1 6002 0 -"));
        assert_eq!(guard(until).as_deref(), Some("__uk_ok 1 0 7002 -"));
        let at = Kernels {
            since: Some(Change::At(Series(6, 8))),
            config: Some("SMP"),
            ..Kernels::ALL
        };
        assert_eq!(guard(at).as_deref(), Some("__uk_ok 0 6008 0 SMP"));
        let line = profile_line(&Profile::assumed(Version::new(6, 12, 3)));
        assert!(line.starts_with("6012 "), "{line}");
    }
}
