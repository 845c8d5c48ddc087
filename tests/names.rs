//! Namecoin integration end to end: real `bump node` processes on loopback beside the embedded
//! regtest chain. Publishing (resumed after kill -9, renewed before expiry), the directory's
//! rejections, routing by name, postage rules (unpaid, too little, reused beyond its value,
//! across a restart), and namecoind going down and coming back mid-run.

mod common;

use common::*;
use namecoin::rpc::{Auth, Client, ClientConfig};
use regtest::{Regtest, RegtestConfig};
use serde_json::Value;
use std::time::Duration;

struct Chain {
    rt: Regtest,
    tokio: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Chain {
    /// The embedded chain mining a block every 200 ms, with funded wallets.
    fn start(wallets: &[&str]) -> Chain {
        let tokio = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RegtestConfig::new(dir.path());
        cfg.automine = Some(Duration::from_millis(200));
        let rt = tokio.block_on(Regtest::start(cfg)).unwrap();
        for w in wallets {
            rt.mine_to_wallet(w, 1);
        }
        rt.mine_to_wallet("miner", 101);
        Chain {
            rt,
            tokio,
            _dir: dir,
        }
    }

    fn node_args(&self, wallet: &str) -> Vec<String> {
        vec![
            "--namecoind".into(),
            self.rt.url(),
            "--namecoind-cookie".into(),
            self.rt.cookie_path.display().to_string(),
            "--namecoind-wallet".into(),
            wallet.into(),
            "--name-poll".into(),
            "1".into(),
        ]
    }

    fn client(&self, wallet: &str) -> Client {
        Client::new(ClientConfig {
            url: self.rt.url(),
            auth: Auth::Cookie(self.rt.cookie_path.clone()),
            wallet: Some(wallet.into()),
            timeout: Duration::from_secs(10),
        })
    }

    fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.tokio.block_on(f)
    }
}

fn start(dir: &std::path::Path, chain: &Chain, wallet: &str, extra: &[&str]) -> TestNode {
    let mut args = chain.node_args(wallet);
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    TestNode::start(dir, &a)
}

fn json(n: &TestNode, args: &[&str]) -> Value {
    serde_json::from_slice(&n.ok(args, None)).unwrap()
}

