//! `uml generate` (hidden): writes the man pages and shell completions that are committed under
//! `man/` and `completions/`, from the clap definitions of `uml` and the kernel option table.
//! `scripts/generate` runs it; `tests/generated.rs` checks the committed files are current.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use uml::options::complete;
use uml::options::man::{self, Block, Meta, Section};

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Man pages and completions.
    All,
    /// Man pages only.
    Man,
    /// Completions only.
    Completions,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to generate
    #[arg(value_enum, default_value = "all")]
    pub kind: Kind,
    /// The tree to write into: pages go to DIR/man, completions to DIR/completions/<shell>
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let meta = Meta::umlkit(env!("CARGO_PKG_VERSION"));
    if matches!(args.kind, Kind::All | Kind::Man) {
        let dir = args.out_dir.join("man");
        let mut pages = man::command_pages(super::Cli::command(), "1", &meta, &uml_sections());
        pages.push(man::kernel_options_page(&meta));
        for page in pages {
            write(&dir.join(&page.file_name), &page.text)?;
        }
    }
    if matches!(args.kind, Kind::All | Kind::Completions) {
        let dir = args.out_dir.join("completions");
        let mut scripts =
            complete::command_scripts(super::Cli::command(), "uml", super::COMPLETION_HOOKS)?;
        scripts.extend(complete::kernel_scripts());
        for script in scripts {
            write(&dir.join(&script.path), &script.text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn para(text: &str) -> Block {
    Block::Para(text.to_owned())
}

fn item(tag: &str, text: &str) -> Block {
    Block::Item(tag.to_owned(), text.to_owned())
}

fn code(text: &str) -> Block {
    Block::Code(text.to_owned())
}

/// The sections of uml(1) that clap does not know.
fn uml_sections() -> Vec<Section> {
    vec![
        Section {
            title: "EXAMPLES",
            blocks: vec![
                para("Run a command in a fresh guest over the host's root directory:"),
                code("uml run -- make test"),
                para("Boot a named guest with a disk in the background, then stop it:"),
                code("uml run --detach --umid web1 -d web1.img\numl list\numl shutdown web1"),
                para("Check a kernel command line before booting it:"),
                code("uml check --explain ubd0=root.img mem=512M eth0=daemon,,unix,/tmp/sw.ctl"),
                para("Hot-add a disk to a running guest and look at its memory:"),
                code("uml config web1 ubd1=/srv/data.img\numl proc web1 meminfo"),
            ],
        },
        Section {
            title: "FILES",
            blocks: vec![
                item(
                    "~/.uml",
                    "The default uml_dir. Each running guest has a directory ~/.uml/<umid> with \
                     its pid file and its mconsole socket. A directory whose pid is dead is \
                     stale: uml list reports it and uml clean removes it.",
                ),
                item(
                    "~/.uml/<umid>/mconsole",
                    "The guest's management console socket.",
                ),
                item(
                    "~/.uml/<umid>/pid",
                    "The pid of the guest's kernel process.",
                ),
            ],
        },
        Section {
            title: "ENVIRONMENT",
            blocks: vec![
                item(
                    "UML_DIR",
                    "The uml_dir to use instead of ~/.uml; --uml-dir overrides it.",
                ),
                item(
                    "UML_KERNEL",
                    "The kernel uml run boots instead of linux from PATH; --kernel overrides it.",
                ),
                item(
                    "RUST_LOG",
                    "Diagnostics filter (for example uml=debug); -v, -vv and -vvv are shortcuts.",
                ),
            ],
        },
        Section {
            title: "EXIT STATUS",
            blocks: vec![
                item(
                    "0",
                    "Success. uml run exits with the status of the guest's command.",
                ),
                item(
                    "1",
                    "The operation failed; the reason is printed on stderr.",
                ),
                item("2", "The command line was not understood."),
            ],
        },
        Section {
            title: "SEE ALSO",
            blocks: vec![para(
                "uml-kernel-options(7), uml_mconsole(1), uml_mkcow(1), uml_switch(1), \
                 and the page of each subcommand, for example uml-run(1).",
            )],
        },
    ]
}
