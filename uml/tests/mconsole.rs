//! The mconsole client and notify listener against real UML guests, compared command by
//! command with `uml_mconsole`; fake peers only for faults a real kernel cannot produce
//! (silence, endless streams, broken datagrams).

use std::fs;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use testkit::{Guest, GuestBuilder, short_tempdir};
use uml::mconsole::wire::{ReplyChunk, Request};
use uml::mconsole::{
    AsyncClient, AsyncNotifyListener, Client, Error, Notification, NotifyListener, Reply,
};

const WAIT: Duration = Duration::from_secs(20);

/// Boot a guest and wait for its init. The mconsole socket answers from mid-boot, but the
/// console that streams `sysrq`/`stack` output into replies is registered only by a late
/// initcall (`mc_add_console` in mconsole_kern.c): before it, those replies come back empty.
fn boot(prefix: &str) -> Guest {
    ready(GuestBuilder::new(prefix))
}

fn ready(builder: GuestBuilder) -> Guest {
    let guest = builder.boot().unwrap();
    guest.wait_for_log("READY", WAIT).unwrap();
    guest
}

/// What `uml_mconsole <socket> <command>` prints, split into (ok, text). It prints
/// `OK <text>\n` or `ERR <text>\n` and nothing else.
fn reference(socket: &Path, command: &str) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("20")
        .arg("uml_mconsole")
        .arg(socket)
        .arg(command)
        .output()
        .expect("cannot run uml_mconsole");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (ok, rest) = if let Some(rest) = stdout.strip_prefix("OK ") {
        (true, rest)
    } else if let Some(rest) = stdout.strip_prefix("ERR ") {
        (false, rest)
    } else {
        panic!(
            "uml_mconsole {} {command:?} printed neither OK nor ERR: {stdout:?}, stderr {:?}",
            socket.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let text = rest
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("uml_mconsole output does not end in a newline: {stdout:?}"));
    (ok, text.to_owned())
}

/// Send `command` with our client and with `uml_mconsole`; both must agree exactly.
fn assert_same(client: &Client, socket: &Path, command: &str) -> Reply {
    let ours = client.request(command).unwrap();
    let (ok, text) = reference(socket, command);
    assert_eq!(
        (ours.is_ok(), ours.text.as_str()),
        (ok, text.as_str()),
        "our reply to {command:?} differs from uml_mconsole's"
    );
    ours
}

fn guest_code(e: &Error) -> (u32, String) {
    match e {
        Error::Guest { code, message, .. } => (*code, message.clone()),
        other => panic!("expected a guest error, got {other:?}"),
    }
}

#[test]
fn queries_match_uml_mconsole_exactly() {
    let guest = boot("mcq");
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();

    let version = assert_same(&client, &socket, "version");
    assert!(version.text.starts_with("Linux "), "{version:?}");
    assert_eq!(client.version().unwrap(), version.text);

    // help is about 720 bytes: two chunks. uml_mconsole prints its own help block after the
    // kernel's reply.
    let help = client.request("help").unwrap();
    assert!(help.is_ok() && help.text.len() > 511, "{help:?}");
    let (ok, text) = reference(&socket, "help");
    assert!(ok);
    let local = text
        .strip_prefix(help.text.as_str())
        .unwrap_or_else(|| panic!("uml_mconsole's help {text:?} does not start with ours"));
    assert!(
        local.starts_with("\nAdditional local mconsole commands:"),
        "{local:?}"
    );

    // Over one chunk, stable between two reads.
    let cpuinfo = assert_same(&client, &socket, "proc cpuinfo");
    assert!(cpuinfo.text.starts_with("\nprocessor"), "{cpuinfo:?}");
    assert_eq!(client.proc_file("cpuinfo").unwrap(), &cpuinfo.text[1..]);

    let missing = assert_same(&client, &socket, "proc no/such/file");
    assert_eq!(
        (missing.err, missing.text.as_str()),
        (1, "Failed to open file")
    );

    for command in [
        "config con0",
        "config ssl0",
        "config ubd3",
        "config eth0",
        "config bogus0",
        "remove ubd9",
        "remove ubd99",
        "frobnicate",
        "versionXYZ",
        "go",
        "sysrq h",
    ] {
        assert_same(&client, &socket, command);
    }
    assert_eq!(client.config_get("con0").unwrap(), "fd:0,fd:1");
    assert_eq!(client.config_get("ubd3").unwrap(), "");
    assert!(!client.config_get("ssl0").unwrap().is_empty());

    let (code, message) = guest_code(&client.remove("ubd9").unwrap_err());
    assert_eq!(code as i32, -19);
    assert_eq!(message, "Device doesn't exist");
    let shown = client.remove("ubd9").unwrap_err().to_string();
    assert!(shown.contains("-19 (ENODEV)"), "{shown}");

    let (code, message) = guest_code(&client.go().unwrap_err());
    assert_eq!((code, message.as_str()), (1, "Not stopped"));

    let (code, message) = guest_code(&client.run("frobnicate").unwrap_err());
    assert_eq!((code, message.as_str()), (1, "Unknown command"));

    // Threads sharing one client take turns: every reply belongs to its own request.
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(client.version().unwrap(), version.text);
                    assert_eq!(client.config_get("con0").unwrap(), "fd:0,fd:1");
                }
            });
        }
    });
}

