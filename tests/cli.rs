//! End-to-end tests of `bump node` and the CLI: the real binary, temp datadirs, loopback.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed command: non-zero exit, nothing on stdout, one line on stderr that mentions `want`.
fn assert_clean_failure(o: &std::process::Output, want: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        o.stdout.is_empty(),
        "stdout not empty on failure: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        err.contains(want),
        "stderr {err:?} does not mention {want:?}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn send_and_get_are_byte_exact_for_many_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let part = bump::message::PART_DATA_LEN;
    for (i, size) in [0usize, 1, part - 1, part, part + 1, 1000, 300_000]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(size);
        let file = dir.path().join(format!("f{i}"));
        std::fs::write(&file, &data).unwrap();
        let tag = format!("#size-{size}");
        let id = node.ok(&["send", &tag, file.to_str().unwrap()], None);
        let id = String::from_utf8(id).unwrap();
        assert_eq!(id.trim().len(), 32, "message id {id:?}");
        let got = node.ok(&["get", &tag], None);
        assert_eq!(got.len(), size);
        assert!(got == data, "size {size}: bytes differ");
        // The same message by id.
        assert!(node.ok(&["get", "--id", id.trim(), &tag], None) == data);
    }
}

#[test]
fn human_tag_matches_its_hex_form_and_stdin_works() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let hex = String::from_utf8(node.ok(&["tag", "#mynakedlife4all"], None)).unwrap();
    let hex = hex.trim();
    assert_eq!(hex.len(), 40);
    node.ok(&["send", "#mynakedlife4all", "-"], Some(b"hello bus"));
    assert_eq!(node.ok(&["get", hex], None), b"hello bus");
    assert_eq!(node.ok(&["get", &hex.to_uppercase()], None), b"hello bus");
    // Two messages: all in order by default, the newer with --last, both listed.
    node.ok(&["send", "#mynakedlife4all", "-"], Some(b" and again"));
    assert_eq!(
        node.ok(&["get", "#mynakedlife4all"], None),
        b"hello bus and again"
    );
    assert_eq!(
        node.ok(&["get", "--last", "#mynakedlife4all"], None),
        b" and again"
    );
    let list = String::from_utf8(node.ok(&["get", "--list", "#mynakedlife4all"], None)).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
}

#[test]
fn export_then_import_on_a_second_node() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = TestNode::start(a_dir.path(), &[]);
    let b = TestNode::start(b_dir.path(), &[]);
    let data = random_bytes(5000);
    a.ok(&["send", "#ex", "-"], Some(&data));
    let export = a_dir.path().join("ex.jsonl");
    a.ok(&["export", "#ex", "-o", export.to_str().unwrap()], None);
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().count(), 6, "5000 bytes take 6 packets");
    let out = String::from_utf8(b.ok(&["import", export.to_str().unwrap()], None)).unwrap();
    assert!(out.contains("imported 6"), "{out}");
    assert!(b.ok(&["get", "#ex"], None) == data);
    // Importing again changes nothing.
    let out = String::from_utf8(b.ok(&["import", export.to_str().unwrap()], None)).unwrap();
    assert!(
        out.contains("imported 0") && out.contains("6 already held"),
        "{out}"
    );
    // `get --json` prints the same packets as export.
    assert_eq!(
        String::from_utf8(a.ok(&["get", "--json", "#ex"], None)).unwrap(),
        text
    );
}

#[test]
fn missing_parts_are_reported_never_half_printed() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = TestNode::start(a_dir.path(), &[]);
    let b = TestNode::start(b_dir.path(), &[]);
    a.ok(&["send", "#part", "-"], Some(&random_bytes(3000)));
    let json = String::from_utf8(a.ok(&["export", "#part"], None)).unwrap();
    let first_three: String = json.lines().take(3).map(|l| format!("{l}\n")).collect();
    b.ok(&["import", "-"], Some(first_three.as_bytes()));
    let o = b.cli(&["get", "#part"], None);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("incomplete"), "{}", stderr(&o));
    let partial = String::from_utf8(b.ok(&["get", "--partial", "#part"], None)).unwrap();
    assert!(partial.contains("3/4"), "{partial}");
}

#[test]
fn restart_keeps_packets() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path(), &[]);
    let data = random_bytes(20_000);
    node.ok(&["send", "#keep", "-"], Some(&data));
    assert!(node.terminate(), "node did not exit cleanly on SIGTERM");
    assert!(
        !netdir(dir.path()).join(".cookie").exists(),
        "cookie left behind after clean shutdown"
    );
    let node = TestNode::start(dir.path(), &[]);
    assert!(node.ok(&["get", "#keep"], None) == data);
}

