//! `bump demo`: a self-contained walk through BuMP on this machine, printing each step.
//!
//! It starts the embedded Namecoin regtest chain (a block every 250 ms) and five regtest nodes
//! in-process, each in its own temporary datadir and namecoind wallet, on free loopback ports,
//! linked in a line S — M1 — M2 — M3 — R. The three mixes publish their records as the names
//! `bump/demo-m1..3` (name_new, 12 blocks, name_firstupdate) asking 1000 sat of postage per
//! packet and refusing unpaid packets. S sends a message under a human tag through the three
//! names with a 2-second Tau delay at each, paying postage from its wallet; R reads it
//! byte-exact, never before the delays; then R restarts to show it is on disk. Exit status 0
//! means every step worked; the temporary data is removed.

/// `println!` that ignores a closed stdout (`bump demo | head` must not panic): the demo's
/// narration is for whoever still reads it.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::daemon::{start, ChainSettings, DaemonSettings, Running};
use bump::names::publish::Stage;
use bump::names::NamecoindSettings;
use bump::node::Limits;
use bump::p2p::P2pConfig;
use bump::rpc::api::{BumpApiClient, SendParams};
use bump::rpc::client::{classify, Target};
use bump::store::StoreConfig;
use bump::tag::Tag;
use namecoin::Network;
use regtest::{Regtest, RegtestConfig};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn start_node(
    datadir: &Path,
    connect: Vec<String>,
    chain: Option<ChainSettings>,
) -> Result<(Running, Target)> {
    let netdir = datadir.join("regtest");
    let mut p2p = P2pConfig::new(Network::Regtest);
    p2p.listen = Some("127.0.0.1:0".parse()?);
    p2p.connect = connect;
    p2p.peers_file = Some(netdir.join("peers.json"));
    let settings = DaemonSettings {
        chain,
        network: Network::Regtest,
        netdir: netdir.clone(),
        rpc_bind: "127.0.0.1:0".parse()?,
        rpc_user_password: None,
        limits: Limits::default(),
        store: StoreConfig {
            cache_bytes: 8 << 20,
            ..StoreConfig::default()
        },
        sweep_interval: Duration::from_secs(60),
        p2p,
        cover: None,
        own_via: Vec::new(),
        // The demo's mixes all ask postage, so loops would have no fee-free route.
        loops: bump::mix::loops::LoopConfig::off(),
        // The demo shows named mixes found through namecoind.
        announce_mix: false,
        default_hops: bump::names::DEFAULT_HOPS,
    };
    let running = start(settings, CancellationToken::new()).await?;
    let target = Target::locate(&netdir, Network::Regtest, Some(running.rpc_addr), None)?;
    Ok((running, target))
}

/// The newest complete message under `tag` at a node, if any.
async fn read_message(target: &Target, tag: &Tag) -> Result<Option<Vec<u8>>> {
    let got = target
        .http(1 << 30)?
        .get_messages(tag.to_hex(), None)
        .await
        .map_err(classify)?;
    match got.messages.last() {
        Some(m) => Ok(Some(
            B64.decode(&m.data).context("node sent malformed base64")?,
        )),
        None => Ok(None),
    }
}

fn chain_settings(rt: &Regtest, wallet: &str, fee: u64, require: bool) -> ChainSettings {
    ChainSettings {
        namecoind: NamecoindSettings {
            url: rt.url(),
            auth: namecoin::rpc::Auth::Cookie(rt.cookie_path.clone()),
            wallet: Some(wallet.into()),
        },
        mix_fee: fee,
        require_postage: require,
        postage_confirmations: 0,
        poll: Duration::from_millis(300),
        default_hops: 3,
    }
}

