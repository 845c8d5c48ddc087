//! The `bump` binary: the node daemon (`bump node`) and the command-line client that talks to
//! it over JSON-RPC (`send`, `get`, `import`, `export`, `status`, `watch`, `stop`), plus the
//! offline helper `bump tag`. Errors end here as one line on stderr and exit status 1.

mod cli;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bump::config::{self, ConfFile};
use bump::daemon::{self, DaemonSettings};
use bump::mix::tau::TauLevel;
use bump::node::Limits;
use bump::packet::{parse_interchange, DEFAULT_MAX_TTL};
use bump::rpc::api::{BumpApiClient, GetOptions, SendParams};
use bump::rpc::client::{classify, Target};
use bump::store::StoreConfig;
use bump::tag::Tag;
use clap::{Args, Parser, Subcommand};
use jsonrpsee::core::client::SubscriptionClientT;
use namecoin::Network;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest RPC body the client sends or accepts.
const CLIENT_MAX_BODY: u32 = 1 << 30;

#[derive(Parser)]
#[command(
    name = "bump",
    version,
    about = "BuMP: an anonymous, encrypted, fully replicated message bus over the Namecoin network",
    long_about = "BuMP (Bus Message Protocol) stores and floods fixed-size 1 KiB packets grouped by tags.\n\
Every node holds every packet, so reading a tag reveals nothing about who reads it.\n\n\
Start a node with `bump node`, then use `bump send TAG FILE` and `bump get TAG` from another shell.\n\
TAG is 40 hex digits, or any other text (a human tag such as '#news'), which is hashed to a tag\n\
with HASH160 (RIPEMD160 of SHA256); `bump tag TEXT` shows the result.\n\n\
BuMP does not encrypt message contents for you: encrypt before sending, e.g.\n  \
gpg -c secret.txt && base64 secret.txt.gpg > msg.dat && bump send '#mytag' msg.dat\n  \
bump get '#mytag' | base64 -d | gpg > decoded"
)]
struct Cli {
    /// Data directory [default: ~/.bump]. Each network has its own folder inside it.
    #[arg(long, global = true, env = "BUMP_DATADIR", value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Network: main, test or regtest [default: from bump.conf, else main]
    #[arg(long, global = true, value_name = "NET")]
    network: Option<Network>,
    /// Same as --network regtest
    #[arg(long, global = true, conflicts_with_all = ["network", "testnet"])]
    regtest: bool,
    /// Same as --network test
    #[arg(long, global = true, conflicts_with = "network")]
    testnet: bool,
    /// Client: RPC address of the node [default: read from the datadir]
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    rpc_connect: Option<SocketAddr>,
    /// RPC user name (instead of the cookie file); also accepted by `bump node`
    #[arg(long, global = true, requires = "rpcpassword")]
    rpcuser: Option<String>,
    /// RPC password (instead of the cookie file); also accepted by `bump node`
    #[arg(long, global = true, requires = "rpcuser")]
    rpcpassword: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum NameCmd {
    /// Register bump/LABEL with this node's mix key (name_new, 12 blocks, name_firstupdate) and
    /// keep it renewed; resumes after a restart. Changing --fee or --p2p later updates it.
    Publish {
        label: String,
        /// Satoshis each packet must pay this mix (postage) [default: 0 = free]
        #[arg(long, value_name = "SAT")]
        fee: Option<u64>,
        /// Contact to publish, host:port (or an .onion address)
        #[arg(long, value_name = "HOST:PORT")]
        p2p: Option<String>,
        /// Wait until the record is on chain, printing each stage
        #[arg(long)]
        wait: bool,
    },
    /// Show the names this node publishes
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node: store packets and serve the JSON-RPC API on loopback until SIGINT/SIGTERM
    Node(NodeArgs),
    /// Send FILE (`-` for stdin) under TAG; prints the message id once the node has it on disk
    Send {
        /// Time to live, e.g. 3600, 90m, 12h, 2d [default: the node's maximum, 48h]
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Route through these mixes, first hop first: Namecoin names (bump/alice, see `bump
        /// mixes`) or public keys (from `bump mix`). Each part of the message gets its own onion.
        #[arg(
            long,
            value_name = "MIX,MIX,...",
            value_delimiter = ',',
            conflicts_with = "hops"
        )]
        via: Vec<String>,
        /// Route through N random distinct mixes from the Namecoin directory; 0 = the node
        /// publishes the message itself [default: 3 with --namecoind on the node, else 0]
        #[arg(long, value_name = "N")]
        hops: Option<usize>,
        /// Tau level at each mix: none (crowd 0, no delay), low (crowd 2, 10 s), standard
        /// (crowd 5, 30 s), high (crowd 20, 5 min). A mix holds your packet until that many
        /// others entered its pool after it AND the delay passed. Use a level: exact values
        /// that others do not use set your packets apart [default: standard]
        #[arg(long, value_name = "LEVEL")]
        tau: Option<String>,
        /// Expert: Tau minimum crowd at each mix, overriding the level's
        #[arg(long, value_name = "K")]
        crowd: Option<u64>,
        /// Expert: Tau minimum delay at each mix, e.g. 30s, 5m, overriding the level's
        #[arg(long, value_name = "DURATION")]
        delay: Option<String>,
        /// Postage for each hop as TXID:VOUT (`-` to skip a hop), first hop first. Hops whose
        /// record asks a fee and have none here are paid from the node's namecoind wallet
        #[arg(long, value_name = "TXID:VOUT,...", value_delimiter = ',')]
        postage: Vec<String>,
        tag: String,
        file: PathBuf,
    },
    /// Write the complete messages under TAG to stdout, byte for byte, oldest first
    Get {
        /// Print the tag's raw packets as JSON lines (interchange form) instead
        #[arg(long, conflicts_with_all = ["partial", "list"])]
        json: bool,
        /// List incomplete messages (id, parts held/needed) instead of printing data
        #[arg(long, conflicts_with = "list")]
        partial: bool,
        /// List complete messages (id, size, parts) instead of printing data
        #[arg(long)]
        list: bool,
        /// Only the most recently completed message
        #[arg(long)]
        last: bool,
        /// Only the message with this id (as printed by `bump send`)
        #[arg(long, value_name = "MSGID")]
        id: Option<String>,
        tag: String,
    },
    /// Print the 40-hex tag of a tag argument (human tags are hashed); needs no node
    Tag { tag: String },
    /// Create this node's mix key if it has none (DATADIR/<net>/mixkey, mode 0600) and print its
    /// public key and mix tag; needs no node (a node also creates it on first start)
    Keygen,
    /// Store packets from FILE (`-` for stdin): JSON lines, a JSON array, or one JSON object
    Import { file: PathBuf },
    /// Write the packets under TAG as JSON lines, for `bump import` on another node
    Export {
        tag: String,
        /// Write to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show the node's status
    Status {
        /// Print the raw JSON
        #[arg(long)]
        json: bool,
    },
    /// Print each new complete message under TAG as a JSON line as it arrives (WebSocket)
    Watch {
        tag: String,
        /// Exit after this many messages
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// Show this node's mix: public key (for others' --via), tag, pool, released, dropped
    Mix {
        /// Print the raw JSON
        #[arg(long)]
        json: bool,
    },
    /// Publish this node's mix record as a Namecoin name, or show what is published
    #[command(subcommand)]
    Name(NameCmd),
    /// List the mix directory (every bump/ name, validated); rejected records with the reason
    Mixes {
        /// Ask namecoind now instead of using the cached listing
        #[arg(long)]
        refresh: bool,
        /// Print the raw JSON
        #[arg(long)]
        json: bool,
    },
    /// List the node's peers
    Peers {
        /// Print the raw JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop the running node cleanly
    Stop,
    /// Run a self-contained demo in a temporary datadir and exit (0 on success)
    Demo,
}

#[derive(Args)]
struct NodeArgs {
    /// JSON-RPC listen address, loopback only; port 0 picks a free port (written to DATADIR/<net>/rpc.addr)
    /// [default: 127.0.0.1:8339 main, 18339 test, 18446 regtest]
    #[arg(long, value_name = "ADDR:PORT")]
    rpc_bind: Option<SocketAddr>,
    /// Longest accepted packet time-to-live, in seconds [default: 172800 = 48h]
    #[arg(long, value_name = "SECS")]
    max_ttl: Option<u32>,
    /// Largest message `send` accepts, in bytes [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// Store quota in packets (1 KiB each); when full, expired packets are swept and unexpired
    /// ones are never evicted, so new packets are refused [default: 1048576]
    #[arg(long, value_name = "N")]
    max_packets: Option<u64>,
    /// Accept P2P connections on this address, e.g. 0.0.0.0:8337 (port 0 = any free port,
    /// written to DATADIR/<net>/p2p.addr) [default: no listening]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Connect only to this peer (repeatable); no other outbound connections are made
    #[arg(long, value_name = "HOST:PORT")]
    connect: Vec<String>,
    /// Also keep a connection to this peer (repeatable), e.g. your namecoind at 127.0.0.1:8334
    #[arg(long, value_name = "HOST:PORT")]
    addnode: Vec<String>,
    /// Most inbound P2P connections [default: 64]
    #[arg(long, value_name = "N")]
    max_inbound: Option<usize>,
    /// Most outbound connections picked from the peer table [default: 8]
    #[arg(long, value_name = "N")]
    max_outbound: Option<usize>,
    /// Announce new packets after a random (Poisson) delay with this mean, in milliseconds,
    /// which makes it harder to tell which node a packet started at [default: 0 = at once]
    #[arg(long, value_name = "MS")]
    trickle: Option<u64>,
    /// How long a misbehaving peer's IP stays banned, in seconds [default: 86400]
    #[arg(long, value_name = "SECS")]
    ban_time: Option<u64>,
    /// Cover traffic: publish this many dummy packets per minute on average (Poisson), routed
    /// through 1 to 3 random mixes and dropped at their last hop [default: 0 = off]
    #[arg(long, value_name = "PER_MIN")]
    cover_rate: Option<f64>,
    /// Mixes (public keys) that cover traffic and loop packets go through [default: the
    /// Namecoin directory's mixes that ask no fee, with --namecoind]
    #[arg(long, value_name = "KEY,KEY,...", value_delimiter = ',')]
    cover_via: Vec<String>,
    /// Tau level of cover and loop packets: none, low, standard, high; use the level your real
    /// traffic uses [default: standard]
    #[arg(long, value_name = "LEVEL")]
    cover_tau: Option<String>,
    /// Expert: Tau minimum crowd of cover and loop packets, overriding --cover-tau
    #[arg(long, value_name = "K")]
    cover_crowd: Option<u64>,
    /// Expert: Tau minimum delay of cover and loop packets, e.g. 30s, overriding --cover-tau
    #[arg(long, value_name = "DURATION")]
    cover_delay: Option<String>,
    /// Loop packets per minute (Poisson): the mix sends its own packets through two other
    /// mixes and back to itself; when most stop coming back it suspects an (n-1) attack and
    /// lets only its own packets fill crowds (docs/anonymity.md) [default: 1 when there are
    /// mixes to route through; 0 = off]
    #[arg(long, value_name = "PER_MIN")]
    loops: Option<f64>,
    /// Loop packets per minute while that alarm is raised [default: 12]
    #[arg(long, value_name = "PER_MIN")]
    defend_rate: Option<f64>,
    /// A loop packet not back after this long counts as missing, e.g. 10m [default: 10m]
    #[arg(long, value_name = "DURATION")]
    loop_timeout: Option<String>,
    /// namecoind's JSON-RPC URL, e.g. http://127.0.0.1:8336; turns on mix names, the
    /// directory, `--hops` and postage [default: none]
    #[arg(long, value_name = "URL")]
    namecoind: Option<String>,
    /// namecoind's cookie file [default: NAMECOIND_DATADIR/<network>/.cookie]
    #[arg(long, value_name = "FILE")]
    namecoind_cookie: Option<PathBuf>,
    /// namecoind's datadir, to find its cookie [default: ~/.namecoin]
    #[arg(long, value_name = "DIR")]
    namecoind_datadir: Option<PathBuf>,
    /// namecoind rpcuser (instead of the cookie)
    #[arg(long, value_name = "USER", requires = "namecoind_password")]
    namecoind_user: Option<String>,
    /// namecoind rpcpassword
    #[arg(long, value_name = "PASSWORD", requires = "namecoind_user")]
    namecoind_password: Option<String>,
    /// namecoind wallet for names and postage payments (`/wallet/NAME`) [default: namecoind's]
    #[arg(long, value_name = "NAME")]
    namecoind_wallet: Option<String>,
    /// Satoshis per packet our mix asks (goes in the published record) [default: 0]
    #[arg(long, value_name = "SAT")]
    mix_fee: Option<u64>,
    /// Drop packets that carry no valid postage for this mix
    #[arg(long)]
    require_postage: bool,
    /// Confirmations postage needs [default: 1; 0 on regtest = mempool is enough]
    #[arg(long, value_name = "N")]
    postage_confirmations: Option<u64>,
    /// Mixes per message when `bump send` names neither --via nor --hops [default: 3]
    #[arg(long, value_name = "N")]
    hops: Option<usize>,
    /// Seconds between looks at the chain for publishing and renewing names [default: 10; 1 on regtest]
    #[arg(long, value_name = "SECS")]
    name_poll: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::from(141);
                }
            }
            eprintln!("bump: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Parse a duration: plain seconds, or a number with s, m, h or d.
fn parse_duration(s: &str) -> Result<u32> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    let n: u32 = num
        .parse()
        .map_err(|_| anyhow!("bad duration {s:?}: use seconds or a number with s, m, h or d"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("duration {s:?} is too long"))
}

struct Ctx {
    network: Network,
    datadir: PathBuf,
    netdir: PathBuf,
    conf: ConfFile,
    connect: Option<SocketAddr>,
    user_password: Option<(String, String)>,
}

impl Ctx {
    fn from_cli(cli: &Cli) -> Result<Ctx> {
        let datadir = match &cli.datadir {
            Some(d) => d.clone(),
            None => config::default_datadir()?,
        };
        let conf = ConfFile::load(&datadir)?;
        let flag = if cli.regtest {
            Some(Network::Regtest)
        } else if cli.testnet {
            Some(Network::Testnet)
        } else {
            cli.network
        };
        let network = config::resolve_network(flag, &conf)?;
        let netdir = config::network_dir(&datadir, network);
        let user_password = match (&cli.rpcuser, &cli.rpcpassword) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => match (
                conf.get(network, "rpcuser"),
                conf.get(network, "rpcpassword"),
            ) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                (None, None) => None,
                _ => {
                    bail!("bump.conf sets only one of rpcuser and rpcpassword; set both or neither")
                }
            },
        };
        Ok(Ctx {
            network,
            datadir,
            netdir,
            conf,
            connect: cli.rpc_connect,
            user_password,
        })
    }

    fn target(&self) -> Result<Target> {
        Ok(Target::locate(
            &self.netdir,
            self.network,
            self.connect,
            self.user_password.clone(),
        )?)
    }

    fn client(&self) -> Result<jsonrpsee::http_client::HttpClient> {
        Ok(self.target()?.http(CLIENT_MAX_BODY)?)
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Write all of `bytes` to stdout at once (nothing half-written on an earlier error).
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Cmd::Tag { tag } = &cli.cmd {
        println!("{}", Tag::from_arg(tag)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Demo = &cli.cmd {
        init_logging("warn");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(cli::demo::run())?;
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Ctx::from_cli(&cli)?;
    if let Cmd::Keygen = &cli.cmd {
        let existed = ctx.netdir.join(bump::mix::mixer::KEY_FILE).exists();
        let key = bump::mix::mixer::load_or_create_key(&ctx.netdir)?;
        let public = secp256k1::PublicKey::from_secret_key(secp256k1::SECP256K1, &key);
        println!("public key   {}", hex::encode(public.serialize()));
        println!("mix tag      {}", bump::onion::layer::mix_tag(&public));
        eprintln!(
            "{} {}",
            if existed {
                "existing key in"
            } else {
                "new key written to"
            },
            ctx.netdir.join(bump::mix::mixer::KEY_FILE).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Node(args) = &cli.cmd {
        init_logging("info");
        let settings = node_settings(&ctx, args)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(daemon::run(settings))?;
        return Ok(ExitCode::SUCCESS);
    }
    init_logging("warn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(client_command(&ctx, cli.cmd))
}

fn node_settings(ctx: &Ctx, args: &NodeArgs) -> Result<DaemonSettings> {
    let net = ctx.network;
    let conf = &ctx.conf;
    let rpc_bind = match args.rpc_bind {
        Some(a) => a,
        None => conf
            .parsed(net, "rpcbind")?
            .unwrap_or_else(|| config::default_rpc_bind(net)),
    };
    let rpc_bind = config::require_loopback(rpc_bind)?;
    let max_ttl = args
        .max_ttl
        .or(conf.parsed(net, "maxttl")?)
        .unwrap_or(DEFAULT_MAX_TTL);
    if max_ttl < 60 {
        bail!("--max-ttl must be at least 60 seconds");
    }
    let max_message = args
        .max_message_size
        .or(conf.parsed(net, "maxmessagesize")?)
        .unwrap_or(bump::message::DEFAULT_MAX_MESSAGE);
    if max_message > bump::message::MAX_FRAMEABLE {
        bail!(
            "--max-message-size can be at most {} bytes",
            bump::message::MAX_FRAMEABLE
        );
    }
    let max_packets = args
        .max_packets
        .or(conf.parsed(net, "maxpackets")?)
        .unwrap_or(bump::store::DEFAULT_MAX_PACKETS);
    let _ = &ctx.datadir;
    let mut p2p = bump::p2p::P2pConfig::new(net);
    p2p.listen = match args.listen {
        Some(a) => Some(a),
        None => conf.parsed(net, "listen")?,
    };
    p2p.connect = if args.connect.is_empty() {
        conf.get_all(net, "connect")
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        args.connect.clone()
    };
    p2p.addnode = args.addnode.clone();
    p2p.addnode
        .extend(conf.get_all(net, "addnode").into_iter().map(String::from));
    p2p.max_inbound = args
        .max_inbound
        .or(conf.parsed(net, "maxinbound")?)
        .unwrap_or(p2p.max_inbound);
    p2p.max_outbound = args
        .max_outbound
        .or(conf.parsed(net, "maxoutbound")?)
        .unwrap_or(p2p.max_outbound);
    let trickle: u64 = args.trickle.or(conf.parsed(net, "trickle")?).unwrap_or(0);
    p2p.trickle = (trickle > 0).then(|| Duration::from_millis(trickle));
    let ban: u64 = args
        .ban_time
        .or(conf.parsed(net, "bantime")?)
        .unwrap_or(p2p.ban_time.as_secs());
    p2p.ban_time = Duration::from_secs(ban);
    p2p.peers_file = Some(ctx.netdir.join(config::PEERS_FILE));
    let own_via = args
        .cover_via
        .iter()
        .map(|k| {
            bump::onion::layer::parse_mix_key(k)
                .ok_or_else(|| anyhow!("--cover-via: not a mix public key (66 hex digits): {k:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let has_namecoind = args.namecoind.is_some() || conf.get(net, "namecoind").is_some();
    let own_tau = match args.cover_tau.as_deref() {
        Some(name) => TauLevel::named(name).ok_or_else(|| {
            anyhow!(
                "--cover-tau: unknown level {name:?}; the levels are {}",
                TauLevel::names()
            )
        })?,
        None => TauLevel::default_level(),
    };
    let own_tau = TauLevel {
        name: own_tau.name,
        crowd: args.cover_crowd.unwrap_or(own_tau.crowd),
        delay_secs: match args.cover_delay.as_deref() {
            Some(d) => parse_duration(d)? as u64,
            None => own_tau.delay_secs,
        },
    };
    let cover = match args.cover_rate {
        Some(rate) if rate > 0.0 => {
            if own_via.is_empty() && !has_namecoind {
                bail!("--cover-rate needs mixes: give --cover-via with at least one mix key, or --namecoind for the directory");
            }
            Some(bump::mix::cover::CoverConfig {
                per_minute: rate,
                crowd: own_tau.crowd,
                delay_secs: own_tau.delay_secs,
                ttl: max_ttl,
            })
        }
        _ => None,
    };
    if args.loops.is_some_and(|r| r > 0.0) && own_via.is_empty() && !has_namecoind {
        bail!("--loops needs mixes to route through: give --cover-via or --namecoind");
    }
    let loops = bump::mix::loops::LoopConfig {
        per_minute: args.loops.unwrap_or(1.0).max(0.0),
        defend_per_minute: args.defend_rate.unwrap_or(12.0).max(0.0),
        tau: own_tau,
        timeout: match args.loop_timeout.as_deref() {
            Some(d) => Duration::from_secs(parse_duration(d)? as u64),
            None => Duration::from_secs(600),
        },
        ttl: max_ttl,
        ..Default::default()
    };
    let chain = match args
        .namecoind
        .clone()
        .or(conf.get(net, "namecoind").map(String::from))
    {
        None => None,
        Some(url) => {
            let user = args
                .namecoind_user
                .clone()
                .or(conf.get(net, "namecoinduser").map(String::from));
            let pass = args
                .namecoind_password
                .clone()
                .or(conf.get(net, "namecoindpassword").map(String::from));
            let auth = match (user, pass) {
                (Some(u), Some(p)) => namecoin::rpc::Auth::UserPass(u, p),
                _ => {
                    let cookie = match args
                        .namecoind_cookie
                        .clone()
                        .or(conf.get(net, "namecoindcookie").map(PathBuf::from))
                    {
                        Some(c) => c,
                        None => {
                            let dir = match args
                                .namecoind_datadir
                                .clone()
                                .or(conf.get(net, "namecoinddatadir").map(PathBuf::from))
                            {
                                Some(d) => d,
                                None => std::env::var_os("HOME")
                                    .map(|h| PathBuf::from(h).join(".namecoin"))
                                    .ok_or_else(|| {
                                        anyhow!("no home directory: pass --namecoind-cookie")
                                    })?,
                            };
                            bump::names::NamecoindSettings::cookie_in(&dir, net)
                        }
                    };
                    namecoin::rpc::Auth::Cookie(cookie)
                }
            };
            let regtest = net == namecoin::Network::Regtest;
            let require: Option<bool> = conf.parsed(net, "requirepostage")?;
            Some(bump::daemon::ChainSettings {
                namecoind: bump::names::NamecoindSettings {
                    url,
                    auth,
                    wallet: args
                        .namecoind_wallet
                        .clone()
                        .or(conf.get(net, "namecoindwallet").map(String::from)),
                },
                mix_fee: args.mix_fee.or(conf.parsed(net, "mixfee")?).unwrap_or(0),
                require_postage: args.require_postage || require.unwrap_or(false),
                postage_confirmations: args
                    .postage_confirmations
                    .or(conf.parsed(net, "postageconfirmations")?)
                    .unwrap_or(if regtest { 0 } else { 1 }),
                poll: Duration::from_secs(
                    args.name_poll
                        .or(conf.parsed(net, "namepoll")?)
                        .unwrap_or(if regtest { 1 } else { 10 })
                        .max(1),
                ),
                default_hops: args
                    .hops
                    .or(conf.parsed(net, "hops")?)
                    .unwrap_or(bump::names::DEFAULT_HOPS),
            })
        }
    };
    Ok(DaemonSettings {
        chain,
        cover,
        own_via,
        loops,
        p2p,
        network: net,
        netdir: ctx.netdir.clone(),
        rpc_bind,
        rpc_user_password: ctx.user_password.clone(),
        limits: Limits {
            max_ttl,
            max_message,
            ..Limits::default()
        },
        store: StoreConfig {
            max_packets,
            ..StoreConfig::default()
        },
        sweep_interval: Duration::from_secs(60),
    })
}

async fn client_command(ctx: &Ctx, cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Send {
            ttl,
            via,
            hops,
            tau,
            crowd,
            delay,
            postage,
            tag,
            file,
        } => {
            let tag = Tag::from_arg(&tag)?;
            let ttl = ttl.as_deref().map(parse_duration).transpose()?;
            let delay = delay
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(u64::from);
            let level = match tau.as_deref() {
                Some(name) => TauLevel::named(name).ok_or_else(|| {
                    anyhow!(
                        "--tau: unknown level {name:?}; the levels are {}",
                        TauLevel::names()
                    )
                })?,
                None => TauLevel::default_level(),
            };
            let (crowd_v, delay_v) = (
                crowd.unwrap_or(level.crowd),
                delay.unwrap_or(level.delay_secs),
            );
            if (crowd.is_some() || delay.is_some())
                && TauLevel::matching(crowd_v, delay_v).is_none()
            {
                eprintln!(
                    "warning: crowd {crowd_v}, delay {delay_v}s is not a standard Tau level ({}); mixes and observers can tell these packets from others",
                    TauLevel::names()
                );
            }

            let data = read_input(&file)?;
            let client = ctx.client()?;
            let status = client.status().await.map_err(classify)?;
            if data.len() > status.max_message_size {
                bail!(
                    "{} is {} bytes, over the node's message limit of {} bytes (see `bump node --max-message-size`)",
                    file.display(),
                    data.len(),
                    status.max_message_size
                );
            }
            let via = (!via.is_empty()).then_some(via);
            let params = SendParams {
                tag: tag.to_hex(),
                data: B64.encode(&data),
                ttl,
                via,
                hops,
                tau: tau.clone(),
                crowd,
                delay,
                postage: (!postage.is_empty()).then_some(postage),
            };
            let r = client.send(params).await.map_err(classify)?;
            println!("{}", r.msgid);
        }
        Cmd::Get {
            json,
            partial,
            list,
            last,
            id,
            tag,
        } => {
            let tag = Tag::from_arg(&tag)?;
            let client = ctx.client()?;
            if json {
                let packets = client.get_packets(tag.to_hex()).await.map_err(classify)?;
                let mut out = String::new();
                for p in &packets {
                    out.push_str(&serde_json::to_string(p)?);
                    out.push('\n');
                }
                write_stdout(out.as_bytes())?;
                return Ok(ExitCode::SUCCESS);
            }
            let opts = GetOptions {
                msgid: id.clone(),
                last,
                no_data: partial || list,
            };
            let r = client
                .get_messages(tag.to_hex(), Some(opts))
                .await
                .map_err(classify)?;
            if partial {
                let mut out = String::new();
                for p in &r.partial {
                    out.push_str(&format!("{} {}/{} parts\n", p.msgid, p.have, p.count));
                }
                write_stdout(out.as_bytes())?;
                return Ok(ExitCode::SUCCESS);
            }
            if list {
                let mut out = String::new();
                for m in &r.messages {
                    out.push_str(&format!("{} {} bytes {} parts\n", m.msgid, m.size, m.parts));
                }
                write_stdout(out.as_bytes())?;
                return Ok(ExitCode::SUCCESS);
            }
            if !r.partial.is_empty() {
                eprintln!(
                    "bump: note: {} incomplete message(s) under this tag are not printed; `bump get --partial` lists them",
                    r.partial.len()
                );
            }
            if r.messages.is_empty() {
                match id {
                    Some(id) => bail!("no complete message {id} under tag {tag}"),
                    None => bail!("no complete message under tag {tag}"),
                }
            }
            let mut out = Vec::new();
            for m in &r.messages {
                out.extend(B64.decode(&m.data).context("node sent malformed base64")?);
            }
            write_stdout(&out)?;
        }
        Cmd::Import { file } => {
            let bytes = read_input(&file)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("{} is not UTF-8 JSON", file.display()))?;
            let packets = parse_interchange(&text)
                .map_err(|(i, e)| anyhow!("{}: entry {i}: {e}", file.display()))?;
            if packets.is_empty() {
                bail!("{} holds no packets", file.display());
            }
            let json = packets.iter().map(|p| p.to_json()).collect();
            let r = ctx.client()?.import_packets(json).await.map_err(classify)?;
            println!(
                "imported {} packet(s), {} already held",
                r.accepted, r.duplicates
            );
        }
        Cmd::Export { tag, output } => {
            let tag = Tag::from_arg(&tag)?;
            let packets = ctx
                .client()?
                .get_packets(tag.to_hex())
                .await
                .map_err(classify)?;
            let mut out = String::new();
            for p in &packets {
                out.push_str(&serde_json::to_string(p)?);
                out.push('\n');
            }
            match output {
                Some(path) => {
                    std::fs::write(&path, out)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("exported {} packet(s) to {}", packets.len(), path.display());
                }
                None => write_stdout(out.as_bytes())?,
            }
        }
        Cmd::Status { json } => {
            let s = ctx.client()?.status().await.map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("BuMP node {} on {}", s.version, s.network);
                println!("datadir      {}", s.datadir);
                println!("packets      {} of {} max", s.packets, s.max_packets);
                println!("store size   {} bytes on disk", s.store_bytes_on_disk);
                println!("max ttl      {} s", s.max_ttl);
                println!("max message  {} bytes", s.max_message_size);
                println!("uptime       {} s", s.uptime_secs);
                if let Some(p) = s.p2p {
                    println!("peers        {} ({} BuMP)", p.peers, p.bump_peers);
                    println!("listening    {}", p.listening.as_deref().unwrap_or("no"));
                    println!("sync         {} packets received from peers, {} still to fetch, {} to serve", p.received, p.requested, p.serving);
                }
            }
        }
        Cmd::Watch { tag, count } => {
            let tag = Tag::from_arg(&tag)?;
            let ws = ctx.target()?.ws(CLIENT_MAX_BODY).await?;
            let mut sub: jsonrpsee::core::client::Subscription<serde_json::Value> = ws
                .subscribe(
                    "bump_subscribe",
                    jsonrpsee::rpc_params![tag.to_hex()],
                    "bump_unsubscribe",
                )
                .await
                .map_err(classify)?;
            let mut seen = 0;
            while count.map(|c| seen < c).unwrap_or(true) {
                match sub.next().await {
                    Some(Ok(v)) => {
                        println!("{v}");
                        std::io::stdout().flush()?;
                        seen += 1;
                    }
                    Some(Err(e)) => bail!("subscription error: {e}"),
                    None => bail!("the node closed the subscription"),
                }
            }
        }
        Cmd::Mix { json } => {
            let s = ctx.client()?.mix_status().await.map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("public key   {}", s.public_key);
                println!("mix tag      {}", s.mix_tag);
                println!("held         {} (entries so far {})", s.held, s.entries);
                println!("released     {}", s.released);
                println!("dummies      {} dropped at their hop", s.dummies_dropped);
                if s.uncounted > 0 {
                    println!("uncounted    {} (entered during a loop alarm)", s.uncounted);
                }
                match &s.loops {
                    Some(l) => {
                        println!(
                            "loops        {} sent, {} back in time, {} pending, {} missing{}",
                            l.sent,
                            l.returned,
                            l.pending,
                            l.missing,
                            l.median_rtt_ms
                                .map(|ms| format!(
                                    ", median round trip {:.1} s",
                                    ms as f64 / 1000.0
                                ))
                                .unwrap_or_default()
                        );
                        if l.alarm {
                            println!("ALARM        loops are not coming back (since unix {}): possible (n-1) attack or isolation; only own packets fill crowds", l.alarm_since.unwrap_or(0));
                        }
                    }
                    None => println!("loops        off"),
                }
                for (why, n) in &s.dropped {
                    println!("dropped      {n} ({why})");
                }
            }
        }
        Cmd::Mixes { refresh, json } => {
            let l = ctx.client()?.mixes(Some(refresh)).await.map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                println!(
                    "directory at height {}{}: {} mixes, {} rejected",
                    l.height,
                    if l.stale {
                        " (stale: namecoind unreachable)"
                    } else {
                        ""
                    },
                    l.mixes.len(),
                    l.rejected.len()
                );
                for m in &l.mixes {
                    println!(
                        "{:<24} fee {:>8} sat  key {}  expires in {} blocks{}",
                        m.name,
                        m.record.fee,
                        m.record.key,
                        m.expires_in.unwrap_or(0),
                        m.record
                            .p2p
                            .as_deref()
                            .map(|c| format!("  p2p {c}"))
                            .unwrap_or_default()
                    );
                }
                for r in &l.rejected {
                    println!("{:<24} REJECTED: {}", r.name, r.reason);
                }
            }
        }
        Cmd::Name(NameCmd::Publish {
            label,
            fee,
            p2p,
            wait,
        }) => {
            let client = ctx.client()?;
            let s = client
                .name_publish(label.clone(), fee, p2p)
                .await
                .map_err(classify)?;
            println!("{}: {:?}", s.name, s.stage);
            if wait {
                let mut last = (s.stage, s.last_error.clone());
                // Registration takes 13+ blocks: wait as long as that may take on regtest and
                // report every change; stop with Ctrl-C on a slow chain.
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let states = client.name_status().await.map_err(classify)?;
                    let Some(s) = states.into_iter().find(|x| x.name == s.name) else {
                        bail!("publish state vanished")
                    };
                    if (s.stage, s.last_error.clone()) != last {
                        match &s.last_error {
                            Some(e) => println!("{}: {:?} (waiting: {e})", s.name, s.stage),
                            None => println!("{}: {:?}", s.name, s.stage),
                        }
                        last = (s.stage, s.last_error.clone());
                    }
                    if s.stage == bump::names::publish::Stage::Active {
                        break;
                    }
                }
            }
        }
        Cmd::Name(NameCmd::Status { json }) => {
            let states = ctx.client()?.name_status().await.map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&states)?);
            } else if states.is_empty() {
                println!("no names published (bump name publish LABEL)");
            } else {
                for s in states {
                    println!(
                        "{:<24} {:<16} fee {:>8}  height {:<8} expires in {}{}",
                        s.name,
                        format!("{:?}", s.stage),
                        s.fee,
                        s.height.map(|h| h.to_string()).unwrap_or("-".into()),
                        s.expires_in.map(|h| h.to_string()).unwrap_or("-".into()),
                        s.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Peers { json } => {
            let rows = ctx.client()?.peers().await.map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no peers");
            } else {
                println!(
                    "{:<22} {:<3} {:<5} {:>10} {:>10} {:>5} {:>6}  agent",
                    "address", "dir", "bump", "bytes in", "bytes out", "score", "secs"
                );
                for r in rows {
                    println!(
                        "{:<22} {:<3} {:<5} {:>10} {:>10} {:>5} {:>6}  {}",
                        r.addr,
                        if r.inbound { "in" } else { "out" },
                        if r.bump { "yes" } else { "coin" },
                        r.bytes_in,
                        r.bytes_out,
                        r.score,
                        r.connected_secs,
                        r.user_agent
                    );
                }
            }
        }
        Cmd::Stop => {
            let msg = ctx.client()?.stop().await.map_err(classify)?;
            println!("{msg}");
        }
        Cmd::Node(_) | Cmd::Tag { .. } | Cmd::Demo | Cmd::Keygen => unreachable!("handled before"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30s").unwrap(), 30);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("2d").unwrap(), 172800);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999d").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
