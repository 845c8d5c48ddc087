//! Speak Easy post latency through mixes (issue #14, docs/speakeasy.md §7): five real nodes
//! with default settings (every node a mix, its key learned over P2P, cover on) in a ring,
//! the admin's Speak Easy client on node 0 and Bob's on node 2. Bob posts `POSTS` posts at
//! once at the given Tau level (default standard, 3 mixes); the figure is the time from the
//! post leaving Bob's client to the admin's client having opened it (the page shows it at its
//! next refresh, < 1 s later). A Tau-none baseline runs first in the same run.
//!
//!     cargo build --release && cargo run --release --example speakeasy_latency [POSTS] [TAU]

use bump::rpc::client::Target;
use bump::speakeasy::app::{run_reader, App, SendOpts};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    dir: tempfile::TempDir,
    child: Child,
    p2p: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_file(p: &Path, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(t) = std::fs::read_to_string(p) {
            if !t.trim().is_empty() {
                return t.trim().to_string();
            }
        }
        assert!(Instant::now() < end, "{} not written", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(bin: &Path, connect: &[String]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--datadir",
        dir.path().to_str().unwrap(),
        "--regtest",
        "node",
    ])
    .args(["--rpc-bind", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    for c in connect {
        cmd.args(["--connect", c]);
    }
    let child = cmd
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bump node (cargo build --release first)");
    let net = dir.path().join("regtest");
    wait_file(&net.join("rpc.addr"), 20);
    let p2p = wait_file(&net.join("p2p.addr"), 20);
    Node { dir, child, p2p }
}

fn target(n: &Node) -> Target {
    Target::locate(
        &n.dir.path().join("regtest"),
        namecoin::Network::Regtest,
        None,
        None,
    )
    .unwrap()
}

async fn run(
    nodes: &[Node],
    tau: &str,
    hops: Option<usize>,
    posts: usize,
    root: &Path,
) -> Vec<f64> {
    let opts = SendOpts {
        tau: Some(tau.to_string()),
        hops,
    };
    let admin = App::open(
        root.join(format!("admin-{tau}")),
        target(&nodes[0]),
        opts.clone(),
    )
    .unwrap();
    let bob = App::open(root.join(format!("bob-{tau}")), target(&nodes[2]), opts).unwrap();
    tokio::spawn(run_reader(admin.clone()));
    tokio::spawn(run_reader(bob.clone()));
    let net = admin.create_network("lat", "all", "Admin").await.unwrap();
    let id = bob.start_join("Bob").unwrap();
    // (The lock is released before the await: the guard must not live across it.)
    let root_c = admin.lock().network(&net).unwrap().1.clearance.at;
    let invite = admin
        .invite(&net, &id.to_string_id(), "Bob", root_c)
        .await
        .unwrap();
    bob.join(&invite).await.unwrap();
    let at = bob.lock().network(&net).unwrap().1.clearance.at;
    let mut sent = vec![];
    for i in 0..posts {
        let t = Instant::now();
        let pid = bob
            .post(
                &net,
                at,
                "general",
                None,
                &format!("post {i}"),
                &format!("latency probe {i}"),
            )
            .await
            .unwrap();
        sent.push((pid, t));
    }
    let mut got: Vec<Option<f64>> = vec![None; posts];
    let end = Instant::now() + Duration::from_secs(1200);
    while got.iter().any(|g| g.is_none()) && Instant::now() < end {
        {
            let g = admin.lock();
            let (_, _, f) = g.network(&net).unwrap();
            for (i, (pid, t)) in sent.iter().enumerate() {
                if got[i].is_none() && f.post(pid).is_some() {
                    got[i] = Some(t.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hops_used = bob.lock().last_hops;
    println!("  tau {tau}: sent through {hops_used:?} mixes");
    got.into_iter()
        .map(|g| g.unwrap_or(f64::INFINITY))
        .collect()
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let missing = v.iter().filter(|x| x.is_infinite()).count();
    format!(
        "p50 {:.1} s, max {:.1} s, {} of {} arrived",
        v[v.len() / 2],
        v[v.len() - 1],
        v.len() - missing,
        v.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let posts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let tau = args.get(2).cloned().unwrap_or_else(|| "standard".into());
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/bump");
    let mut nodes: Vec<Node> = vec![];
    for i in 0..5 {
        let connect: Vec<String> = match i {
            0 => vec![],
            4 => vec![nodes[3].p2p.clone(), nodes[0].p2p.clone()],
            _ => vec![nodes[i - 1].p2p.clone()],
        };
        nodes.push(start(&bin, &connect));
    }
    // Let the nodes learn each other's mix keys over P2P.
    std::thread::sleep(Duration::from_secs(20));
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let mut base = run(&nodes, "none", Some(0), posts, root.path()).await;
        println!("baseline, unmixed (hops 0): {}", summary(&mut base));
        let mut mixed = run(&nodes, &tau, None, posts, root.path()).await;
        println!("tau {tau}, node default route: {}", summary(&mut mixed));
        println!("run {:.0} s", t.elapsed().as_secs_f64());
    });
}
