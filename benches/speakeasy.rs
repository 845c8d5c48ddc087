//! Speak Easy at 10,000 posts (issue #14, docs/speakeasy.md §7): the cost of opening posts as
//! they arrive (sealed parts → envelope → item → forum), the memory of the forum as RSS, and
//! the time to serve a board page over HTTP — beside a baseline of 100 posts in the same run.
//!
//! `cargo bench --bench speakeasy` (no node needed: posts are sealed and split into packets
//! here, then fed through the same readers `bump speakeasy` uses).

use bump::message::split_framed;
use bump::rpc::client::Target;
use bump::sealed::keys::{GroupKey, Identity};
use bump::sealed::parts::PartReader;
use bump::speakeasy::app::{App, SendOpts};
use bump::speakeasy::forum::{Forum, Keys};
use bump::speakeasy::post::{Body, Item, ItemId, Place, Post};
use bump::speakeasy::seal::{open_item, seal_item};
use bump::speakeasy::tree::{Clearance, CompartmentId, Tree};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String, Option<String>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let set = out
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_string());
    (status, out, set)
}

/// A network with one compartment, `posts` posts in `posts / 20` threads of one board,
/// sealed, split into packets and opened again as they would arrive. Returns the keys, the
/// forum, and the seconds spent opening.
fn network(posts: usize) -> (Keys, Forum, f64) {
    let root = CompartmentId::random();
    let key = GroupKey::generate();
    let mut keys = Keys {
        network: rand::random(),
        name: format!("bench{posts}"),
        me: Identity::generate(),
        my_name: "me".into(),
        tree: Tree::new(root, "all").unwrap(),
        clearance: Clearance {
            at: root,
            epoch: 0,
            key: key.0,
        },
        past: vec![],
    };
    let authors: Vec<Identity> = (0..8).map(|_| Identity::generate()).collect();
    let now = bump::unix_now();
    let mut packets = vec![];
    let mut roots = vec![];
    for i in 0..posts {
        let (r, parent) = if i % 20 == 0 {
            (ItemId::NONE, ItemId::NONE)
        } else {
            let r = *roots.last().unwrap();
            (r, r)
        };
        let item = Item {
            place: Place {
                network: keys.network,
                compartment: root,
                epoch: 0,
            },
            id: ItemId::random(),
            body: Body::Post(Post {
                board: "general".into(),
                root: r,
                parent,
                title: if r == ItemId::NONE {
                    format!("thread {i}")
                } else {
                    String::new()
                },
                text: format!("post {i}: {}", "lorem ipsum dolor sit amet ".repeat(8)),
            }),
        };
        if r == ItemId::NONE {
            roots.push(item.id);
        }
        let s = seal_item(&keys.tree, &keys.clearance, &item, &authors[i % 8], now).unwrap();
        let (_, p) = split_framed(
            &s.carried,
            &s.framer,
            s.tag,
            now + 3600,
            1 << 20,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        packets.extend(p);
    }
    let mut forum = Forum::default();
    let t = Instant::now();
    let gk = keys.clearance.key_for(&keys.tree, &root).unwrap();
    let mut reader = PartReader::group(&gk);
    for (seq, p) in packets.iter().enumerate() {
        for env in reader.push(seq as u64, p) {
            let o = open_item(&gk, &env).unwrap();
            forum.ingest(&mut keys, o);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(forum.post_count(), posts);
    (keys, forum, secs)
}

/// Log in at `login_url`, then GET `page` 15 times: median and max ms, and its size.
fn measure(login_url: &str, page: &str) -> (f64, f64, usize) {
    let rest = login_url.strip_prefix("http://").unwrap();
    let (hostport, login) = rest.split_once('/').unwrap();
    let addr: SocketAddr = hostport.parse().unwrap();
    let (_, _, cookie) = get(addr, &format!("/{login}"), "");
    let cookie = cookie.unwrap();
    let mut times = vec![];
    let mut bytes = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let (st, body, _) = get(addr, page, &cookie);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200);
        bytes = body.len();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[times.len() / 2], times[times.len() - 1], bytes)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A listener stands in for the node (the pages only read the forum here).
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::locate(
            std::path::Path::new("/nonexistent"),
            namecoin::Network::Regtest,
            Some(fake.local_addr().unwrap()),
            Some(("u".into(), "p".into())),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let app = App::open(dir.path().to_path_buf(), target, SendOpts::default()).unwrap();
        let rss0 = rss_mb();
        let (k1, f1, s1) = network(100);
        let rss1 = rss_mb();
        let (k2, f2, s2) = network(10_000);
        let rss2 = rss_mb();
        let (n1, n2) = (hex::encode(k1.network), hex::encode(k2.network));
        let (c1, c2) = (k1.clearance.at.to_hex(), k2.clearance.at.to_hex());
        {
            let mut g = app.lock();
            g.state.networks.push(k1);
            g.forums.push(f1);
            g.state.networks.push(k2);
            g.forums.push(f2);
        }
        // Each login token works once: one server per page measured.
        let mut results = vec![];
        for (net, c) in [(n1, c1), (n2, c2)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (url, serve) = bump::speakeasy::web::serve(app.clone(), listener).await.unwrap();
            tokio::spawn(serve);
            let page = format!("/n/{net}/c/{c}?board=general");
            results.push(tokio::task::spawn_blocking(move || measure(&url, &page)).await.unwrap());
        }
        let [(m1, x1, b1), (m2, x2, b2)] = [results[0], results[1]];
        println!("Speak Easy, one board (threads of 20 posts), this machine, one run:");
        println!("| posts | opening them as they arrive | forum RSS growth | board page, median / max of 15 | page size |");
        println!("|---|---|---|---|---|");
        println!(
            "| 100 (baseline) | {:.3} s ({:.0} posts/s) | {:+.1} MB | {m1:.2} / {x1:.2} ms | {} KB |",
            s1,
            100.0 / s1,
            rss1 - rss0,
            b1 / 1024
        );
        println!(
            "| 10,000 | {:.2} s ({:.0} posts/s) | {:+.1} MB | {m2:.2} / {x2:.2} ms | {} KB |",
            s2,
            10_000.0 / s2,
            rss2 - rss1,
            b2 / 1024
        );
        println!("process RSS at the end: {:.1} MB (start {:.1} MB)", rss_mb(), rss0);
    });
}
