//! The command line as a whole: what is missing, what is given twice, the length and init
//! slot limits, and how root, rootfstype and hostfs fit together.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Checker, Severity};
use super::{MAX_COMMAND_LINE, MAX_INIT_SLOTS, MAX_UMID};
use crate::cmdline::{Arg, CommandLine};
use crate::options::{Fate, InitSlot};

impl Checker<'_> {
    pub(super) fn whole(&mut self, cmdline: &CommandLine, dashdash: Option<usize>) {
        let args = cmdline.args();
        let parsed = |i: &usize| dashdash.is_none_or(|d| *i < d);
        let has = |f: &dyn Fn(&Arg) -> bool| {
            args.iter()
                .enumerate()
                .any(|(i, a)| parsed(&i) && f(a.meaning()))
        };

        // Debian's CONFIG_CON_CHAN="x-terminal-emulator" is no channel type (stdio_console.c).
        if !has(&|a| matches!(a, Arg::Con { unit: None, .. })) {
            self.push(
                Severity::Warning,
                "con-default",
                None,
                "no `con=`: Debian's default channel for con1-15 (x-terminal-emulator) does not \
                 parse, so each logs `setup_one_line failed for device N : failed to parse \
                 channel pair`; pass con=null (and con0=fd:0,fd:1 for the console)"
                    .into(),
            );
        }
        if !has(&|a| matches!(a, Arg::Ubd { unit: 0, .. })) {
            // ubd0 defaults to the file root_fs (ubd_kern.c), whatever the root is.
            if has(&|a| matches!(a, Arg::Root(_))) {
                self.push(
                    Severity::Note,
                    "no-ubd0",
                    None,
                    "no ubd0: unless `root_fs` exists in the kernel's working directory, the \
                     kernel logs the harmless `Failed to initialize ubd device 0 :Couldn't \
                     determine size of device's file`"
                        .into(),
                );
            } else {
                self.push(
                    Severity::Warning,
                    "no-root",
                    None,
                    "no root= and no ubd0: the kernel boots from the file `root_fs` in its \
                     working directory (ubd0's default)"
                        .into(),
                );
            }
        }
        self.mconsole_path();
        self.memory_dir();
        self.hostfs_root(args);

        // The kernel command line (um_arch.c, add_arg): every word but the first umid= and
        // xterm=, joined by spaces, then root=98:0 and console=tty0 if absent.
        let mut line_len = 0usize;
        // set_umid_arg(): every umid= is removed until one is accepted (too-long ones are
        // refused); after that they stay. Verified on 6.1.176 via /proc/cmdline.
        let mut umid_set = false;
        for arg in args {
            let removed = match arg.meaning() {
                Arg::Umid(name) if !umid_set => {
                    umid_set = name.len() <= MAX_UMID;
                    true
                }
                other => other.spec().is_some_and(|spec| {
                    !spec.presence(&self.env.kernel).is_absent()
                        && spec.removed_on(&self.env.kernel) == Some(true)
                }),
            };
            if !removed {
                line_len += arg.to_string().len() + usize::from(line_len > 0);
            }
        }
        if !has(&|a| matches!(a, Arg::Root(_))) {
            line_len += " root=98:0".len();
        }
        if !args
            .iter()
            .any(|a| a.spec().is_some_and(|s| s.name() == "console="))
        {
            line_len += " console=tty0".len();
        }
        if line_len >= MAX_COMMAND_LINE {
            self.push(
                Severity::Error,
                "cmdline-too-long",
                None,
                format!(
                    "the kernel command line would be {line_len} bytes: the limit is {} \
                     (`add_arg: Too many command line arguments!`, then exit 1)",
                    MAX_COMMAND_LINE - 1
                ),
            );
        }

        // init/main.c, unknown_bootoption(): each table holds MAX_INIT_ARGS + 1 entries before
        // the next word panics. argv_init starts with "init", envp_init with HOME=/ and
        // TERM=linux, so a user gets 128 arguments but only 127 variables (the spec's "128 of
        // each" is off by one for the environment). Verified on 6.1.176: 128 arguments boot,
        // 128 variables panic with `Too many boot env vars at `e128=1'`.
        let mut init_argv = 0usize;
        let mut env_keys: Vec<String> = vec!["HOME".into(), "TERM".into()];
        for (i, arg) in args.iter().enumerate() {
            let word = arg.to_string();
            let slot = if !parsed(&i) {
                if word.contains('=') {
                    Some(InitSlot::Env)
                } else {
                    Some(InitSlot::Argv)
                }
            } else {
                let unclaimed = |w: &str| match Fate::of_unclaimed(w) {
                    Fate::Dropped => None,
                    Fate::Env => Some(InitSlot::Env),
                    Fate::Argv => Some(InitSlot::Argv),
                };
                match arg.meaning() {
                    Arg::Unknown(w) if w == "--" => None,
                    Arg::Unknown(w) => unclaimed(w),
                    other => match other.spec() {
                        Some(spec) if spec.presence(&self.env.kernel).is_absent() => spec
                            .absent_fate()
                            .map_or_else(|| unclaimed(&word), |_| None),
                        Some(spec) => spec.init_on(&self.env.kernel),
                        None => None,
                    },
                }
            };
            match slot {
                Some(InitSlot::Argv) => init_argv += 1,
                Some(InitSlot::Env) => {
                    let key = word.split_once('=').map_or(word.as_str(), |(k, _)| k);
                    if !env_keys.iter().any(|k| k == key) {
                        env_keys.push(key.to_owned());
                    }
                }
                None => {}
            }
        }
        let env_user = env_keys.len() - 2;
        for (what, kind, n, limit) in [
            ("arguments", "init", init_argv, MAX_INIT_SLOTS),
            ("environment variables", "env", env_user, MAX_INIT_SLOTS - 1),
        ] {
            if n > limit {
                self.push(
                    Severity::Error,
                    "init-too-many",
                    None,
                    format!(
                        "init would get {n} {what} from the command line: the limit is {limit}; \
                         the kernel panics (`Too many boot {kind} vars`)"
                    ),
                );
            }
        }
        self.duplicates(args, dashdash);
    }

    /// The generic `root=`, `rootfstype=` and `init=` handlers (`init/do_mounts.c`,
    /// `init/main.c`) each keep the last value: an earlier one is silently overridden.
    /// Verified on 7.2.12 (`root=/dev/ubda root=/dev/root rootfstype=ext4 rootfstype=hostfs`
    /// mounted the hostfs root; of two `init=` the second ran).
    pub(super) fn duplicates(&mut self, args: &[Arg], dashdash: Option<usize>) {
        let mut last: HashMap<&'static str, usize> = HashMap::new();
        for (index, arg) in args.iter().enumerate() {
            if dashdash.is_some_and(|d| index >= d) {
                break;
            }
            if !matches!(
                arg.meaning(),
                Arg::Root(_) | Arg::RootFsType(_) | Arg::Init(_)
            ) {
                continue;
            }
            let Some(spec) = arg.spec() else { continue };
            if let Some(first) = last.insert(spec.name(), index) {
                self.push(
                    Severity::Warning,
                    "duplicate",
                    Some((index, arg)),
                    format!(
                        "`{}` is also given by argument {first}: the kernel uses the last one \
                         and ignores the earlier one",
                        spec.name()
                    ),
                );
            }
        }
    }

    /// With `rootfstype=hostfs`, `rootflags=` names a host directory under the `hostfs=` root.
    pub(super) fn hostfs_root(&mut self, args: &[Arg]) {
        if !self.env.filesystem {
            return;
        }
        let mut hostfs = false;
        let mut flags = None;
        let mut prefix = String::new();
        for (i, arg) in args.iter().enumerate() {
            match arg.meaning() {
                Arg::RootFsType(t) => hostfs = t == "hostfs",
                Arg::RootFlags(dir) => flags = Some((i, arg, dir.clone())),
                Arg::Hostfs { root, .. } => prefix = root.display().to_string(),
                _ => {}
            }
        }
        if let (true, Some((i, arg, dir))) = (hostfs, flags) {
            let full = PathBuf::from(format!("{prefix}/{dir}"));
            if !full.is_dir() {
                self.push(
                    Severity::Error,
                    "hostfs-root-missing",
                    Some((i, arg)),
                    format!(
                        "the hostfs root `{}` is not a host directory",
                        full.display()
                    ),
                );
            }
        }
    }
}
