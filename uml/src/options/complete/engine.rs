//! The candidate engine for the kernel's command line, emitted as POSIX shell from the tables.
//!
//! One engine serves the three shells: bash and zsh (in `sh` emulation) run it in-process, fish
//! runs it through `sh -c`. `__uml_kernel_candidates WORD` prints one line per candidate:
//! `<whole word>\t<description>\t<s|n>`, where `n` means "do not add a space" (the word ends in
//! `=`, `,`, `:` or `/`, or is an unfinished stem such as `ubd`). Every candidate starts with
//! WORD, so each shell only decides how to show it.

use std::fmt::Write as _;

use super::super::{Completion, FieldSpec, OptionSpec, ValueKind, all, channels, transports};
use super::super::{vec_common_keys, vec_transports};
use super::{UBD_FLAGS, offered, unit_count};

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
__uml_kernel_candidates() {
    __uk_cur=$1
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
}
"#;

/// The whole engine: the runtime plus the functions generated from the tables.
pub(super) fn engine() -> String {
    let mut s = String::from(RUNTIME);
    keys(&mut s);
    ubd_flags(&mut s);
    value(&mut s);
    eth(&mut s);
    vec(&mut s);
    s
}

/// Single-quote `text` for sh.
fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn keys(s: &mut String) {
    s.push_str("__uk_keys() {\n    case $__uk_cur in\n");
    for spec in all().iter().filter(|o| offered(o)) {
        if let Some(sep) = unit_separator(spec) {
            let stem = spec.name();
            if spec.value() == ValueKind::Ubd {
                let _ = writeln!(
                    s,
                    "    ubd*)\n        case ${{__uk_cur#ubd}} in\n        \
                     *[!0-9{flags}]*) ;;\n        \
                     *) __uk_ubd_name \"${{__uk_cur#ubd}}\"; return ;;\n        esac\n        ;;",
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
                        "            __uk_emit {} {} n",
                        q(&format!("{stem}=")),
                        q(&format!("{} (all)", spec.summary()))
                    );
                }
                let _ = writeln!(
                    s,
                    "            __uk_units {stem} {} {} {}\n            ;;\n        esac\n        ;;",
                    q(sep),
                    unit_count(spec),
                    q(spec.summary())
                );
            }
        }
    }
    s.push_str("    esac\n");
    for spec in all().iter().filter(|o| offered(o)) {
        let nospace = spec.value() != ValueKind::Flag;
        // A stem (`con`) is offered until it is typed; then its units are.
        let guard = if unit_separator(spec).is_some() {
            format!("[ ${{#__uk_cur}} -lt {} ] && ", spec.name().len())
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "    {guard}__uk_emit {} {} {}",
            q(spec.name()),
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
    for spec in all().iter().filter(|o| offered(o)) {
        match spec.value() {
            ValueKind::Flag => {}
            ValueKind::Ubd => {
                s.push_str("    ubd) __uk_split ,; __uk_words '' sync ;;\n");
                s.push_str("    ubd[0-9a-p]*)\n        __uk_split ,:\n");
                fields_case(s, "        ", spec.fields(), false);
                s.push_str("        ;;\n");
            }
            ValueKind::Channels => {
                let stem = spec.name();
                let _ = writeln!(
                    s,
                    "    {stem}|{stem}[0-9]*)\n        __uk_split ,\n        \
                     [ \"$__uk_n\" -gt 1 ] && return\n        case $__uk_piece in"
                );
                for ch in channels() {
                    if let Some(arg) = ch.argument() {
                        let _ = writeln!(
                            s,
                            "        {}:*) __uk_val=$__uk_piece; __uk_split :; {} ;;",
                            ch.name(),
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
                        "            __uk_emit \"$__uk_base\"{} {} {flag}",
                        q(&word),
                        q(ch.summary())
                    );
                }
                s.push_str("            ;;\n        esac\n        ;;\n");
            }
            ValueKind::Transport => {
                let _ = writeln!(
                    s,
                    "    {}[0-9]*)\n        __uk_split ,\n        if [ \"$__uk_n\" = 0 ]; then",
                    spec.name()
                );
                for t in transports()
                    .iter()
                    .filter(|t| super::on_offered_kernel(t.kernels()))
                {
                    let _ = writeln!(
                        s,
                        "            __uk_emit \"$__uk_base\"{} {} n",
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
                let _ = writeln!(s, "    {})", pattern(key));
                // A literal before the first field (`mconsole=notify:<socket>`) is offered first.
                let rest = &spec.syntax()[spec.name().len().min(spec.syntax().len())..];
                let literal = rest.split('<').next().unwrap_or("");
                let sep = if rest.contains(">:<") { ":" } else { "," };
                if !literal.is_empty() {
                    let _ = writeln!(
                        s,
                        "        case $__uk_val in\n        {lit}*) __uk_val=${{__uk_val#{lit}}} ;;\n        \
                         *) __uk_emit {} {} n; return ;;\n        esac",
                        q(&format!("{}{literal}", spec.name())),
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
    for t in transports()
        .iter()
        .filter(|t| super::on_offered_kernel(t.kernels()))
    {
        let _ = writeln!(s, "    {})", q(t.name()));
        fields_case(s, "        ", t.fields(), true);
        s.push_str("        ;;\n");
    }
    s.push_str("    esac\n}\n");
}

fn vec(s: &mut String) {
    // Keys for the chosen transport: the first `transport=` in the value.
    s.push_str(
        "__uk_vec() {\n    __uk_split ,\n    __uk_t=\n    case ,$__uk_val in\n    \
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

/// `=` for `ubd`, `con`, `ssl`, `eth`; `:` for `vec`; `None` for options without units.
fn unit_separator(spec: &OptionSpec) -> Option<&'static str> {
    match spec.value() {
        ValueKind::Ubd | ValueKind::Channels | ValueKind::Transport => Some("="),
        ValueKind::KeyValues => Some(":"),
        _ => None,
    }
}