#[test]
fn proc_meminfo_arrives_in_several_chunks_without_the_leading_newline() {
    let guest = boot("mcp");
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();
    let meminfo = client.proc_file("meminfo").unwrap();
    assert!(meminfo.len() > 2 * 511, "{meminfo:?}");
    assert!(meminfo.starts_with("MemTotal:"), "{meminfo:?}");
    assert!(meminfo.ends_with('\n'));
    // The numbers move between reads; the set of fields does not.
    let fields = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split(':').next().unwrap_or("").to_owned())
            .collect()
    };
    let (ok, reference_text) = reference(&socket, "proc meminfo");
    assert!(ok);
    assert_eq!(fields(&reference_text[1..]), fields(&meminfo));
}

#[test]
fn console_streaming_commands_return_their_output() {
    let guest = boot("mcs");
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();
    // About 15 datagrams in one burst. uml_mconsole's socket is not connected, so the host
    // caps its queue at net.unix.max_dgram_qlen (10); the kernel's non-blocking sendto then
    // fails, the tail and the final chunk are lost, and uml_mconsole waits forever. Ours is
    // connected to the guest socket, which lifts that cap (unix_dgram_sendmsg), so the whole
    // output arrives, up to show_mem's last line.
    let mem = client.sysrq('m').unwrap();
    assert!(mem.starts_with("sysrq: Show Memory\nMem-Info:"), "{mem:?}");
    assert!(mem.trim_end().ends_with("pages reserved"), "{mem:?}");
    assert_same(&client, &socket, "sysrq h");

    // Whatever this kernel prints for a stack, the reply ends. (No comparison: a stack is a
    // burst of console lines, which uml_mconsole loses for the reason above.)
    let stack = client.request("stack 1").unwrap();
    assert!(stack.is_ok(), "{stack:?}");
    assert!(client.stack(1).is_ok());
    assert_same(&client, &socket, "stack 0");
    assert_same(&client, &socket, "stack");

    // The guest is still fine afterwards.
    assert!(client.version().unwrap().starts_with("Linux"));
}

#[test]
fn log_text_reaches_the_guest_console_in_506_byte_requests() {
    let guest = boot("mcl");
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();
    client.log("umlkit-log-short").unwrap();
    guest.wait_for_log("umlkit-log-short", WAIT).unwrap();

    let long = format!("umlkit-begin{}umlkit-end\n", "x".repeat(1200));
    client.log(&long).unwrap();
    guest.wait_for_log("umlkit-begin", WAIT).unwrap();
    guest.wait_for_log("umlkit-end", WAIT).unwrap();

    // uml_mconsole drops the trailing newline from its command line, sends "log <text>" and
    // then "log \n", and prints one "OK " line per request; each reply is empty, as ours.
    let (ok, text) = reference(&socket, "log from-uml-mconsole");
    assert_eq!((ok, text.as_str()), (true, "\nOK "));
    assert_eq!(
        client.request("log ours\n").unwrap(),
        Reply {
            err: 0,
            text: String::new()
        }
    );
    guest.wait_for_log("from-uml-mconsole", WAIT).unwrap();
    guest.wait_for_log("ours", WAIT).unwrap();
}

