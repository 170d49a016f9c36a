//! The D-Bus API as a man page, `org.umlkit.uml1(5)`, generated from the checked-in
//! introspection XML (`interfaces/*.xml`), whose comments document every member. The XML is the
//! one description of the API: the service is tested against it, and this page is made from it.

use uml::options::man::{Block, Section};

/// The interface files, in the order the page lists them.
pub const INTERFACES: &[&str] = &[
    include_str!("../interfaces/org.umlkit.uml1.Manager.xml"),
    include_str!("../interfaces/org.umlkit.uml1.Machine.xml"),
];

/// One member of an interface, as the XML declares it.
#[derive(Debug, Default)]
struct Member {
    kind: &'static str,
    name: String,
    args: Vec<(String, String, String)>,
    ty: String,
    access: String,
    doc: String,
}

fn attr(line: &str, key: &str) -> String {
    let pat = format!("{key}=\"");
    line.find(&pat)
        .and_then(|i| {
            let rest = &line[i + pat.len()..];
            rest.find('"').map(|j| rest[..j].to_owned())
        })
        .unwrap_or_default()
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Interfaces with their members, and the file-level comment of each (its preamble).
fn parse(xml: &str) -> Vec<(String, String, Vec<Member>)> {
    let mut out: Vec<(String, String, Vec<Member>)> = Vec::new();
    let mut comment = String::new();
    let mut in_comment = false;
    let mut preamble = String::new();
    let mut current: Option<Member> = None;
    for raw in xml.lines() {
        let line = raw.trim();
        if in_comment || line.starts_with("<!--") {
            let body = line.trim_start_matches("<!--");
            if let Some(end) = body.find("-->") {
                comment.push_str(&body[..end]);
                comment.push(' ');
                in_comment = false;
            } else {
                comment.push_str(body);
                comment.push(' ');
                in_comment = true;
            }
            continue;
        }
        if line.starts_with("<node") {
            preamble = squash(&comment);
            comment.clear();
        } else if line.starts_with("<interface") {
            out.push((attr(line, "name"), preamble.clone(), Vec::new()));
            comment.clear();
        } else if let Some(kind) = ["method", "signal", "property"]
            .into_iter()
            .find(|k| line.starts_with(&format!("<{k} ")))
        {
            let m = Member {
                kind,
                name: attr(line, "name"),
                ty: attr(line, "type"),
                access: attr(line, "access"),
                doc: squash(&comment),
                ..Member::default()
            };
            comment.clear();
            if kind == "property" || line.ends_with("/>") {
                if let Some(last) = out.last_mut() {
                    last.2.push(m);
                }
            } else {
                current = Some(m);
            }
        } else if line.starts_with("<arg") {
            if let Some(m) = current.as_mut() {
                m.args.push((
                    attr(line, "name"),
                    attr(line, "type"),
                    attr(line, "direction"),
                ));
            }
        } else if (line.starts_with("</method") || line.starts_with("</signal"))
            && let (Some(m), Some(last)) = (current.take(), out.last_mut())
        {
            last.2.push(m);
        }
    }
    out
}

fn signature(m: &Member) -> String {
    match m.kind {
        "property" => format!("{} {} ({})", m.name, m.ty, m.access),
        _ => {
            let ins: Vec<String> = m
                .args
                .iter()
                .filter(|a| a.2 != "out")
                .map(|a| {
                    if a.0.is_empty() {
                        a.1.clone()
                    } else {
                        format!("{} {}", a.1, a.0)
                    }
                })
                .collect();
            let outs: Vec<String> = m
                .args
                .iter()
                .filter(|a| a.2 == "out")
                .map(|a| a.1.clone())
                .collect();
            let ret = if outs.is_empty() {
                String::new()
            } else {
                format!(" → {}", outs.join(", "))
            };
            format!("{}({}){ret}", m.name, ins.join(", "))
        }
    }
}

/// The sections of `org.umlkit.uml1(5)`.
pub fn sections() -> Vec<Section> {
    let mut sections = vec![Section {
        title: "DESCRIPTION",
        blocks: vec![
            Block::Para(
                "umld(8) puts every User-mode Linux guest of the user on the session bus under the \
                 name org.umlkit.uml1. The manager object /org/umlkit/uml1 lists, finds and launches \
                 guests and implements org.freedesktop.DBus.ObjectManager; each guest is an object \
                 /org/umlkit/uml1/machine/UMID (bytes of the umid outside [A-Za-z0-9] written as _xx \
                 in hex, as systemd does) with the org.umlkit.uml1.Machine interface. Every property \
                 that can change emits org.freedesktop.DBus.Properties.PropertiesChanged."
                    .into(),
            ),
        ],
    }];
    sections.push(access());
    let mut errors = String::new();
    for xml in INTERFACES {
        for (name, preamble, members) in parse(xml) {
            if errors.is_empty() && preamble.contains("Errors") {
                errors = preamble.clone();
            }
            for (kind, title) in [
                ("method", "METHODS"),
                ("property", "PROPERTIES"),
                ("signal", "SIGNALS"),
            ] {
                let blocks: Vec<Block> = members
                    .iter()
                    .filter(|m| m.kind == kind)
                    .map(|m| Block::Item(signature(m), m.doc.clone()))
                    .collect();
                if !blocks.is_empty() {
                    let mut all = vec![Block::Para(format!("Interface {name}:"))];
                    all.extend(blocks);
                    sections.push(Section {
                        title: heading(short(&name), title),
                        blocks: all,
                    });
                }
            }
        }
    }
    if !errors.is_empty() {
        let text = errors
            .split_once("Errors")
            .map(|(_, e)| format!("Errors{e}"))
            .unwrap_or(errors);
        sections.push(Section {
            title: "ERRORS",
            blocks: vec![Block::Para(text)],
        });
    }
    sections.push(Section {
        title: "EXAMPLES",
        blocks: vec![
            Block::Code("busctl --user call org.umlkit.uml1 /org/umlkit/uml1 org.umlkit.uml1.Manager ListMachines".into()),
            Block::Code("busctl --user get-property org.umlkit.uml1 /org/umlkit/uml1/machine/web1 org.umlkit.uml1.Machine State".into()),
            Block::Code("gdbus call --session -d org.umlkit.uml1 -o /org/umlkit/uml1/machine/web1 -m org.umlkit.uml1.Machine.Pause".into()),
            Block::Para(
                "Complete clients in GJS and Python GIO, which use every part of this API the way \
                 a GNOME application does, are installed under /usr/share/doc/umlkit/examples/ \
                 (see umld(8))."
                    .into(),
            ),
        ],
    });
    sections.push(Section {
        title: "FILES",
        blocks: vec![Block::Para(
            "The interface descriptions are installed under /usr/share/dbus-1/interfaces/.".into(),
        )],
    });
    sections.push(Section {
        title: "SEE ALSO",
        blocks: vec![Block::Para("umld(8), uml(1), busctl(1), gdbus(1)".into())],
    });
    sections
}

/// Who may call what: the ACCESS section of both umld(8) and org.umlkit.uml1(5).
pub fn access() -> Section {
    let para = |t: &str| Block::Para(t.to_owned());
    Section {
        title: "ACCESS",
        blocks: vec![
            para(
                "A caller can do nothing through umld that it could not do itself. Before every method \
                 that changes a guest or reads inside it, umld asks the bus daemon who the caller is \
                 (GetConnectionCredentials). The user umld runs as, and root, may call everything. \
                 Properties, ListMachines, GetMachine, Version and QueryConfig are open to anyone \
                 the bus lets call the service. Refusals are the error \
                 org.umlkit.uml1.Error.AccessDenied, naming the caller's uid and what is missing.",
            ),
            Block::Item(
                "Session bus".into(),
                "Every other user is refused: run your own umld on your own session bus.".into(),
            ),
            Block::Item(
                "System bus (umld --system)".into(),
                "The shipped D-Bus policy lets only root own org.umlkit.uml1 and anyone call it; \
                 umld then asks polkit, per call, through CheckAuthorization with the caller's bus \
                 name as the subject. Launch needs the action org.umlkit.uml1.launch; Shutdown, \
                 Halt, Reboot, Reset, Pause, Resume, SysRq, Config, Remove, OpenConsole, Log, Proc \
                 and Stack need org.umlkit.uml1.manage, except on the caller's own guests (below). \
                 Both actions default to auth_admin (auth_admin_keep in an active local session). \
                 A call that allows interactive authorization lets polkit ask through the caller's \
                 agent."
                    .into(),
            ),
            Block::Item(
                "Guests launched for a caller".into(),
                "A guest that umld --system launches for a caller other than root or umld's user \
                 runs as that caller: its kernel gets the caller's uid, gid and supplementary \
                 groups before it starts, so everything it opens on the host (its disks, and the \
                 host's / that the built-in guest sees through hostfs, even a host directory the \
                 guest's root mounts read-write) carries exactly the caller's rights. It lives in \
                 the caller's own uml_dir, UML_DIR/users/UID (mode 0700, the caller's; UML_DIR/users \
                 is umld's), with its init script and boot log in UML_DIR/users/UID/.umlkit, also \
                 the caller's; umld makes these through descriptors and refuses a symlink, another \
                 owner, or a directory others may write in. So UML_DIR and the directories above it \
                 must be searchable by every user (0711 or 0755), or Launch fails saying so. umld \
                 adopts such guests at start and every few seconds, and takes notifications (boot, \
                 panic, /proc/mconsole) from a user only about that user's own guests; for that, \
                 umld --system makes its notify socket writable by everyone and its directory \
                 searchable. The guest may be managed by the caller, who needs no polkit authorisation for its \
                 own guests since it could do all of it itself, and by root, umld's user and \
                 whoever polkit authorises for org.umlkit.uml1.manage. Other users see it listed, as \
                 every guest. Its umid is unique on the bus: Launch refuses one that any guest of \
                 the service has."
                    .into(),
            ),
            Block::Item(
                "A manage grant is an administrator's grant".into(),
                "Guests in UML_DIR itself (started by root, or by umld's user) run as root. \
                 org.umlkit.uml1.manage covers them too: OpenConsole on such a guest gives a root \
                 shell in a guest that sees the host's files with root's rights, Config can give it \
                 more, Shutdown stops it. Authorise org.umlkit.uml1.manage only for users who could \
                 become root anyway; org.umlkit.uml1.launch alone lets a user start guests that run \
                 as itself and manage those."
                    .into(),
            ),
            Block::Item(
                "Authorised callers".into(),
                "A caller other than root or umld's user, even when polkit authorises it, cannot \
                 give Launch the kernel, kernel_args or net options (umld profiles the kernel and \
                 checks the command line as root, and sets up host networking as root: the \
                 service's kernel is used), and every host file it names is checked against its \
                 own access by a process with its uid and groups: Launch's disks (and the backing \
                 file a COW disk names) and rw directories, Config's disk files. For Config on a \
                 guest that runs as root, a disk file must also lie in directories the caller \
                 cannot write in (in a sticky one such as /tmp, not as the caller's own entry): \
                 that kernel opens it by name, as root, and the caller must not be able to swap it \
                 in between. Paths with a comma or colon are refused. On such a guest it may put \
                 console lines only on null, pts or pty; other devices only root or umld's user \
                 may configure. On its own guest, Config passes as given. The files go to the \
                 kernel by their canonical paths."
                    .into(),
            ),
        ],
    }
}

fn short(interface: &str) -> &str {
    interface.rsplit('.').next().unwrap_or(interface)
}

/// The heading of one interface's members of one kind.
fn heading(interface: &str, kind: &'static str) -> &'static str {
    match (interface, kind) {
        ("Manager", "METHODS") => "MANAGER METHODS",
        ("Manager", "PROPERTIES") => "MANAGER PROPERTIES",
        ("Manager", "SIGNALS") => "MANAGER SIGNALS",
        ("Machine", "METHODS") => "MACHINE METHODS",
        ("Machine", "PROPERTIES") => "MACHINE PROPERTIES",
        ("Machine", "SIGNALS") => "MACHINE SIGNALS",
        _ => kind,
    }
}
