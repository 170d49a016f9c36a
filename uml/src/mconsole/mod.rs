//! Stand-in for the mconsole module while the real one is built on its own branch.
//! Same signatures as the real API; replaced wholesale on merge.
#![allow(missing_docs, dead_code, clippy::all)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the mconsole socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply to `{command}` within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("`{command}` failed: {message}")]
    Guest {
        command: String,
        code: u32,
        message: String,
    },
    #[error("malformed: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub err: u32,
    pub text: String,
}
impl Reply {
    pub fn is_ok(&self) -> bool {
        self.err == 0
    }
}

#[derive(Debug)]
pub struct Client {
    sock: UnixDatagram,
    timeout: Duration,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, Error> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "umlkit-stub-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let sock = UnixDatagram::bind_addr(&addr)?;
        sock.connect(socket).map_err(|source| Error::Connect {
            path: socket.to_owned(),
            source,
        })?;
        Ok(Client {
            sock,
            timeout: Duration::from_secs(5),
        })
    }
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    pub fn request(&self, command: &str) -> Result<Reply, Error> {
        let mut req = vec![];
        req.extend_from_slice(&0xCAFEBABEu32.to_ne_bytes());
        req.extend_from_slice(&2u32.to_ne_bytes());
        req.extend_from_slice(&(command.len() as u32).to_ne_bytes());
        req.extend_from_slice(command.as_bytes());
        self.sock.send(&req)?;
        self.sock.set_read_timeout(Some(self.timeout))?;
        let mut text = Vec::new();
        let mut err = None;
        loop {
            let mut buf = [0u8; 600];
            let n = self.sock.recv(&mut buf).map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    Error::Timeout {
                        command: command.into(),
                        after: self.timeout,
                    }
                } else {
                    e.into()
                }
            })?;
            if n < 12 {
                return Err(Error::Malformed("short".into()));
            }
            let e = u32::from_ne_bytes(buf[0..4].try_into().unwrap());
            let more = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
            let len = (u32::from_ne_bytes(buf[8..12].try_into().unwrap()) as usize).min(n - 12);
            err.get_or_insert(e);
            let d = &buf[12..12 + len];
            let d = d.strip_suffix(&[0]).unwrap_or(d);
            text.extend_from_slice(d);
            if more == 0 {
                break;
            }
        }
        Ok(Reply {
            err: err.unwrap_or(0),
            text: String::from_utf8_lossy(&text).into_owned(),
        })
    }
    pub fn run(&self, command: &str) -> Result<String, Error> {
        let r = self.request(command)?;
        if r.is_ok() {
            Ok(r.text)
        } else {
            Err(Error::Guest {
                command: command.into(),
                code: r.err,
                message: r.text,
            })
        }
    }
    pub fn version(&self) -> Result<String, Error> {
        self.run("version")
    }
    pub fn halt(&self) -> Result<String, Error> {
        self.run("halt")
    }
    pub fn reboot(&self) -> Result<String, Error> {
        self.run("reboot")
    }
    pub fn cad(&self) -> Result<String, Error> {
        self.run("cad")
    }
    pub fn stop(&self) -> Result<String, Error> {
        self.run("stop")
    }
    pub fn go(&self) -> Result<String, Error> {
        self.run("go")
    }
    pub fn sysrq(&self, key: char) -> Result<String, Error> {
        self.run(&format!("sysrq {key}"))
    }
    pub fn config_get(&self, dev: &str) -> Result<String, Error> {
        self.run(&format!("config {dev}"))
    }
    pub fn config_set(&self, dev: &str, spec: &str) -> Result<String, Error> {
        self.run(&format!("config {dev}={spec}"))
    }
    pub fn remove(&self, dev: &str) -> Result<String, Error> {
        self.run(&format!("remove {dev}"))
    }
    pub fn log(&self, text: &str) -> Result<(), Error> {
        self.run(&format!("log {text}")).map(|_| ())
    }
    pub fn proc_file(&self, path: &str) -> Result<String, Error> {
        self.run(&format!("proc {path}"))
            .map(|s| s.strip_prefix('\n').unwrap_or(&s).to_owned())
    }
    pub fn stack(&self, pid: u32) -> Result<String, Error> {
        self.run(&format!("stack {pid}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Socket { mconsole: PathBuf },
    Panic { message: String },
    Hang,
    User { data: Vec<u8> },
}

#[derive(Debug)]
pub struct NotifyListener {
    sock: UnixDatagram,
    path: PathBuf,
}
impl NotifyListener {
    pub fn bind(path: &Path) -> Result<Self, Error> {
        let sock = UnixDatagram::bind(path)?;
        Ok(NotifyListener {
            sock,
            path: path.to_owned(),
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn recv(&self, timeout: Duration) -> Result<Option<Notification>, Error> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 600];
        let n = match self.sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if n < 16 {
            return Err(Error::Malformed("short".into()));
        }
        let t = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        let len = (u32::from_ne_bytes(buf[12..16].try_into().unwrap()) as usize).min(n - 16);
        let d = &buf[16..16 + len];
        let s = String::from_utf8_lossy(d.strip_suffix(&[0]).unwrap_or(d)).into_owned();
        Ok(Some(match t {
            0 => Notification::Socket { mconsole: s.into() },
            1 => Notification::Panic { message: s },
            2 => Notification::Hang,
            _ => Notification::User { data: d.to_vec() },
        }))
    }
}
impl Drop for NotifyListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