#[test]
fn stop_freezes_the_guest_but_requests_still_work() {
    let guest = ready(GuestBuilder::new("mct").body("while :; do echo tick; sleep 0.1; done"));
    guest.wait_for_log("tick", WAIT).unwrap();
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();

    let stopped = client.request("stop").unwrap();
    assert_eq!((stopped.err, stopped.text.as_str()), (0, "stopped"));
    // Requests are served inline while stopped, by us and by uml_mconsole.
    assert!(client.version().unwrap().starts_with("Linux"));
    assert_same(&client, &socket, "stop");
    assert_same(&client, &socket, "config con0");
    let (code, message) = guest_code(&client.stop().unwrap_err());
    assert_eq!((code, message.as_str()), (1, "Already stopped"));

    // Frozen: init's loop prints nothing.
    thread::sleep(Duration::from_millis(300));
    let frozen = guest.log().matches("tick").count();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(guest.log().matches("tick").count(), frozen);

    client.go().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while guest.log().matches("tick").count() <= frozen {
        assert!(std::time::Instant::now() < deadline, "guest did not resume");
        thread::sleep(Duration::from_millis(50));
    }
    assert_same(&client, &socket, "go");
}

#[test]
fn hot_added_disk_shows_in_config_and_can_be_removed() {
    let guest = boot("mcu");
    let socket = guest.mconsole_path();
    let client = Client::connect(&socket).unwrap();
    let dir = short_tempdir("mcu");
    let disk = dir.path().join("disk1.img");
    let other = dir.path().join("disk2.img");
    for path in [&disk, &other] {
        fs::File::create(path).unwrap().set_len(16 << 20).unwrap();
    }

    // Ours hot-adds ubd1, uml_mconsole hot-adds ubd2: same answer.
    let ours = client
        .request(&format!("config ubd1={}", disk.display()))
        .unwrap();
    let (ok, text) = reference(&socket, &format!("config ubd2={}", other.display()));
    assert_eq!((ours.is_ok(), ours.text.as_str()), (ok, text.as_str()));
    assert!(ours.is_ok(), "{ours:?}");
    assert_eq!(client.config_get("ubd1").unwrap(), disk.to_str().unwrap());
    assert_eq!(client.config_get("ubd2").unwrap(), other.to_str().unwrap());
    assert_same(&client, &socket, "config ubd1");
    assert_same(&client, &socket, "config ubd2");

    // A second disk on a used unit is refused by both.
    let err = client
        .config_set("ubd1", other.to_str().unwrap())
        .unwrap_err();
    let (code, message) = guest_code(&err);
    let (ok, text) = reference(&socket, &format!("config ubd2={}", disk.display()));
    assert_eq!((code == 0, message.as_str()), (ok, text.as_str()));

    // A 7.x kernel holds a just-added disk open for a few milliseconds after it answered the
    // hot-add (see `Client::remove`): ours waits that out; uml_mconsole is asked until it no
    // longer says so, within the same grace.
    client.remove("ubd1").unwrap();
    let deadline = std::time::Instant::now() + uml::mconsole::REMOVE_OPEN_GRACE;
    let (ok, text) = loop {
        let (ok, text) = reference(&socket, "remove ubd2");
        if ok || !text.contains("currently open") || std::time::Instant::now() > deadline {
            break (ok, text);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ok, "uml_mconsole remove ubd2: {text}");
    assert_eq!(text, "", "uml_mconsole's reply to a successful remove");
    assert_eq!(client.config_get("ubd1").unwrap(), "");
    assert_eq!(client.config_get("ubd2").unwrap(), "");
    client.config_set("ubd1", disk.to_str().unwrap()).unwrap();
    client.remove("ubd1").unwrap();
}

/// A disk is hot-added only once the guest's disk driver runs. `ubd_init`, a late initcall,
/// is held back here for good (`initcall_blacklist`), as it is for a moment in every boot
/// after mconsole answers: both clients wait for it, then refuse with the reason, and the
/// guest has no disk and still answers. (Sent anyway, the request stalls the guest's mconsole:
/// it did not answer `config ubd1=` within 5 s on 7.2.13.)
#[test]
fn a_disk_is_not_added_before_the_guests_disk_driver_runs() {
    let dir = short_tempdir("mcd");
    let disk = dir.path().join("early.img");
    fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
    let guest = ready(GuestBuilder::new("mcd").arg("initcall_blacklist=ubd_init"));
    let client = Client::connect(&guest.mconsole_path()).unwrap();
    // The premise: the kernel held the driver back (initcall_blacklist= needs its symbol
    // table, CONFIG_KALLSYMS, which Debian's kernels and `uml kernel build` have).
    let devices = client.proc_file("devices").unwrap();
    assert!(
        !devices.contains(" ubd"),
        "the kernel did not hold ubd_init back:\n{devices}\n{}",
        guest.log_tail(20)
    );
    let start = std::time::Instant::now();
    let err = client
        .config_set("ubd1", disk.to_str().unwrap())
        .unwrap_err();
    assert!(
        matches!(&err, Error::DiskDriverNotUp { dev, .. } if dev == "ubd1"),
        "{err:?}"
    );
    assert!(start.elapsed() >= uml::mconsole::DISK_DRIVER_WAIT);
    assert!(
        err.to_string().contains("disk driver has not started"),
        "{err}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        let client = AsyncClient::connect(&guest.mconsole_path()).await.unwrap();
        client
            .config_set("ubd2", disk.to_str().unwrap())
            .await
            .unwrap_err()
    });
    assert!(matches!(err, Error::DiskDriverNotUp { .. }), "{err:?}");
    assert!(!client.proc_file("partitions").unwrap().contains("ubd"));
    assert!(client.version().unwrap().contains("Linux"));
    // Other devices do not wait for it.
    client.config_set("con5", "null").unwrap();
}

