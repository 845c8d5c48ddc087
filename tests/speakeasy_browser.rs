//! Speak Easy in a real headless browser (issue #14): two nodes, three `bump speakeasy`
//! processes (admin and Bob on node A, Carol on node B), driven by tests/browser/speakeasy.mjs
//! (Playwright's playwright-core on Debian's chromium). Afterwards every node's store, and
//! every Speak Easy state file, is searched for the plaintext markers the members posted.
//!
//! Needs `node`, `/usr/bin/chromium` (or `$BUMP_CHROMIUM`) and `npm ci` in tests/browser;
//! `.ci/run` installs them and sets BUMP_BROWSER_TESTS=require, so there a missing browser
//! fails the test instead of skipping it.

mod common;

use common::{TestNode, BIN};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Se(Child);

impl Drop for Se {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `bump speakeasy` for the node in `datadir`; returns it and its login URL.
fn speakeasy(datadir: &Path, dir: &Path) -> (Se, String) {
    let mut child = Command::new(&*BIN)
        .args([
            "--datadir",
            &datadir.display().to_string(),
            "--regtest",
            "se",
        ])
        .args(["--port", "0", "--dir", &dir.display().to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bump speakeasy");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read URL");
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/login?token="),
        "bump speakeasy printed {url:?}"
    );
    (Se(child), url)
}

fn tool_missing() -> Option<String> {
    let chromium = std::env::var("BUMP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node (Node.js) on PATH".into());
    }
    let pw =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !pw.exists() {
        return Some(format!("no {} (cd tests/browser && npm ci)", pw.display()));
    }
    None
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_containing(&p, needle, out);
        } else if let Ok(b) = std::fs::read(&p) {
            if b.windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
}

#[test]
fn speak_easy_in_a_browser_two_nodes_three_members() {
    if let Some(why) = tool_missing() {
        if std::env::var("BUMP_BROWSER_TESTS").as_deref() == Ok("require") {
            panic!("browser test required but cannot run: {why}");
        }
        eprintln!("SKIPPED speak_easy_in_a_browser: {why}");
        return;
    }
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start(
        da.path(),
        &["--listen", "127.0.0.1:0", "--max-outbound", "0"],
    );
    let mut b = TestNode::start(
        db.path(),
        &["--listen", "127.0.0.1:0", "--connect", &a.p2p()],
    );
    let se_dirs = tempfile::tempdir().unwrap();
    let (_admin, admin_url) = speakeasy(da.path(), &se_dirs.path().join("admin"));
    let (_bob, bob_url) = speakeasy(da.path(), &se_dirs.path().join("bob"));
    let (_carol, carol_url) = speakeasy(db.path(), &se_dirs.path().join("carol"));
    let screens = Path::new(env!("CARGO_TARGET_TMPDIR")).join("speakeasy-screens");
    let cfg = serde_json::json!({
        "admin": admin_url,
        "bob": bob_url,
        "carol": carol_url,
        "killPid": b.child.as_ref().expect("node B runs").id(),
        "screens": screens,
        "chromium": std::env::var("BUMP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/speakeasy.mjs");
    let mut run = Command::new("node")
        .arg(&script)
        .current_dir(script.parent().unwrap())
        .env("SE_CONFIG", cfg.to_string())
        .spawn()
        .expect("run node");
    // Bounded: the script's own waits are bounded; this is the backstop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let status = loop {
        if let Some(st) = run.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("the browser script did not finish in 600 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "the browser checks failed ({status})");
    eprintln!("screenshots in {}", screens.display());
    b.kill9();
    // No plaintext anywhere on disk: node stores (every packet that crossed the wire is
    // stored by both nodes) and Speak Easy's own state.
    for marker in [
        "OPS-SECRET-MARKER-1",
        "CELL-MARKER-2",
        "REPLY-ADMIN-3",
        "REPLY-BOB-4",
        "AFTER-REMOVAL-MARKER-5",
        "AFTER-KILL-MARKER-6",
        "DM-MARKER-7",
        "DM-REPLY-8",
        "ATTACH-MARKER-9",
        "Ops plan",
    ] {
        let mut hits = vec![];
        for d in [da.path(), db.path(), se_dirs.path()] {
            files_containing(d, marker.as_bytes(), &mut hits);
        }
        assert!(hits.is_empty(), "plaintext {marker:?} found in {hits:?}");
    }
}