#[test]
fn kill_9_right_after_send_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut node = TestNode::start(dir.path(), &[]);
        let data = random_bytes(50_000 + round);
        let tag = format!("#crash{round}");
        node.ok(&["send", &tag, "-"], Some(&data));
        node.kill9();
        let node = TestNode::start(dir.path(), &[]);
        assert!(
            node.ok(&["get", &tag], None) == data,
            "round {round}: message lost after kill -9"
        );
    }
}

#[test]
fn rpc_demands_auth() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--rpcuser", "alice", "--rpcpassword", "s3cret"],
    );
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"bump_status","params":[]}"#;
    let (code, resp) = http_post(node.addr, None, body);
    assert_eq!(code, 401);
    assert!(resp.is_empty());
    let (code, _) = http_post(node.addr, Some("Basic YWxpY2U6d3Jvbmc="), body); // alice:wrong
    assert_eq!(code, 401);
    let (code, resp) = http_post(node.addr, Some(&cookie_auth(dir.path())), body);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    assert!(String::from_utf8_lossy(&resp).contains("\"network\":\"regtest\""));
    let (code, _) = http_post(node.addr, Some("Basic YWxpY2U6czNjcmV0"), body); // alice:s3cret
    assert_eq!(code, 200);
    // The CLI with the wrong password says so in one line.
    let o = node.cli(
        &["--rpcuser", "alice", "--rpcpassword", "nope", "status"],
        None,
    );
    assert_clean_failure(&o, "401");
}