#[test]
fn removing_a_disk_the_guest_holds_open_is_refused_after_the_grace() {
    let dir = short_tempdir("mco");
    let disk = dir.path().join("held.img");
    fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
    // ubdb is block device 98:16 (16 minors per ubd unit, ubd_kern.c); init keeps it open.
    let guest = ready(
        GuestBuilder::new("mco")
            .arg(format!("ubd1={}", disk.display()))
            .body("mknod /tmp/ubdb b 98 16 && exec 4</tmp/ubdb && echo HELD; while :; do sleep 1; done"),
    );
    guest.wait_for_log("HELD", WAIT).unwrap();
    let client = Client::connect(&guest.mconsole_path()).unwrap();
    let start = std::time::Instant::now();
    let (code, message) = guest_code(&client.remove("ubd1").unwrap_err());
    assert_eq!(
        (code as i32, message.as_str()),
        (-16, "Device is currently open")
    );
    assert!(start.elapsed() >= uml::mconsole::REMOVE_OPEN_GRACE);
    assert_eq!(client.config_get("ubd1").unwrap(), disk.to_str().unwrap());
}

#[test]
fn halt_makes_the_guest_exit_and_later_requests_fail_to_connect() {
    let mut guest = boot("mch");
    let client = Client::connect(&guest.mconsole_path()).unwrap();
    client.halt().unwrap();
    guest.wait_exit(WAIT).unwrap();
    // The socket lives as long as any of the kernel's helper processes holds it; they follow
    // the main process shortly.
    let deadline = std::time::Instant::now() + WAIT;
    while testkit::group_alive(guest.pid()) {
        assert!(
            std::time::Instant::now() < deadline,
            "helpers outlived the halted kernel"
        );
        thread::sleep(Duration::from_millis(20));
    }
    match client.version() {
        Err(Error::Connect { .. }) => {}
        other => panic!("expected a connect error after halt, got {other:?}"),
    }

    // uml_mconsole gets the same empty success reply.
    let mut other = boot("mch");
    assert_eq!(
        reference(&other.mconsole_path(), "halt"),
        (true, String::new())
    );
    other.wait_exit(WAIT).unwrap();
}

#[test]
fn cad_restarts_the_kernel_which_exits_with_noreboot() {
    let mut guest = ready(GuestBuilder::new("mcc").arg("noreboot"));
    let client = Client::connect(&guest.mconsole_path()).unwrap();
    assert_eq!(
        client.request("cad").unwrap(),
        Reply {
            err: 0,
            text: String::new()
        }
    );
    guest.wait_exit(WAIT).unwrap();

    let mut other = ready(GuestBuilder::new("mcc").arg("noreboot"));
    assert_eq!(
        reference(&other.mconsole_path(), "cad"),
        (true, String::new())
    );
    other.wait_exit(WAIT).unwrap();
    let mut third = ready(GuestBuilder::new("mcc").arg("noreboot"));
    Client::connect(&third.mconsole_path())
        .unwrap()
        .cad()
        .unwrap();
    third.wait_exit(WAIT).unwrap();
}