fn stage(n: &TestNode, name: &str) -> String {
    json(n, &["name", "status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["stage"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn publish(n: &TestNode, label: &str, fee: &str) {
    n.ok(&["name", "publish", label, "--fee", fee], None);
    let name = format!("bump/{label}");
    assert!(
        wait_for(60, || stage(n, &name) == "active"),
        "{name} published"
    );
}

#[test]
fn publish_resumes_after_a_crash_shows_in_name_show_and_renews() {
    let chain = Chain::start(&["m"]);
    let dir = tempfile::tempdir().unwrap();
    let mut n = start(dir.path(), &chain, "m", &[]);
    n.ok(&["name", "publish", "alpha", "--fee", "1000"], None);
    assert!(wait_for(30, || stage(&n, "bump/alpha") == "name_new_sent"));
    // Killed between name_new and name_firstupdate: the state file carries it on.
    n.kill9();
    let n = start(dir.path(), &chain, "m", &[]);
    assert!(
        wait_for(60, || stage(&n, "bump/alpha") == "active"),
        "resumed to active"
    );
    let key = json(&n, &["mix", "--json"])["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let client = chain.client("m");
    let info = chain.run(client.name_show("bump/alpha")).unwrap();
    let record: Value = serde_json::from_str(info.value.as_deref().unwrap()).unwrap();
    assert_eq!(record["key"], key.as_str());
    assert_eq!(record["fee"], 1000);
    assert!(info.value.unwrap().len() <= 520);
    let first_height = info.height.unwrap();
    let listing = json(&n, &["mixes", "--refresh", "--json"]);
    assert_eq!(listing["mixes"][0]["name"], "bump/alpha");
    // Names live 30 blocks on regtest; the node renews when 10 are left. Watch 40+ blocks.
    let start_h = chain.rt.height();
    assert!(wait_for(40, || chain.rt.height() > start_h + 40));
    let info = chain
        .run(client.name_show("bump/alpha"))
        .expect("still alive after 40 blocks");
    assert!(
        info.height.unwrap() > first_height,
        "renewed by name_update"
    );
    assert_eq!(info.expired, Some(false));
}

/// Register names with any values straight through the wallet, as a careless or hostile
/// publisher would; all at once, since regtest names live only 30 blocks.
fn register(chain: &Chain, wallet: &str, names: &[(&str, String)]) {
    let c = chain.client(wallet);
    let news: Vec<(String, String)> = names
        .iter()
        .map(|(n, _)| chain.run(c.name_new(n)).unwrap())
        .collect();
    for (txid, _) in &news {
        assert!(wait_for(30, || chain
            .run(c.getrawtransaction_verbose(txid))
            .is_ok_and(|t| t.confirmations.unwrap_or(0) >= 12)));
    }
    for ((name, value), (txid, rand)) in names.iter().zip(&news) {
        chain
            .run(c.name_firstupdate(name, rand, txid, value))
            .unwrap();
    }
    for (name, _) in names {
        assert!(wait_for(30, || chain.run(c.name_show(name)).is_ok()));
    }
}

#[test]
fn the_directory_rejects_bad_records_and_routing_by_name_uses_only_good_ones() {
    let chain = Chain::start(&["m", "evil"]);
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), &chain, "m", &["--listen", "127.0.0.1:0"]);
    publish(&n, "good", "0");
    // The recorded test value (no tag, no exp), a key not on the curve, a tag of another key.
    let good = json(&n, &["mix", "--json"]);
    let key = good["public_key"].as_str().unwrap();
    let tag = good["mix_tag"].as_str().unwrap();
    register(&chain, "evil", &[
        ("bump/old", "{\"v\":1,\"key\":\"021111111111111111111111111111111111111111111111111111111111111111\",\"fee\":1000}".to_string()),
        ("bump/badkey", format!("{{\"v\":1,\"key\":\"05{}\",\"tag\":\"{tag}\",\"exp\":100000}}", &key[2..])),
        ("bump/wrongtag", format!("{{\"v\":1,\"key\":\"{key}\",\"tag\":\"{}\",\"exp\":100000}}", "00".repeat(20))),
    ]);
    let listing = json(&n, &["mixes", "--refresh", "--json"]);
    let valid: Vec<&str> = listing["mixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(valid, vec!["bump/good"]);
    let rejected: Vec<(String, String)> = listing["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|(n, r)| n == "bump/badkey" && r.contains("key")),
        "{rejected:?}"
    );
    assert!(rejected
        .iter()
        .any(|(n, r)| n == "bump/wrongtag" && r.contains("tag")));
    assert!(rejected
        .iter()
        .any(|(n, r)| n == "bump/old" && r.contains("not a mix record")));
    let text = String::from_utf8(n.ok(&["mixes"], None)).unwrap();
    assert!(text.contains("REJECTED"), "{text}");
    // An over-long value never gets on chain through the wallet: namecoind's -8.
    let c = chain.client("evil");
    let (txid, rand) = chain.run(c.name_new("bump/long")).unwrap();
    assert!(wait_for(30, || chain
        .run(c.getrawtransaction_verbose(&txid))
        .is_ok_and(|t| t.confirmations.unwrap_or(0) >= 12)));
    let err = chain
        .run(c.name_firstupdate("bump/long", &rand, &txid, &"x".repeat(521)))
        .unwrap_err();
    assert_eq!(
        err,
        namecoin::rpc::RpcError::InvalidParameter("the value is too long".into())
    );

    // Routing by name: a rejected name and a missing one fail clearly; two hops are too many.
    let msg = random_bytes(700);
    let out = n.cli(
        &["send", "--tau", "none", "--via", "bump/badkey", "#t", "-"],
        Some(&msg),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not usable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = n.cli(
        &["send", "--tau", "none", "--via", "bump/nosuch", "#t", "-"],
        Some(&msg),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mix named bump/nosuch"));
    let out = n.cli(
        &["send", "--tau", "none", "--hops", "2", "#t", "-"],
        Some(&msg),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 valid mixes; 2 needed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --hops 1 picks bump/good (this node) and the message comes out of its mix.
    n.ok(
        &["send", "--tau", "none", "--hops", "1", "#t", "-"],
        Some(&msg),
    );
    assert!(wait_for(20, || n.cli(&["get", "#t"], None).stdout == msg));
    assert!(json(&n, &["mix", "--json"])["released"].as_u64().unwrap() >= 1);

    // Cover traffic without --cover-via goes through the directory's fee-free mixes: here
    // only bump/good, so its mix drops the dummies.
    let cdir = tempfile::tempdir().unwrap();
    let _c = start(
        cdir.path(),
        &chain,
        "evil",
        &[
            "--connect",
            &n.p2p(),
            "--cover-rate",
            "600",
            "--cover-tau",
            "none",
        ],
    );
    assert!(
        wait_for(30, || json(&n, &["mix", "--json"])["dummies_dropped"]
            .as_u64()
            .unwrap_or(0)
            >= 3),
        "{}",
        json(&n, &["mix", "--json"])
    );
}

fn dropped(n: &TestNode, reason: &str) -> u64 {
    json(n, &["mix", "--json"])["dropped"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn postage_is_checked_charged_and_never_reused() {
    let chain = Chain::start(&["m", "s"]);
    let (dm, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut m = start(
        dm.path(),
        &chain,
        "m",
        &[
            "--listen",
            "127.0.0.1:0",
            "--mix-fee",
            "1000",
            "--require-postage",
        ],
    );
    let s = start(ds.path(), &chain, "s", &["--connect", &m.p2p()]);
    assert!(wait_for(20, || s.status()["p2p"]["bump_peers"].as_u64() == Some(1)));
    publish(&m, "paid", "1000");
    let pay = json(&m, &["name", "status", "--json"])[0]["pay"]
        .as_str()
        .unwrap()
        .to_string();
    let key = json(&m, &["mix", "--json"])["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let small = random_bytes(300); // one part

    // Unpaid (a bare key carries no postage): dropped.
    s.ok(
        &["send", "--tau", "none", "--via", &key, "#unpaid", "-"],
        Some(&small),
    );
    assert!(wait_for(20, || dropped(&m, "unpaid") == 1));

    // Too little: 600 sat against a 1000 sat fee.
    let c = chain.client("s");
    let pay_to = |addr: &str, sat: u64| {
        let txid = chain.run(c.sendtoaddress(addr, sat)).unwrap();
        let tx = chain.run(c.getrawtransaction_verbose(&txid)).unwrap();
        let vout = tx.vout.iter().find(|o| o.value == sat).unwrap().n;
        format!("{txid}:{vout}")
    };
    let pay_out = |sat: u64| pay_to(&pay, sat);
    let little = pay_out(600);
    s.ok(
        &[
            "send",
            "--tau",
            "none",
            "--via",
            "bump/paid",
            "--postage",
            &little,
            "#little",
            "-",
        ],
        Some(&small),
    );
    assert!(wait_for(20, || dropped(&m, "too little postage") == 1));

    // Paid automatically from the wallet: delivered.
    s.ok(
        &["send", "--tau", "none", "--via", "bump/paid", "#auto", "-"],
        Some(&small),
    );
    assert!(wait_for(20, || s.cli(&["get", "#auto"], None).stdout == small));

    // 1500 sat covers one packet; the second use is refused, even after a crash.
    let once = pay_out(1500);
    s.ok(
        &[
            "send",
            "--tau",
            "none",
            "--via",
            "bump/paid",
            "--postage",
            &once,
            "#once",
            "-",
        ],
        Some(&small),
    );
    assert!(wait_for(20, || s.cli(&["get", "#once"], None).stdout == small));
    let p2p = m.p2p();
    m.kill9();
    let m = start(
        dm.path(),
        &chain,
        "m",
        &["--listen", &p2p, "--mix-fee", "1000", "--require-postage"],
    );
    assert!(wait_for(20, || s.status()["p2p"]["bump_peers"].as_u64() == Some(1)));
    s.ok(
        &[
            "send",
            "--tau",
            "none",
            "--via",
            "bump/paid",
            "--postage",
            &once,
            "#twice",
            "-",
        ],
        Some(&small),
    );
    assert!(wait_for(20, || dropped(&m, "postage used up") == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.cli(&["get", "#twice"], None).stdout.is_empty(),
        "reused postage never delivers"
    );
    // Postage paying someone else: refused.
    let other = chain.run(c.getnewaddress()).unwrap();
    let elsewhere = pay_to(&other, 5000);
    s.ok(
        &[
            "send",
            "--tau",
            "none",
            "--via",
            "bump/paid",
            "--postage",
            &elsewhere,
            "#else",
            "-",
        ],
        Some(&small),
    );
    assert!(wait_for(20, || dropped(&m, "postage pays someone else") == 1));
}

#[test]
fn namecoind_down_mid_run_keeps_relaying_and_recovers() {
    let chain = Chain::start(&["a", "b"]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(da.path(), &chain, "a", &["--listen", "127.0.0.1:0"]);
    let b = start(db.path(), &chain, "b", &["--connect", &a.p2p()]);
    assert!(wait_for(20, || b.status()["p2p"]["bump_peers"].as_u64() == Some(1)));
    publish(&a, "a", "0");
    assert_eq!(json(&b, &["mixes", "--refresh", "--json"])["stale"], false);

    chain.rt.set_down(true);
    let msg = random_bytes(5000);
    b.ok(
        &["send", "--tau", "none", "--hops", "0", "#down", "-"],
        Some(&msg),
    );
    assert!(
        wait_for(20, || a.cli(&["get", "#down"], None).stdout == msg),
        "flooding goes on"
    );
    let l = json(&b, &["mixes", "--refresh", "--json"]);
    assert_eq!(l["stale"], true, "last listing served, marked stale");
    assert_eq!(l["mixes"][0]["name"], "bump/a");
    let out = b.cli(
        &["send", "--tau", "none", "--via", "bump/other", "#x", "-"],
        Some(&msg),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namecoind is not reachable"), "{err}");
    // Routing through the cached record still works while namecoind is down.
    b.ok(
        &["send", "--tau", "none", "--via", "bump/a", "#cached", "-"],
        Some(&msg),
    );
    assert!(wait_for(20, || b.cli(&["get", "#cached"], None).stdout == msg));

    chain.rt.set_down(false);
    assert!(
        wait_for(20, || json(&b, &["mixes", "--refresh", "--json"])["stale"]
            == false),
        "recovered"
    );
    assert!(wait_for(20, || stage(&a, "bump/a") == "active"
        && json(&a, &["name", "status", "--json"])[0]["last_error"]
            .is_null()));
}

/// The publish + postage flow against a real namecoind, when `NAMECOIND` names its binary
/// (see regtest/README.md). Skips with a printed reason otherwise.
#[test]
fn real_namecoind_publish_and_paid_send() {
    let Ok(bin) = std::env::var("NAMECOIND") else {
        println!(
            "skipped: set NAMECOIND to a namecoind binary to run the real-namecoind names test"
        );
        return;
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let nc_dir = tempfile::tempdir().unwrap();
    let rpcport = free_port();
    let mut nc = std::process::Command::new(&bin)
        .args([
            "-regtest",
            &format!("-datadir={}", nc_dir.path().display()),
            &format!("-rpcport={rpcport}"),
            &format!("-port={}", free_port()),
            "-bind=127.0.0.1",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            "-txindex=1",
            "-fallbackfee=0.001",
            "-dnsseed=0",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start namecoind");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let cookie = nc_dir.path().join("regtest/.cookie");
    let url = format!("http://127.0.0.1:{rpcport}");
    let client = |w: &str| {
        Client::new(ClientConfig {
            url: url.clone(),
            auth: Auth::Cookie(cookie.clone()),
            wallet: Some(w.into()),
            timeout: Duration::from_secs(30),
        })
    };
    assert!(
        wait_for(60, || tokio.block_on(client("m").getblockcount()).is_ok()),
        "namecoind RPC up"
    );
    for w in ["m", "s"] {
        tokio.block_on(client("m").createwallet(w)).unwrap();
    }
    let mine = |w: &str, n: u32| {
        let c = client(w);
        let a = tokio.block_on(c.getnewaddress()).unwrap();
        tokio.block_on(c.generatetoaddress(n, &a)).unwrap();
    };
    mine("m", 1);
    mine("s", 101);
    // Keep mining in the background so names get their 12 confirmations.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let miner = {
        let (stop, c) = (stop.clone(), client("s"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let a = rt.block_on(c.getnewaddress()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = rt.block_on(c.generatetoaddress(1, &a));
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let args = |w: &str| {
        vec![
            "--namecoind".to_string(),
            url.clone(),
            "--namecoind-cookie".into(),
            cookie.display().to_string(),
            "--namecoind-wallet".into(),
            w.into(),
            "--name-poll".into(),
            "1".into(),
        ]
    };
    let (dm, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut am = args("m");
    am.extend([
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--mix-fee".into(),
        "1000".into(),
        "--require-postage".into(),
    ]);
    let m = TestNode::start(
        dm.path(),
        &am.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let mut as_ = args("s");
    as_.extend(["--connect".into(), m.p2p()]);
    let s = TestNode::start(
        ds.path(),
        &as_.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    publish(&m, "real", "1000");
    let msg = random_bytes(400);
    s.ok(
        &["send", "--tau", "none", "--via", "bump/real", "#real", "-"],
        Some(&msg),
    );
    assert!(wait_for(60, || s.cli(&["get", "#real"], None).stdout == msg));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    miner.join().unwrap();
    let _ = nc.kill();
    let _ = nc.wait();
}
