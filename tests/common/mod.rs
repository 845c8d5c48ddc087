//! Test harness: start the real `bump` binary as a node in a temporary datadir on an
//! ephemeral loopback port, and run CLI commands against it. Every wait is bounded and every
//! node is killed when its handle drops.

#![allow(dead_code)]

pub mod raw;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN_BUILT: &str = env!("CARGO_BIN_EXE_bump");

/// The binary under test: the one cargo built, or `BUMP_TEST_BIN` (to run the same tests
/// against another build, e.g. an older one).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("BUMP_TEST_BIN").unwrap_or_else(|_| BIN_BUILT.to_string())
});

pub struct TestNode {
    pub datadir: PathBuf,
    pub child: Option<Child>,
    pub addr: SocketAddr,
}

pub fn netdir(datadir: &Path) -> PathBuf {
    datadir.join("regtest")
}

impl TestNode {
    /// The P2P listen address (the node must have been started with `--listen`).
    pub fn p2p(&self) -> String {
        std::fs::read_to_string(netdir(&self.datadir).join("p2p.addr"))
            .expect("node listens")
            .trim()
            .to_string()
    }

    /// Packets the node holds, from `bump status --json`.
    pub fn packet_count(&self) -> u64 {
        let out = self.ok(&["status", "--json"], None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["packets"].as_u64().unwrap()
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.ok(&["status", "--json"], None)).unwrap()
    }

    /// One JSON-RPC call with the node's cookie; the whole reply (`result` or `error`).
    pub fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        let auth = cookie_auth(&self.datadir);
        let (_, resp) = http_post(self.addr, Some(&auth), body.to_string().as_bytes());
        serde_json::from_slice(&resp).unwrap()
    }

    pub fn peers(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice::<Vec<serde_json::Value>>(&self.ok(&["peers", "--json"], None))
            .unwrap()
    }

    /// Start a regtest node in `datadir` with extra `node` arguments.
    pub fn start(datadir: &Path, extra: &[&str]) -> TestNode {
        let log = std::env::var("BUMP_TEST_LOG").unwrap_or_else(|_| "warn".into());
        TestNode::spawn(datadir, extra, &log, Stdio::inherit())
    }

    /// Start a node that logs at `rust_log` into the file `log`.
    pub fn start_logged(datadir: &Path, extra: &[&str], rust_log: &str, log: &Path) -> TestNode {
        let f = std::fs::File::create(log).unwrap();
        TestNode::spawn(datadir, extra, rust_log, Stdio::from(f))
    }

    fn spawn(datadir: &Path, extra: &[&str], rust_log: &str, stderr: Stdio) -> TestNode {
        let addr_file = netdir(datadir).join("rpc.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut args: Vec<String> = vec![
            "--datadir".into(),
            datadir.display().to_string(),
            "--regtest".into(),
            "node".into(),
            "--rpc-bind".into(),
            "127.0.0.1:0".into(),
        ];
        // A quiet node by default: no mix record on the bus (so sends stay unmixed unless a
        // test routes them) and no cover; a test's own flags come after and win.
        args.extend(["--announce-mix", "false", "--cover-rate", "0"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(&*BIN)
            .args(&args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn bump node");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                if let Ok(addr) = text.trim().parse() {
                    return TestNode {
                        datadir: datadir.to_path_buf(),
                        child: Some(child),
                        addr,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "node did not write {}",
                addr_file.display()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Run `bump --datadir D --regtest ARGS...` with optional stdin.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        cli(&self.datadir, args, stdin)
    }

    /// Like [`TestNode::cli`] but must succeed; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "bump {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// SIGKILL the node (no clean shutdown).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn cli(datadir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut full: Vec<String> = vec![
        "--datadir".into(),
        datadir.display().to_string(),
        "--regtest".into(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let mut child = Command::new(&*BIN)
        .args(&full)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bump");
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait bump")
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A raw HTTP/1.1 POST on loopback; returns (status code, body).
pub fn http_post(addr: SocketAddr, auth: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match text.find("\r\n\r\n") {
        Some(i) => resp[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (code, body)
}

/// The `Authorization` header built from the node's cookie file.
pub fn cookie_auth(datadir: &Path) -> String {
    use base64::Engine as _;
    let cookie = std::fs::read_to_string(netdir(datadir).join(".cookie")).unwrap();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(cookie.trim())
    )
}

/// Poll `cond` every 50 ms until it holds or `secs` pass; returns whether it held.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