#[test]
fn notify_listener_receives_socket_and_user_notifications() {
    let dir = short_tempdir("mcn");
    let path = dir.path().join("notify");
    let listener = NotifyListener::bind(&path).unwrap();
    let guest = ready(
        GuestBuilder::new("mcn")
            .arg(format!("mconsole=notify:{}", path.display()))
            .body("echo hi > /proc/mconsole; while :; do sleep 1; done"),
    );
    assert_eq!(
        listener.recv(WAIT).unwrap(),
        Some(Notification::Socket {
            mconsole: guest.mconsole_path()
        })
    );
    assert_eq!(
        listener.recv(WAIT).unwrap(),
        Some(Notification::User {
            data: b"hi\n".to_vec()
        })
    );
    assert_eq!(listener.recv(Duration::from_millis(100)).unwrap(), None);
    drop(listener);
    assert!(
        !path.exists(),
        "the notify socket file survived its listener"
    );
}

#[test]
fn async_notify_listener_receives_the_panic_of_a_guest_whose_init_exits() {
    let dir = short_tempdir("mcx");
    let path = dir.path().join("notify");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = AsyncNotifyListener::bind(&path).unwrap();
        let mut guest = GuestBuilder::new("mcx")
            .arg(format!("mconsole=notify:{}", path.display()))
            .body("exit 3")
            .no_wait()
            .boot()
            .unwrap();
        let first = tokio::time::timeout(WAIT, listener.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(first, Notification::Socket { .. }), "{first:?}");
        let second = tokio::time::timeout(WAIT, listener.recv())
            .await
            .unwrap()
            .unwrap();
        match second {
            Notification::Panic { message } => {
                assert!(message.contains("Attempted to kill init!"), "{message:?}")
            }
            other => panic!("expected a panic notification, got {other:?}"),
        }
        let _ = guest.wait_exit(WAIT);
    });
    assert!(!path.exists());
}

#[test]
fn async_client_gives_the_same_answers() {
    let guest = boot("mca");
    let socket = guest.mconsole_path();
    let blocking = Client::connect(&socket).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = AsyncClient::connect(&socket).await.unwrap();
        assert_eq!(client.version().await.unwrap(), blocking.version().unwrap());
        assert_eq!(client.help().await.unwrap(), blocking.help().unwrap());
        assert_eq!(
            client.proc_file("cpuinfo").await.unwrap(),
            blocking.proc_file("cpuinfo").unwrap()
        );
        let (code, message) = guest_code(&client.go().await.unwrap_err());
        assert_eq!((code, message.as_str()), (1, "Not stopped"));
        let (code, _) = guest_code(&client.remove("ubd7").await.unwrap_err());
        assert_eq!(code as i32, -19);
        client.stop().await.unwrap();
        assert!(client.sysrq('h').await.unwrap().contains("HELP"));
        client.go().await.unwrap();
    });
}

