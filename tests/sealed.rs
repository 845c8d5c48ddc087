//! Sealed messages end to end (issue #17): groups by invite and by passphrase across two
//! nodes, single and multi-part up to 1 MiB; direct messages to 1 and to 5 identities on
//! different nodes; non-recipients read nothing; plain tags are unchanged.

mod common;

use common::*;

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap().trim().to_string()
}

#[test]
fn groups_and_direct_messages_cross_two_nodes_sealed() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let big = ["--max-message-size", "1100000"];
    let a = TestNode::start(
        da.path(),
        &[&["--listen", "127.0.0.1:0"][..], &big].concat(),
    );
    let b = TestNode::start(db.path(), &[&["--connect", &a.p2p()][..], &big].concat());
    assert!(wait_for(20, || b.status()["p2p"]["bump_peers"] == 1));

    // A group by invite; Alice signs.
    let invite = text(a.ok(&["group", "new", "club"], None));
    assert!(invite.starts_with("bumpgrp1"), "{invite}");
    b.ok(&["group", "join", "club", "--invite", &invite], None);
    let alice = text(a.ok(&["id", "new", "alice"], None));
    for size in [300usize, 5000, 1 << 20] {
        let data = random_bytes(size);
        a.ok(
            &["send", "--group", "club", "--from", "alice", "-"],
            Some(&data),
        );
        assert!(
            wait_for(60, || b
                .cli(&["get", "--group", "club"], None)
                .stdout
                .ends_with(&data)),
            "{size} bytes did not arrive sealed"
        );
    }
    let lines = text(b.ok(&["get", "--group", "club", "--json"], None));
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["sender"], alice.as_str());
    assert_eq!(first["signature"], "valid, unverified key", "{first}");
    // The node saw only ciphertext: the plaintext marker is nowhere in its packets.
    let marker = b"PLAINTEXT-MARKER-7781";
    a.ok(&["send", "--group", "club", "-"], Some(marker));
    assert!(wait_for(20, || b
        .cli(&["get", "--group", "club"], None)
        .stdout
        .ends_with(marker)));
    for n in [&a, &b] {
        let dump = std::fs::read_dir(netdir(&n.datadir).join("store/segments"))
            .unwrap()
            .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect::<Vec<u8>>();
        assert!(
            !dump.windows(marker.len()).any(|w| w == marker),
            "plaintext on disk"
        );
    }

    // A passphrase group: two people who share the passphrase meet, whatever they call it.
    a.ok(
        &["group", "join", "pp", "--passphrase", "tide pool 42"],
        None,
    );
    b.ok(
        &["group", "join", "ours", "--passphrase", "tide pool 42"],
        None,
    );
    a.ok(&["send", "--group", "pp", "-"], Some(b"met by passphrase"));
    assert!(wait_for(20, || b
        .cli(&["get", "--group", "ours"], None)
        .stdout
        == b"met by passphrase"));

    // Direct messages: to one, then to five identities on both nodes.
    let bob = text(b.ok(&["id", "new", "bob"], None));
    b.ok(&["id", "new", "eve"], None);
    a.ok(
        &["send", "--to", &bob, "--from", "alice", "-"],
        Some(b"hi bob"),
    );
    assert!(wait_for(20, || b
        .cli(&["inbox", "--id", "bob"], None)
        .stdout
        == b"hi bob"));
    assert!(
        b.ok(&["inbox", "--id", "eve"], None).is_empty(),
        "eve read bob's message"
    );
    let mut five = Vec::new();
    for (n, name) in [(&a, "r1"), (&a, "r2"), (&b, "r3"), (&b, "r4"), (&b, "r5")] {
        five.push(text(n.ok(&["id", "new", name], None)));
    }
    let mut args = vec!["send"];
    for r in &five {
        args.extend(["--to", r.as_str()]);
    }
    args.push("-");
    a.ok(&args, Some(b"to five"));
    for (n, name) in [(&a, "r1"), (&a, "r2"), (&b, "r3"), (&b, "r4"), (&b, "r5")] {
        assert!(
            wait_for(20, || n.cli(&["inbox", "--id", name], None).stdout
                == b"to five"),
            "{name} did not get it"
        );
    }
    assert!(b.ok(&["inbox", "--id", "eve"], None).is_empty());
    // Mistakes get clear errors.
    let out = b.cli(&["get", "--group", "nosuch"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no group named"),
        "{out:?}"
    );
    let out = a.cli(&["send", "--to", "bumpid1qqqq", "-"], Some(b"x"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a valid identity"),
        "{out:?}"
    );
    let out = a.cli(&["send", "--group", "club", "#tag", "-"], Some(b"x"));
    assert!(!out.status.success());
    // Plain tags are unchanged beside it.
    a.ok(&["send", "#plain", "-"], Some(b"plain as ever"));
    assert!(wait_for(20, || b.cli(&["get", "#plain"], None).stdout
        == b"plain as ever"));
}

#[test]
fn watch_group_prints_each_new_sealed_message_opened() {
    let d = tempfile::tempdir().unwrap();
    let n = TestNode::start(d.path(), &[]);
    n.ok(&["group", "new", "w"], None);
    let mut child = std::process::Command::new(&*common::BIN)
        .args(["--datadir", &d.path().display().to_string(), "--regtest"])
        .args(["watch", "--group", "w", "--count", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Send until the watcher has seen one (its subscription may start after the first send).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last_send = None::<std::time::Instant>;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("watch printed nothing");
        }
        if last_send.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(2)) {
            n.ok(&["send", "--group", "w", "-"], Some(b"live"));
            last_send = Some(std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["data"], "bGl2ZQ==", "{line}");
    assert_eq!(line["signature"], "unsigned");
}

#[test]
fn a_tampered_envelope_is_skipped_and_counted_never_shown() {
    use bump::sealed::{keys::GroupKey, tags};
    let (dc, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let c = TestNode::start(dc.path(), &[]);
    let d = TestNode::start(dd.path(), &[]);
    let invite = text(c.ok(&["group", "new", "g"], None));
    d.ok(&["group", "join", "g", "--invite", &invite], None);
    c.ok(&["send", "--group", "g", "-"], Some(&random_bytes(3000)));
    // The group's tag of today, as a reader computes it.
    let key = GroupKey::parse_invite(&invite).unwrap();
    let tag = tags::group_tag(&key, tags::slot(bump::unix_now())).to_hex();
    let lines = String::from_utf8(c.ok(&["export", &tag], None)).unwrap();
    let mut packets = bump::packet::parse_interchange(&lines).unwrap();
    assert!(packets.len() >= 2);
    // One bit of ciphertext flipped (well past the part header), the packet re-solved so the
    // node takes it: the message completes, but the envelope no longer authenticates.
    packets[0].body[600] ^= 1;
    let tampered = common::raw::solved(packets[0].clone());
    packets[0] = tampered;
    let jsonl: Vec<String> = packets
        .iter()
        .map(|p| serde_json::to_string(&p.to_json()).unwrap())
        .collect();
    d.ok(&["import", "-"], Some(jsonl.join("\n").as_bytes()));
    let out = d.cli(&["get", "--group", "g"], None);
    assert!(out.stdout.is_empty(), "a tampered message was shown");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped 1 envelope"), "{err}");
    let st = d.status();
    let counted: u64 = st["sealed_skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1, "{st}");
    // The untouched original still opens on the sender's node.
    assert_eq!(c.ok(&["get", "--group", "g"], None).len(), 3000);
}

/// The keyring encrypted at rest: `bump id lock` with $BUMP_KEYRING_PASSPHRASE; without it
/// every keyring command and the node's sealed reads fail with a clear word; with it a node
/// seals and opens as before; nothing secret is left in the file.
#[test]
fn an_encrypted_keyring_needs_its_passphrase_and_still_seals() {
    const VAR: &str = "BUMP_KEYRING_PASSPHRASE";
    let d = tempfile::tempdir().unwrap();
    let without = |args: &[&str]| {
        std::process::Command::new(&*BIN)
            .args(["--datadir", d.path().to_str().unwrap(), "--regtest"])
            .args(args)
            .env_remove(VAR)
            .output()
            .unwrap()
    };
    let invite = text(cli(d.path(), &["group", "new", "club"], None).stdout);
    assert!(invite.starts_with("bumpgrp1"));
    let out = without(&["id", "lock"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(VAR));
    // Children inherit the variable from here on (plain keyrings of other tests ignore it).
    std::env::set_var(VAR, "hunter2 but longer");
    assert!(cli(d.path(), &["id", "lock"], None).status.success());
    let file = std::fs::read_to_string(netdir(d.path()).join("keyring.json")).unwrap();
    assert!(file.contains("encrypted") && !file.contains("bumpgrp") && !file.contains("club"));
    let out = without(&["group", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("encrypted") && err.contains(VAR), "{err}");
    assert!(text(cli(d.path(), &["group", "list"], None).stdout).starts_with("club"));

    let n = TestNode::start(d.path(), &[]);
    n.ok(
        &["send", "--group", "club", "-"],
        Some(b"locked but readable"),
    );
    assert!(wait_for(20, || n
        .cli(&["get", "--group", "club"], None)
        .stdout
        == b"locked but readable"));
    n.ok(&["id", "unlock"], None);
    let out = without(&["group", "invite", "club"]);
    assert_eq!(text(out.stdout), invite);
}

/// The keyring managed over RPC (`bump_id*`, `bump_group*`): what the node makes, the command
/// line sees and the other way round; two nodes that join by one passphrase meet; bad
/// requests get -32110 with a clear word and change nothing.
#[test]
fn identities_and_groups_are_managed_over_rpc() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start(da.path(), &["--listen", "127.0.0.1:0"]);
    let b = TestNode::start(db.path(), &["--connect", &a.p2p()]);
    let call = |n: &TestNode, method: &str, params| n.rpc(method, params);
    let v = call(&a, "bump_idnew", serde_json::json!(["alice"]));
    let alice = v["result"]["id"].as_str().unwrap().to_string();
    assert!(alice.starts_with("bumpid1"), "{v}");
    // The command line reads what the node wrote.
    assert_eq!(
        text(a.ok(&["id", "show", "alice"], None)),
        alice,
        "same keyring"
    );
    a.ok(&["id", "new", "alice2"], None);
    let v = call(&a, "bump_idlist", serde_json::json!([]));
    let names: Vec<_> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "alice2"], "{v}");
    // Export on one node, import on the other: the same public string.
    let secret = call(&a, "bump_idexport", serde_json::json!(["alice"]))["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.starts_with("bumpsec1"));
    let v = call(&b, "bump_idimport", serde_json::json!(["alice", secret]));
    assert_eq!(v["result"]["id"], alice.as_str(), "{v}");

    // Bad requests: a clear -32110, nothing changed.
    for (method, params, word) in [
        ("bump_idnew", serde_json::json!(["alice"]), "exists"),
        ("bump_idnew", serde_json::json!(["no spaces"]), "names are"),
        (
            "bump_idexport",
            serde_json::json!(["nobody"]),
            "no identity",
        ),
        (
            "bump_idimport",
            serde_json::json!(["x", "bumpsec1qqqq"]),
            "x",
        ),
        (
            "bump_groupjoin",
            serde_json::json!([{"name": "g", "passphrase": "p", "invite": "i"}]),
            "either",
        ),
        (
            "bump_groupjoin",
            serde_json::json!([{"name": "g", "invite": "bumpgrp1garbage"}]),
            "\"g\"",
        ),
        ("bump_groupleave", serde_json::json!(["none"]), "no group"),
    ] {
        let v = call(&a, method, params);
        assert_eq!(v["error"]["code"], -32110, "{method}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(word), "{method}: {msg}");
    }
    assert_eq!(
        call(&a, "bump_grouplist", serde_json::json!([]))["result"],
        serde_json::json!([])
    );

    // A random group made over RPC, joined on the other node by its invite string; a
    // passphrase group joined on both: the messages cross.
    let invite = call(&a, "bump_groupnew", serde_json::json!(["club"]))["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&a, "bump_groupinvite", serde_json::json!(["club"]))["result"],
        invite.as_str()
    );
    let v = call(
        &b,
        "bump_groupjoin",
        serde_json::json!([{"name": "club", "invite": invite}]),
    );
    assert_eq!(
        v["result"],
        serde_json::json!({"name": "club", "kind": "random"})
    );
    for n in [&a, &b] {
        let v = call(
            n,
            "bump_groupjoin",
            serde_json::json!([{"name": "chan", "passphrase": "meet me at the old oak"}]),
        );
        assert_eq!(v["result"]["kind"], "passphrase", "{v}");
    }
    assert_eq!(
        text(b.ok(&["group", "list"], None)),
        "chan (passphrase)\nclub (random)"
    );
    a.ok(
        &["send", "--group", "chan", "--from", "alice", "-"],
        Some(b"by passphrase"),
    );
    a.ok(&["send", "--group", "club", "-"], Some(b"by invite"));
    assert!(wait_for(30, || b
        .cli(&["get", "--group", "chan"], None)
        .stdout
        == b"by passphrase"
        && b.cli(&["get", "--group", "club"], None).stdout
            == b"by invite"));
    let v = call(&b, "bump_sealedget", serde_json::json!([{"group": "chan"}]));
    assert_eq!(v["result"]["messages"][0]["sender"], alice.as_str(), "{v}");
    assert_eq!(v["result"]["messages"][0]["signature"], "valid", "{v}");

    assert_eq!(
        call(&b, "bump_groupleave", serde_json::json!(["club"]))["result"],
        true
    );
    let out = b.cli(&["get", "--group", "club"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group"));
}

/// Secrets never in the log: a node logging at `trace` answers keyring calls that carry a
/// passphrase, an identity secret and message bytes; none of them appears in its log.
#[test]
fn keyring_secrets_stay_out_of_a_trace_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("node.log");
    let n = TestNode::start_logged(d.path(), &[], "trace", &log);
    let call = |method: &str, params| n.rpc(method, params);
    let pass = "PASSPHRASE-MARKER-7f3a";
    let v = call(
        "bump_groupjoin",
        serde_json::json!([{"name": "chan", "passphrase": pass}]),
    );
    assert_eq!(v["result"]["kind"], "passphrase", "{v}");
    call("bump_idnew", serde_json::json!(["me"]));
    let secret = call("bump_idexport", serde_json::json!(["me"]))["result"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = call("bump_groupinvite", serde_json::json!(["chan"]))["result"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let body = "BODY-MARKER-9c21";
    let v = call(
        "bump_sealedsend",
        serde_json::json!([{"group": "chan", "from": "me",
            "data": base64::engine::general_purpose::STANDARD.encode(body)}]),
    );
    assert!(v["result"].is_array(), "{v}");
    assert!(wait_for(20, || n
        .cli(&["get", "--group", "chan"], None)
        .stdout
        == body.as_bytes()));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "the node logged at trace"
    );
    for s in [pass, &secret, &invite, body] {
        assert!(!text.contains(s), "{s} is in the log");
    }
    // The data travels as base64 in the request; that form is kept out too.
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    assert!(!text.contains(&b64), "the base64 body is in the log");
}
