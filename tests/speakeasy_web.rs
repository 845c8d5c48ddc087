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

/// `bump speakeasy` for the node in `datadir`, and its login URL.
fn speakeasy(datadir: &std::path::Path) -> (Se, String) {
    let mut child = Command::new(&*BIN)
        .args(["--datadir", &datadir.display().to_string(), "--regtest"])
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
    (Se(child), line.trim().to_string())
}

/// Log in with a login URL: the server's address, its Host value, and the session cookie.
fn login(url: &str) -> (SocketAddr, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
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
    (addr, hostport.to_string(), sid)
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn the_web_front_is_locked_to_loopback_its_token_and_its_forms() {
    let d = tempfile::tempdir().unwrap();
    let _node = TestNode::start(
        d.path(),
        &["--listen", "127.0.0.1:0", "--max-outbound", "0"],
    );
    let (se, url) = speakeasy(d.path());
    let url = url.as_str();
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let addr: SocketAddr = hostport.parse().unwrap();
    assert!(addr.ip().is_loopback());
    let login_req = format!("GET /{path}");
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
    assert_eq!(http(addr, &evil, &login_req, &[], "").status, 421);
    assert_eq!(
        http(addr, hostport, "GET /login?token=00", &[], "").status,
        401
    );
    // The right token once: a strict, script-proof cookie.
    let r = http(addr, hostport, &login_req, &[], "");
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
        http(addr, hostport, &login_req, &[], "").status,
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

    // A post, then Speak Easy is killed and started again: the network is still there (saved)
    // and the post is opened again from the node (Speak Easy saves no post itself).
    let page = http(addr, hostport, &format!("GET {loc}"), &c, "").body;
    let comp = page.split("/c/").nth(1).unwrap()[..32].to_string();
    let net = loc.trim_start_matches("/n/").to_string();
    let post = format!(
        "csrf={csrf}&compartment={comp}&board=general&title=Hello&text={}&tau=bogus",
        enc("RESTART-MARKER survives")
    );
    let r = http(addr, hostport, &format!("POST /n/{net}/post"), &c, &post);
    assert_eq!(r.status, 400, "an unknown mixing choice is refused");
    let post = post.replace("&tau=bogus", "&tau=unmixed");
    let r = http(addr, hostport, &format!("POST /n/{net}/post"), &c, &post);
    assert_eq!(r.status, 303, "{}", r.body);
    drop(se);
    let (_se2, url2) = speakeasy(d.path());
    let (addr2, host2, sid2) = login(&url2);
    let c2 = vec![format!("Cookie: {sid2}")];
    let board = format!("GET /n/{net}/c/{comp}?board=general");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let r = http(addr2, &host2, &board, &c2, "");
        if r.body.contains(">Hello<") {
            break r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the post did not come back: {}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // 50 more threads: the board lists 50 per page, most recent first; "Hello" moves to page 2.
    let csrf2 = csrf_of(&page);
    // A later second than "Hello" (sealed times have 1 s resolution; ties order by id).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for i in 0..50 {
        let post =
            format!("csrf={csrf2}&compartment={comp}&board=general&title=T{i}&text=x&tau=unmixed");
        let r = http(addr2, &host2, &format!("POST /n/{net}/post"), &c2, &post);
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = http(addr2, &host2, &board, &c2, "");
        if r.body.contains("Page 1 of 2") && r.body.contains(">T49<") {
            assert!(
                !r.body.contains(">Hello<"),
                "the oldest thread is not on page 1"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second page: {}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = http(addr2, &host2, &format!("{board}&page=2"), &c2, "");
    assert!(
        r.body.contains("Page 2 of 2") && r.body.contains(">Hello<"),
        "{}",
        r.body
    );
    let state = std::fs::read_to_string(d.path().join("regtest/speakeasy/state.json")).unwrap();
    assert!(state.contains(&net), "the network is saved");
    assert!(
        !state.contains("RESTART-MARKER"),
        "no post in Speak Easy's state"
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
        let (addr, hostport, sid) = login(u);
        let r = http(addr, &hostport, "GET /", &[format!("Cookie: {sid}")], "");
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
