//! Speak Easy's web security, tried with raw HTTP requests (no browser needed): the Host
//! allowlist, the one-time login token and its cookie, CSRF and Origin checks on forms, the
//! security headers, and escaping of hostile names.

mod common;

use common::{TestNode, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

struct Se(Child);

impl Drop for Se {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn http(addr: SocketAddr, host: &str, req: &str, extra: &[String], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut text = format!("{req} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in extra {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(text.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).to_string();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_web_front_is_locked_to_loopback_its_token_and_its_forms() {
    let d = tempfile::tempdir().unwrap();
    let _node = TestNode::start(
        d.path(),
        &["--listen", "127.0.0.1:0", "--max-outbound", "0"],
    );
    let mut child = Command::new(&*BIN)
        .args(["--datadir", &d.path().display().to_string(), "--regtest"])
        .args(["speakeasy", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _se = Se(child);
    let url = line.trim();
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let addr: SocketAddr = hostport.parse().unwrap();
    assert!(addr.ip().is_loopback());
    let login = format!("GET /{path}");
    let token = path.split("token=").nth(1).unwrap();

    // Nothing without the cookie; the headers are there even on a refusal.
    let r = http(addr, hostport, "GET /", &[], "");
    assert_eq!(r.status, 401);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // A rebinding name for our address is refused, and does not spend the token.
    let evil = format!("evil.example:{}", addr.port());
    assert_eq!(http(addr, &evil, &login, &[], "").status, 421);
    assert_eq!(
        http(addr, hostport, "GET /login?token=00", &[], "").status,
        401
    );
    // The right token once: a strict, script-proof cookie.
    let r = http(addr, hostport, &login, &[], "");
    assert_eq!(r.status, 303, "{}", r.head);
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the session id is not the login token"
    );
    let sid = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        http(addr, hostport, &login, &[], "").status,
        401,
        "token spent"
    );

    let c = vec![format!("Cookie: {sid}")];
    let r = http(addr, hostport, "GET /", &c, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    let csrf = r
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    // The cookie alone is not enough for a form: wrong CSRF token, or another site's Origin.
    let hostile = "<script>alert(1)</script>";
    let form = |csrf: &str| {
        format!(
            "csrf={csrf}&name={}&root=all&my_name={}",
            enc(hostile),
            enc("A \"quoted\" <i>name</i>")
        )
    };
    assert_eq!(
        http(addr, hostport, "POST /network", &c, &form("0000")).status,
        403
    );
    let mut cross = c.clone();
    cross.push("Origin: http://evil.example".into());
    assert_eq!(
        http(addr, hostport, "POST /network", &cross, &form(&csrf)).status,
        403
    );
    let mut same = c.clone();
    same.push(format!("Origin: http://{hostport}"));
    let r = http(addr, hostport, "POST /network", &same, &form(&csrf));
    assert_eq!(r.status, 303, "{}", r.body);
    // Hostile names come back escaped.
    let loc = r.header("location").unwrap();
    let r = http(addr, hostport, &format!("GET {loc}"), &c, "");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(hostile));
    assert!(!r.body.contains("<i>name</i>"));
    // Bad ids are a clear 400, not a crash.
    let r = http(addr, hostport, "GET /n/zz", &c, "");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a network id"));
    assert_eq!(
        http(addr, hostport, "GET /", &c, "").status,
        200,
        "still serving"
    );
}

#[test]
fn the_speak_easy_demo_serves_three_members_of_one_network() {
    let mut child = Command::new(&*BIN)
        .args(["demo", "--speakeasy"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut se = Se(child);
    let mut urls = vec![];
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(u) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
        {
            urls.push(u.to_string());
        }
        if urls.len() == 3 {
            break;
        }
    }
    assert_eq!(urls.len(), 3, "three login URLs printed");
    for (u, at) in urls.iter().zip([
        "cleared at all",
        "cleared at all › ops",
        "cleared at all › ops › cell-a",
    ]) {
        let rest = u.strip_prefix("http://").unwrap();
        let (hostport, path) = rest.split_once('/').unwrap();
        let addr: SocketAddr = hostport.parse().unwrap();
        let r = http(addr, hostport, &format!("GET /{path}"), &[], "");
        let sid = r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let r = http(addr, hostport, "GET /", &[format!("Cookie: {sid}")], "");
        assert!(
            r.body.contains("demo") && r.body.contains(&format!("{at} ·")),
            "{}",
            r.body
        );
    }
    // SIGINT: the demo stops and cleans up.
    let _ = Command::new("kill")
        .args(["-INT", &se.0.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while se.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