async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run() -> Result<()> {
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("bump-demo-")
        .tempdir()
        .context("cannot create a temp dir")?;
    say!("[demo] datadir {}", root.path().display());

    say!("[demo] 1. starting the embedded Namecoin regtest chain (a block every 250 ms)");
    let mut rcfg = RegtestConfig::new(&root.path().join("namecoind"));
    rcfg.automine = Some(Duration::from_millis(250));
    let rt = Regtest::start(rcfg).await.context("embedded chain")?;
    for w in ["m1", "m2", "m3"] {
        rt.mine_to_wallet(w, 1);
    }
    let h = rt.mine_to_wallet("s", 101);
    rt.mine_to_wallet("r", 1);
    say!(
        "[demo]    namecoind RPC {} (cookie {}), height {h}; wallets m1 m2 m3 s r funded",
        rt.url(),
        rt.cookie_path.display()
    );

    say!("[demo] 2. starting five nodes on loopback, linked S - M1 - M2 - M3 - R");
    let names = ["s", "m1", "m2", "m3", "r"];
    let mut nodes: Vec<(Running, Target)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let connect = match nodes.last() {
            Some((prev, _)) => vec![prev
                .overlay
                .listen_addr()
                .context("not listening")?
                .to_string()],
            None => vec![],
        };
        let mix = n.starts_with('m');
        let cs = chain_settings(&rt, n, if mix { 1000 } else { 0 }, mix);
        nodes.push(start_node(&root.path().join(n), connect, Some(cs)).await?);
        let _ = i;
    }
    let middle = &nodes[2].0;
    wait_until("the overlay connecting", 20, || async {
        Ok(middle.overlay.sync_status().bump_peers >= 2)
    })
    .await?;
    say!("[demo]    connected (BuMP handshake over the Namecoin wire protocol)");

    say!("[demo] 3. the mixes publish their keys as Namecoin names (fee 1000 sat/packet, postage required)");
    for (i, (_, t)) in nodes.iter().enumerate().skip(1).take(3) {
        let s = t
            .http(1 << 20)?
            .name_publish(format!("demo-m{i}"), Some(1000), None)
            .await
            .map_err(classify)?;
        say!("[demo]    {}: {:?}", s.name, s.stage);
    }
    let mut last: Vec<Option<Stage>> = vec![None; 3];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for (i, (_, t)) in nodes.iter().skip(1).take(3).enumerate() {
            let st = t.http(1 << 20)?.name_status().await.map_err(classify)?;
            let s = st.first().context("no publish state")?;
            if last[i] != Some(s.stage) {
                let at = s
                    .height
                    .map(|h| format!(" at height {h}"))
                    .unwrap_or_default();
                say!("[demo]    {}: {:?}{at}", s.name, s.stage);
                last[i] = Some(s.stage);
            }
            all &= s.stage == Stage::Active;
        }
        if all {
            break;
        }
        if Instant::now() > deadline {
            bail!("the three names were not published within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listing = nodes[0]
        .1
        .http(1 << 20)?
        .mixes(Some(true))
        .await
        .map_err(classify)?;
    say!(
        "[demo]    directory (name_scan bump/ at height {}): {} valid mixes, {} rejected",
        listing.height,
        listing.mixes.len(),
        listing.rejected.len()
    );
    for m in &listing.mixes {
        say!(
            "[demo]      {} key {}.. fee {} sat, pay {}",
            m.name,
            &m.record.key[..16],
            m.record.fee,
            m.record.pay.as_deref().unwrap_or("-")
        );
    }

    let human = "#bump-demo";
    let tag = Tag::from_arg(human)?;
    say!("[demo] 4. human tag {human:?} is tag {tag} (HASH160 of its bytes)");
    let message = format!(
        "Hello from the BuMP demo. This went through three mixes found by their Namecoin names.\n{}",
        "padding line to make this span more than one packet.\n".repeat(12)
    );
    let delay = 2u64;
    let t0 = Instant::now();
    let sent = nodes[0]
        .1
        .http(1 << 30)?
        .send(SendParams {
            tag: tag.to_hex(),
            data: B64.encode(message.as_bytes()),
            ttl: Some(3600),
            via: Some(vec![
                "bump/demo-m1".into(),
                "bump/demo-m2".into(),
                "bump/demo-m3".into(),
            ]),
            hops: None,
            // A quiet demo network has no crowd to wait for: level none plus a short delay.
            tau: Some("none".into()),
            crowd: Some(0),
            delay: Some(delay),
            postage: None,
        })
        .await
        .map_err(classify)?;
    say!(
        "[demo]    S sent {} bytes as message {} in {} onion packets via bump/demo-m1,m2,m3 (delay {delay} s at each), postage paid from wallet s",
        sent.bytes, sent.msgid, sent.packets
    );

    let r = nodes[4].1.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let data = loop {
        if let Some(d) = read_message(&r, &tag).await? {
            break d;
        }
        if Instant::now() > deadline {
            bail!("the message did not reach R within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = t0.elapsed();
    if data != message.as_bytes() {
        bail!("the message reached R different");
    }
    if took < Duration::from_secs(3 * delay) {
        bail!("the message arrived after {took:?}, before its Tau delays");
    }
    say!(
        "[demo] 5. R read it after {:.1} s (>= 3 x {delay} s of Tau delay): {} bytes, byte-exact",
        took.as_secs_f64(),
        message.len()
    );
    for (i, (n, _)) in nodes.iter().enumerate().skip(1).take(3) {
        let s = n.mix.stats();
        say!(
            "[demo]    M{i}: released {}, dropped {:?}",
            s.released,
            s.dropped
        );
    }

    say!("[demo] 6. restarting R: acknowledged packets are on disk");
    let (r_node, _) = nodes.pop().context("five nodes")?;
    r_node.finish().await?;
    let m3 = nodes[3]
        .0
        .overlay
        .listen_addr()
        .context("M3 listening")?
        .to_string();
    let (r_node, r_rpc) = start_node(
        &root.path().join("r"),
        vec![m3],
        Some(chain_settings(&rt, "r", 0, false)),
    )
    .await?;
    match read_message(&r_rpc, &tag).await? {
        Some(d) if d == message.as_bytes() => {
            say!("[demo]    still there after restart: {} bytes", d.len())
        }
        Some(_) => bail!("the message changed across the restart"),
        None => bail!("the message was lost across the restart"),
    }
    r_node.finish().await?;
    for (n, _) in nodes {
        n.finish().await?;
    }
    rt.stop();
    drop(root);
    say!(
        "[demo] done in {:.1} s; temporary data removed",
        started.elapsed().as_secs_f64()
    );
    say!("[demo] try it yourself: `bump --regtest node` in one shell, then");
    say!("[demo]   echo hi | bump --regtest send --hops 0 '#mytag' -  &&  bump --regtest get '#mytag'");
    Ok(())
}

/// `bump demo --speakeasy`: two nodes (A, B) in-process, three Speak Easy members served on
/// loopback — the admin and Bob on node A, Carol on node B — with the network `demo` already
/// set up (`all > ops > cell-a`, Bob cleared at ops, Carol at cell-a, a first post in each).
/// Prints the three login URLs and serves until Ctrl-C; the temporary data is then removed.
pub async fn run_speakeasy() -> Result<()> {
    use bump::speakeasy::app::{run_reader, App, SendOpts};
    let root = tempfile::tempdir()?;
    say!("[demo] starting two nodes on loopback (A and B, linked)");
    let (a, ta) = start_node(&root.path().join("a"), vec![], None).await?;
    let a_addr = a.overlay.listen_addr().context("not listening")?;
    let (b, tb) = start_node(&root.path().join("b"), vec![a_addr.to_string()], None).await?;
    wait_until("the nodes connecting", 20, || async {
        Ok(a.overlay.sync_status().bump_peers >= 1)
    })
    .await?;
    let open = |name: &str, t: &Target| {
        App::open(
            root.path().join("se").join(name),
            t.clone(),
            SendOpts::default(),
        )
    };
    let (admin, bob, carol) = (open("admin", &ta)?, open("bob", &ta)?, open("carol", &tb)?);
    for app in [&admin, &bob, &carol] {
        tokio::spawn(run_reader(app.clone()));
    }
    say!("[demo] the admin creates the network `demo`: all > ops > cell-a");
    let net = admin.create_network("demo", "all", "Admin").await?;
    let all = admin
        .lock()
        .network(&net)
        .context("network")?
        .1
        .clearance
        .at;
    let ops = admin.add_compartment(&net, all, "ops").await?;
    let cell = admin.add_compartment(&net, ops, "cell-a").await?;
    for (who, app, name, at) in [("Bob", &bob, "Bob", ops), ("Carol", &carol, "Carol", cell)] {
        let id = app.start_join(name)?;
        let invite = admin.invite(&net, &id.to_string_id(), name, at).await?;
        app.join(&invite).await?;
        say!("[demo] {who} joined (invite sealed to a fresh pseudonym)");
    }
    bob.post(
        &net,
        ops,
        "general",
        None,
        "Welcome to ops",
        "Only ops and the admin read this.",
    )
    .await?;
    carol
        .post(
            &net,
            cell,
            "field",
            None,
            "Cell report",
            "Everyone cleared at cell-a or above reads this.",
        )
        .await?;
    let mut urls = vec![];
    for (who, app) in [
        ("admin (node A)", &admin),
        ("Bob (node A)", &bob),
        ("Carol (node B)", &carol),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (url, serve) = bump::speakeasy::web::serve(app.clone(), listener).await?;
        tokio::spawn(serve);
        urls.push((who, url));
    }
    say!("[demo] Speak Easy is up; open each URL in a browser on this machine (each works once):");
    for (who, url) in &urls {
        say!("  {who:<16} {url}");
    }
    say!("[demo] posts go out unmixed here (two nodes, no mix directory) and the pages say so.");
    say!("[demo] Ctrl-C stops and removes the temporary data.");
    tokio::signal::ctrl_c().await?;
    drop((a, b));
    Ok(())
}