#[test]
fn a_socket_with_no_guest_behind_it_is_a_connect_error() {
    let dir = short_tempdir("mce");
    let missing = dir.path().join("nothing");
    assert!(matches!(
        Client::connect(&missing),
        Err(Error::Connect { .. })
    ));
    // A socket file left behind by a dead kernel.
    let stale = dir.path().join("stale");
    drop(UnixDatagram::bind(&stale).unwrap());
    match Client::connect(&stale) {
        Err(e @ Error::Connect { .. }) => {
            assert!(e.to_string().contains(stale.to_str().unwrap()), "{e}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn a_command_too_long_for_one_datagram_is_refused_before_sending() {
    let dir = short_tempdir("mcm");
    let (_peer, socket) = fake_peer(dir.path());
    let client = Client::connect(&socket).unwrap();
    assert!(matches!(
        client.run(&"x".repeat(512)),
        Err(Error::CommandTooLong { len: 512 })
    ));
}

// ---- fake peers: faults a real kernel cannot be made to produce ----

fn fake_peer(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("fake");
    let peer = UnixDatagram::bind(&path).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.set_write_timeout(Some(WAIT)).unwrap();
    (peer, path)
}

fn receive_request(peer: &UnixDatagram) -> (Request, SocketAddr) {
    let mut buf = [0u8; 1024];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    (Request::parse(&buf[..n]).unwrap(), from)
}

fn chunk(err: u32, more: bool, text: &str) -> Vec<u8> {
    ReplyChunk {
        err,
        more,
        data: text.as_bytes().to_vec(),
    }
    .encode()
    .unwrap()
}

/// Serve one request with `reply` from a thread; the thread ends with the test's socket.
fn serve_once(
    peer: UnixDatagram,
    reply: impl FnOnce(&UnixDatagram, &SocketAddr) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (_, from) = receive_request(&peer);
        reply(&peer, &from);
    })
}

#[test]
fn a_peer_that_never_answers_times_out() {
    let dir = short_tempdir("mcf");
    let (peer, socket) = fake_peer(dir.path());
    let client = Client::connect(&socket)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    match client.version() {
        Err(Error::Timeout { command, after }) => {
            assert_eq!(command, "version");
            assert_eq!(after, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let (request, _) = receive_request(&peer);
    assert_eq!(request.command(), b"version");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = AsyncClient::connect(&socket)
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(200));
        assert!(matches!(client.version().await, Err(Error::Timeout { .. })));
    });
}

#[test]
fn a_trickling_peer_hits_the_whole_reply_deadline() {
    let dir = short_tempdir("mcd");
    let (peer, socket) = fake_peer(dir.path());
    let server = serve_once(peer, |peer, from| {
        // One chunk every 50 ms, forever; each receive is quick, the reply never ends.
        while peer.send_to_addr(&chunk(0, true, "."), from).is_ok() {
            thread::sleep(Duration::from_millis(50));
        }
    });
    let client = Client::connect(&socket)
        .unwrap()
        .with_timeout(Duration::from_secs(5))
        .with_deadline(Duration::from_millis(500));
    assert!(matches!(
        client.version(),
        Err(Error::Timeout { after, .. }) if after <= Duration::from_millis(500)
    ));
    drop(client);
    server.join().unwrap();
}

#[test]
fn an_endless_more_stream_ends_in_reply_too_large() {
    fn endless(peer: &UnixDatagram, from: &SocketAddr) {
        let full = "y".repeat(511);
        while peer.send_to_addr(&chunk(0, true, &full), from).is_ok() {}
    }
    let dir = short_tempdir("mcr");
    let (peer, socket) = fake_peer(dir.path());
    let server = serve_once(peer, endless);
    let client = Client::connect(&socket).unwrap().with_reply_limit(64 << 10);
    assert!(matches!(
        client.request("help"),
        Err(Error::ReplyTooLarge { limit: 65536 })
    ));
    drop(client);
    server.join().unwrap();

    let dir = short_tempdir("mcr");
    let (peer, socket) = fake_peer(dir.path());
    let server = serve_once(peer, endless);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = AsyncClient::connect(&socket)
            .await
            .unwrap()
            .with_reply_limit(64 << 10);
        assert!(matches!(
            client.request("help").await,
            Err(Error::ReplyTooLarge { limit: 65536 })
        ));
    });
    server.join().unwrap();
}

#[test]
fn broken_reply_datagrams_are_errors() {
    type Expect = fn(&Error) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        // len says 100, five bytes follow.
        (
            {
                let mut d = chunk(0, false, "");
                d[8..12].copy_from_slice(&100u32.to_ne_bytes());
                d.extend_from_slice(b"abcd");
                d
            },
            |e| {
                matches!(
                    e,
                    Error::Malformed(uml::mconsole::wire::WireError::LengthBeyondDatagram { .. })
                )
            },
        ),
        (b"garbage".to_vec(), |e| matches!(e, Error::Malformed(_))),
        (vec![0xFF; 40], |e| matches!(e, Error::Malformed(_))),
        (Vec::new(), |e| matches!(e, Error::Malformed(_))),
        (
            b"ERR Version 0 mconsole clients are not supported by this driver\0".to_vec(),
            |e| matches!(e, Error::VersionZero(t) if t.starts_with("ERR Version 0")),
        ),
    ];
    for (datagram, expected) in cases {
        let dir = short_tempdir("mcg");
        let (peer, socket) = fake_peer(dir.path());
        let sent = datagram.clone();
        let server = serve_once(peer, move |peer, from| {
            peer.send_to_addr(&sent, from).unwrap();
        });
        let client = Client::connect(&socket).unwrap();
        let result = client.request("version");
        server.join().unwrap();
        match result {
            Err(e) if expected(&e) => {}
            other => panic!("datagram {datagram:?} gave {other:?}"),
        }
    }
}