#[test]
fn node_survives_garbage_rpc_input() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let auth = cookie_auth(dir.path());
    let garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_send","params":[{"tag":"x","data":"!!!"}]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_send","params":[{"tag":"","data":""}]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_send","params":[{"tag":"x","data":"","ttl":1}]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_send","params":[{"tag":"x","data":"","ttl":99999999}]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_getmessages","params":["x",{"msgid":"zz"}]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_importpackets","params":[[{"tag":"00","chunk":"","expires":1}]]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_importpackets","params":[[1,2,3]]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"bump_getpackets","params":[7]}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"no_such_method"}"#.to_vec(),
        random_bytes(5000),
    ];
    for g in &garbage {
        let (code, resp) = http_post(node.addr, Some(&auth), g);
        assert!(
            code == 200 || code == 400 || code == 415,
            "code {code} for {:?}",
            String::from_utf8_lossy(g)
        );
        if code == 200 && !g.is_empty() && g[0] == b'{' {
            assert!(
                String::from_utf8_lossy(&resp).contains("\"error\""),
                "{}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    let status = String::from_utf8(node.ok(&["status", "--json"], None)).unwrap();
    assert!(status.contains("\"packets\": 0"), "{status}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--max-message-size", "2000", "--max-packets", "3"],
    );
    let d = dir.path();
    let path = |n: &str| d.join(n).display().to_string();

    assert_clean_failure(
        &node.cli(&["send", "#t", &path("missing")], None),
        "cannot read",
    );
    std::fs::write(d.join("big"), random_bytes(2001)).unwrap();
    assert_clean_failure(
        &node.cli(&["send", "#t", &path("big")], None),
        "over the node's message limit",
    );
    assert_clean_failure(&node.cli(&["send", "", "-"], Some(b"x")), "empty tag");
    assert_clean_failure(
        &node.cli(&["send", "--ttl", "soon", "#t", "-"], Some(b"x")),
        "bad duration",
    );
    assert_clean_failure(
        &node.cli(&["send", "--ttl", "30d", "#t", "-"], Some(b"x")),
        "maximum",
    );

    std::fs::write(d.join("malformed.json"), "{\"tag\": ").unwrap();
    assert_clean_failure(
        &node.cli(&["import", &path("malformed.json")], None),
        "malformed packet JSON",
    );
    let tag = "00".repeat(20);
    let short =
        format!("{{\"tag\":\"{tag}\",\"chunk\":\"AAAA\",\"expires\":4000000000,\"nonce\":0}}");
    assert_clean_failure(
        &node.cli(&["import", "-"], Some(short.as_bytes())),
        "exactly 992",
    );
    // A packet of the layout before proof of work (no nonce) is named as such.
    let old = format!(
        "{{\"tag\":\"{tag}\",\"chunk\":\"{}\",\"expires\":4000000000}}",
        base64_of(&[0u8; 1000])
    );
    assert_clean_failure(
        &node.cli(&["import", "-"], Some(old.as_bytes())),
        "before proof of work",
    );
    let chunk = base64_of(&[0u8; bump::packet::BODY_LEN]);
    let expired =
        format!("{{\"tag\":\"{tag}\",\"chunk\":\"{chunk}\",\"expires\":1000,\"nonce\":0}}");
    assert_clean_failure(
        &node.cli(&["import", "-"], Some(expired.as_bytes())),
        "expired",
    );
    let badtag = format!(
        "{{\"tag\":\"{}\",\"chunk\":\"{chunk}\",\"expires\":1000,\"nonce\":0}}",
        "g".repeat(40)
    );
    assert_clean_failure(
        &node.cli(&["import", "-"], Some(badtag.as_bytes())),
        "40 hex",
    );

    // Store quota of 3 packets: a second 2-packet message solves above the cheapest held and
    // evicts it (like a mempool), instead of "store is full"; the store never grows past 3.
    node.ok(&["send", "#full", "-"], Some(&random_bytes(1500)));
    let second = random_bytes(1500);
    node.ok(&["send", "#full2", "-"], Some(&second));
    assert!(node.ok(&["get", "#full2"], None) == second);
    assert_eq!(node.packet_count(), 3);
    let evicted = node.cli(&["get", "#full"], None);
    assert!(!evicted.status.success());
    assert!(String::from_utf8_lossy(&evicted.stderr).contains("no complete message"));
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn clear_message_when_no_node_runs() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(dir.path(), &["get", "#x"], None);
    assert_clean_failure(&o, "no BuMP node is running");
    assert!(stderr(&o).contains("bump --regtest node"));
    // A stale rpc.addr after a crash is also "not running".
    let mut node = TestNode::start(dir.path(), &[]);
    node.kill9();
    assert_clean_failure(
        &cli(dir.path(), &["status"], None),
        "no BuMP node is running",
    );
}

#[test]
fn second_node_on_the_same_datadir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(dir.path(), &[]);
    let o = cli(dir.path(), &["node", "--rpc-bind", "127.0.0.1:0"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another `bump node`"), "{}", stderr(&o));
}

#[test]
fn non_loopback_rpc_bind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(dir.path(), &["node", "--rpc-bind", "0.0.0.0:0"], None);
    assert_clean_failure(&o, "not a loopback address");
}

#[test]
fn bump_conf_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bump.conf"),
        "# test\n[regtest]\nmaxmessagesize=100\n",
    )
    .unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let s = String::from_utf8(node.ok(&["status", "--json"], None)).unwrap();
    assert!(s.contains("\"max_message_size\": 100"), "{s}");
    drop(node);
    let node = TestNode::start(dir.path(), &["--max-message-size", "5000"]);
    let s = String::from_utf8(node.ok(&["status", "--json"], None)).unwrap();
    assert!(s.contains("\"max_message_size\": 5000"), "{s}");
    drop(node);
    std::fs::write(dir.path().join("bump.conf"), "colour=blue\n").unwrap();
    assert_clean_failure(&cli(dir.path(), &["status"], None), "unknown key");
}

#[test]
fn watch_pushes_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    node.ok(&["send", "#w", "-"], Some(b"old"));
    let mut watcher = std::process::Command::new(&*BIN)
        .args([
            "--datadir",
            dir.path().to_str().unwrap(),
            "--regtest",
            "watch",
            "#w",
            "--count",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Send until the watcher has seen one (its subscription may start after the first send).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    let status = loop {
        if let Some(st) = watcher.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "watch saw nothing");
        node.ok(
            &["send", "#w", "-"],
            Some(format!("new message {sent}").as_bytes()),
        );
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success());
    let out = watcher.wait_with_output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8(data).unwrap().starts_with("new message"),
        "watch must not replay old messages"
    );
}

#[test]
fn demo_runs_and_exits_zero() {
    let o = std::process::Command::new(&*BIN)
        .arg("demo")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("byte-exact") && out.contains("still there after restart"),
        "{out}"
    );
    // Its temporary datadir is gone.
    let dir_line = out.lines().find(|l| l.contains("datadir")).unwrap();
    let dir = dir_line.split_whitespace().last().unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "demo left {dir} behind"
    );
}