#[test]
fn a_reply_from_another_address_never_reaches_the_client() {
    let dir = short_tempdir("mci");
    let (peer, socket) = fake_peer(dir.path());
    let (forged_tx, forged_rx) = mpsc::channel();
    let server = serve_once(peer, move |peer, from| {
        let interloper = UnixDatagram::unbound().unwrap();
        let forged = interloper.send_to_addr(&chunk(0, false, "forged"), from);
        forged_tx.send(forged.is_err()).unwrap();
        peer.send_to_addr(&chunk(0, false, "genuine"), from)
            .unwrap();
    });
    let client = Client::connect(&socket).unwrap();
    assert_eq!(client.version().unwrap(), "genuine");
    assert!(
        forged_rx.recv().unwrap(),
        "the host delivered a forged reply"
    );
    server.join().unwrap();
}

#[test]
fn a_late_reply_to_a_timed_out_request_is_not_taken_for_the_next_one() {
    let dir = short_tempdir("mcz");
    let (peer, socket) = fake_peer(dir.path());
    let (late_tx, late_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let (_, from) = receive_request(&peer);
        thread::sleep(Duration::from_millis(400));
        peer.send_to_addr(&chunk(0, false, "late one"), &from)
            .unwrap();
        late_tx.send(()).unwrap();
        let (request, from) = receive_request(&peer);
        assert_eq!(request.command(), b"help");
        peer.send_to_addr(&chunk(0, false, "two"), &from).unwrap();
    });
    let client = Client::connect(&socket)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    assert!(matches!(client.version(), Err(Error::Timeout { .. })));
    late_rx.recv().unwrap();
    let client = client.with_timeout(Duration::from_secs(5));
    assert_eq!(client.help().unwrap(), "two");
    server.join().unwrap();
}

#[test]
fn a_notification_datagram_that_does_not_parse_is_an_error_and_the_listener_goes_on() {
    let dir = short_tempdir("mcb");
    let path = dir.path().join("notify");
    let listener = NotifyListener::bind(&path).unwrap();
    let sender = UnixDatagram::unbound().unwrap();
    sender.send_to(b"not a notification", &path).unwrap();
    sender
        .send_to(&Notification::Hang.encode().unwrap(), &path)
        .unwrap();
    assert!(matches!(listener.recv(WAIT), Err(Error::Malformed(_))));
    assert_eq!(listener.recv(WAIT).unwrap(), Some(Notification::Hang));
    // A second listener cannot take the same path.
    assert!(matches!(
        NotifyListener::bind(&path),
        Err(Error::Bind { .. })
    ));
}

#[test]
fn a_client_keeps_working_across_a_guest_reboot() {
    let guest = boot("mcb");
    let client = Client::connect(&guest.mconsole_path()).unwrap();
    let before = client.version().unwrap();
    client.reboot().unwrap();
    // The kernel re-execs itself with the same argv: same pid, same umid, a new socket at the
    // same path; init prints READY a second time.
    let deadline = std::time::Instant::now() + WAIT;
    while guest.log().matches("READY").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest did not come back"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(client.version().unwrap(), before);
}

/// A stopped guest reads nothing; once its socket's queue is full the host blocks every
/// further send. Both clients give up at their deadline instead of waiting for good.
#[test]
fn sends_to_a_stopped_guest_with_a_full_queue_time_out() {
    let guest = boot("mcs");
    let socket = guest.mconsole_path();
    let pid = nix::unistd::Pid::from_raw(guest.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let request = Request::new(b"version").unwrap().encode();
    let mut queued = 0;
    while queued < 1000 && filler.send_to(&request, &socket).is_ok() {
        queued += 1;
    }
    assert!(queued < 1000, "the guest's socket queue never filled");

    let blocking = Client::connect(&socket)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(blocking.version());
    });
    match rx.recv_timeout(WAIT) {
        Ok(Err(Error::Timeout { command, .. })) => assert_eq!(command, "version"),
        other => panic!("the blocking client did not time out: {other:?}"),
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let client = AsyncClient::connect(&socket)
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        tokio::time::timeout(WAIT, client.version()).await
    });
    match result {
        Ok(Err(Error::Timeout { command, .. })) => assert_eq!(command, "version"),
        other => panic!("the async client did not time out: {other:?}"),
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
}
