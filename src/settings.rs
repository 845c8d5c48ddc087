//! Node settings: `bump node`'s flags merged with `bump.conf` into [`DaemonSettings`].
//!
//! Rule for every setting: the command-line flag wins, then the key in the network's section
//! of `bump.conf`, then the key at the top of `bump.conf`, then the built-in default. Repeatable
//! keys (`connect`, `addnode`) add up from the conf file; `--connect` given on the command line
//! replaces the conf file's list. Bad values are refused with the flag or key named.

use crate::config::{self, ConfFile, ConfigError};
use crate::daemon::DaemonSettings;
use crate::mix::tau::Tau;
use crate::node::Limits;
use crate::packet::DEFAULT_MAX_TTL;
use crate::store::StoreConfig;
use namecoin::Network;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
}

macro_rules! invalid {
    ($($t:tt)*) => { SettingsError::Invalid(format!($($t)*)) };
}

/// Parse a duration: plain seconds, or a number with s, m, h or d.
pub fn parse_duration(s: &str) -> Result<u32, SettingsError> {
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
        .map_err(|_| invalid!("bad duration {s:?}: use seconds or a number with s, m, h or d"))?;
    n.checked_mul(mult)
        .ok_or_else(|| invalid!("duration {s:?} is too long"))
}

/// What every command resolves first: the network, the datadir and its network folder, the
/// conf file, and RPC credentials given instead of the cookie.
#[derive(Debug, Clone)]
pub struct Base {
    pub network: Network,
    pub datadir: PathBuf,
    pub netdir: PathBuf,
    pub conf: ConfFile,
    pub user_password: Option<(String, String)>,
}

impl Base {
    /// `network`: from `--network`/`--regtest`/`--testnet`, if any; `user_password`: from
    /// `--rpcuser`/`--rpcpassword`, if given.
    pub fn resolve(
        datadir: Option<PathBuf>,
        network: Option<Network>,
        user_password: Option<(String, String)>,
    ) -> Result<Base, SettingsError> {
        let datadir = match datadir {
            Some(d) => d,
            None => config::default_datadir()?,
        };
        let conf = ConfFile::load(&datadir)?;
        let network = config::resolve_network(network, &conf)?;
        let netdir = config::network_dir(&datadir, network);
        let user_password = match user_password {
            Some(up) => Some(up),
            None => match (
                conf.get(network, "rpcuser"),
                conf.get(network, "rpcpassword"),
            ) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                (None, None) => None,
                _ => {
                    return Err(invalid!(
                        "bump.conf sets only one of rpcuser and rpcpassword; set both or neither"
                    ))
                }
            },
        };
        Ok(Base {
            network,
            datadir,
            netdir,
            conf,
            user_password,
        })
    }
}

/// Cover packets per minute by default, when the node has mixes to route through: enough
/// that on a quiet network a standard-level message finds its crowds (docs/anonymity.md).
pub const DEFAULT_COVER_RATE: f64 = 2.0;

/// `bump node`'s flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// JSON-RPC listen address, loopback only; port 0 picks a free port (written to DATADIR/<net>/rpc.addr)
    /// [default: 127.0.0.1:8339 main, 18339 test, 18446 regtest]
    #[arg(long, value_name = "ADDR:PORT")]
    pub rpc_bind: Option<SocketAddr>,
    /// Longest accepted packet time-to-live, in seconds [default: 172800 = 48h]
    #[arg(long, value_name = "SECS")]
    pub max_ttl: Option<u32>,
    /// Largest message `send` accepts, in bytes [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Store quota in packets (1 KiB each); when full, expired packets are swept, then the
    /// packet with the least work per TTL makes room for one with more [default: 1048576]
    #[arg(long, value_name = "N")]
    pub max_packets: Option<u64>,
    /// Rebuild the packet index from the segment files at start (as a missing or damaged
    /// index is rebuilt without asking); damaged records are reported by `bump status`
    #[arg(long)]
    pub reindex: bool,
    /// Accept P2P connections on this address, e.g. 0.0.0.0:8337 (port 0 = any free port,
    /// written to DATADIR/<net>/p2p.addr) [default: no listening]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Connect only to this peer (repeatable); no other outbound connections are made
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Vec<String>,
    /// Also keep a connection to this peer (repeatable), e.g. your namecoind at 127.0.0.1:8334
    #[arg(long, value_name = "HOST:PORT")]
    pub addnode: Vec<String>,
    /// Most inbound P2P connections [default: 64]
    #[arg(long, value_name = "N")]
    pub max_inbound: Option<usize>,
    /// Most inbound connections from one IP address (raise it for many nodes behind one
    /// address, e.g. a test network on loopback) [default: 8]
    #[arg(long, value_name = "N")]
    pub max_inbound_per_ip: Option<usize>,
    /// Most inbound connections from one network group, IPv4 /24 or IPv6 /48 [default: 16]
    #[arg(long, value_name = "N")]
    pub max_inbound_per_netgroup: Option<usize>,
    /// Most outbound connections picked from the peer table [default: 8]
    #[arg(long, value_name = "N")]
    pub max_outbound: Option<usize>,
    /// Announce new packets after a random (Poisson) delay with this mean, in milliseconds,
    /// which makes it harder to tell which node a packet started at [default: 0 = at once]
    #[arg(long, value_name = "MS")]
    pub trickle: Option<u64>,
    /// How long a misbehaving peer's IP stays banned, in seconds [default: 86400]
    #[arg(long, value_name = "SECS")]
    pub ban_time: Option<u64>,
    /// Cover traffic: this many dummy packets per minute on average (Poisson), started in our
    /// own pool like a real send, routed through 1 to 3 random mixes and dropped at their last
    /// hop; they also fill the crowds that let messages leave on a quiet network
    /// [default: 2 when there are mixes to route through; 0 = off]
    #[arg(long, value_name = "PER_MIN")]
    pub cover_rate: Option<f64>,
    /// Publish this node's mix key as a signed record on the bus (docs/protocol.md §6.7), so
    /// that every node can route through it, and route through the mixes other nodes publish
    /// [default: true]
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub announce_mix: Option<bool>,
    /// Mixes (public keys) that cover traffic and loop packets go through [default: the
    /// Namecoin directory's mixes that ask no fee, with --namecoind]
    #[arg(long, value_name = "KEY,KEY,...", value_delimiter = ',')]
    pub cover_via: Vec<String>,
    /// Tau level of cover and loop packets: none, low, standard, high; use the level your real
    /// traffic uses [default: standard]
    #[arg(long, value_name = "LEVEL")]
    pub cover_tau: Option<String>,
    /// Expert: Tau minimum crowd of cover and loop packets, overriding --cover-tau
    #[arg(long, value_name = "K")]
    pub cover_crowd: Option<u64>,
    /// Expert: Tau minimum delay of cover and loop packets, e.g. 30s, overriding --cover-tau
    #[arg(long, value_name = "DURATION")]
    pub cover_delay: Option<String>,
    /// Loop packets per minute (Poisson): the mix sends its own packets through two other
    /// mixes and back to itself; when most stop coming back it suspects an (n-1) attack and
    /// lets only its own packets fill crowds (docs/anonymity.md) [default: 1 when there are
    /// mixes to route through; 0 = off]
    #[arg(long, value_name = "PER_MIN")]
    pub loops: Option<f64>,
    /// Loop packets per minute while that alarm is raised [default: 12]
    #[arg(long, value_name = "PER_MIN")]
    pub defend_rate: Option<f64>,
    /// A loop packet not back after this long counts as missing, e.g. 10m [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub loop_timeout: Option<String>,
    /// namecoind's JSON-RPC URL, e.g. http://127.0.0.1:8336; turns on mix names, the
    /// directory, `--hops` and postage [default: none]
    #[arg(long, value_name = "URL")]
    pub namecoind: Option<String>,
    /// namecoind's cookie file [default: NAMECOIND_DATADIR/<network>/.cookie]
    #[arg(long, value_name = "FILE")]
    pub namecoind_cookie: Option<PathBuf>,
    /// namecoind's datadir, to find its cookie [default: ~/.namecoin]
    #[arg(long, value_name = "DIR")]
    pub namecoind_datadir: Option<PathBuf>,
    /// namecoind rpcuser (instead of the cookie)
    #[arg(long, value_name = "USER", requires = "namecoind_password")]
    pub namecoind_user: Option<String>,
    /// namecoind rpcpassword
    #[arg(long, value_name = "PASSWORD", requires = "namecoind_user")]
    pub namecoind_password: Option<String>,
    /// namecoind wallet for names and postage payments (`/wallet/NAME`) [default: namecoind's]
    #[arg(long, value_name = "NAME")]
    pub namecoind_wallet: Option<String>,
    /// Satoshis per packet our mix asks (goes in the published record) [default: 0]
    #[arg(long, value_name = "SAT")]
    pub mix_fee: Option<u64>,
    /// Drop packets that carry no valid postage for this mix
    #[arg(long)]
    pub require_postage: bool,
    /// Confirmations postage needs [default: 1; 0 on regtest = mempool is enough]
    #[arg(long, value_name = "N")]
    pub postage_confirmations: Option<u64>,
    /// Mixes per message when `bump send` names neither --via nor --hops [default: 3]
    #[arg(long, value_name = "N")]
    pub hops: Option<usize>,
    /// Seconds between looks at the chain for publishing and renewing names [default: 10; 1 on regtest]
    #[arg(long, value_name = "SECS")]
    pub name_poll: Option<u64>,
}

/// Merge flags and `bump.conf` into a node's settings.
pub fn node_settings(ctx: &Base, args: &NodeArgs) -> Result<DaemonSettings, SettingsError> {
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
        return Err(invalid!("--max-ttl must be at least 60 seconds"));
    }
    let max_message = args
        .max_message_size
        .or(conf.parsed(net, "maxmessagesize")?)
        .unwrap_or(crate::message::DEFAULT_MAX_MESSAGE);
    if max_message > crate::message::MAX_FRAMEABLE {
        return Err(invalid!(
            "--max-message-size can be at most {} bytes",
            crate::message::MAX_FRAMEABLE
        ));
    }
    let max_packets = args
        .max_packets
        .or(conf.parsed(net, "maxpackets")?)
        .unwrap_or(crate::store::DEFAULT_MAX_PACKETS);
    let mut p2p = crate::p2p::P2pConfig::new(net);
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
    p2p.max_inbound_per_ip = args
        .max_inbound_per_ip
        .or(conf.parsed(net, "maxinboundperip")?)
        .unwrap_or(p2p.max_inbound_per_ip);
    p2p.max_inbound_per_netgroup = args
        .max_inbound_per_netgroup
        .or(conf.parsed(net, "maxinboundpernetgroup")?)
        .unwrap_or(p2p.max_inbound_per_netgroup);
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
            crate::onion::layer::parse_mix_key(k)
                .ok_or_else(|| invalid!("--cover-via: not a mix public key (66 hex digits): {k:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let has_namecoind = args.namecoind.is_some() || conf.get(net, "namecoind").is_some();
    let announce_mix = args
        .announce_mix
        .or(conf.parsed(net, "announcemix")?)
        .unwrap_or(true);
    let default_hops = args
        .hops
        .or(conf.parsed(net, "hops")?)
        .unwrap_or(crate::names::DEFAULT_HOPS);
    let can_route = !own_via.is_empty() || has_namecoind || announce_mix;
    let own_tau = Tau::resolve(
        args.cover_tau.as_deref(),
        args.cover_crowd,
        args.cover_delay
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .map(u64::from),
    )
    .map_err(|e| invalid!("--cover-tau: {e}"))?;
    let cover_rate = args
        .cover_rate
        .or(conf.parsed(net, "coverrate")?)
        .unwrap_or(if can_route { DEFAULT_COVER_RATE } else { 0.0 });
    let cover = match cover_rate {
        rate if rate > 0.0 => {
            if !can_route {
                return Err(invalid!("--cover-rate needs mixes: give --cover-via with at least one mix key, --namecoind for the directory, or leave --announce-mix on"));
            }
            Some(crate::mix::cover::CoverConfig {
                per_minute: rate,
                tau: own_tau,
                ttl: max_ttl,
            })
        }
        _ => None,
    };
    if args.loops.is_some_and(|r| r > 0.0) && !can_route {
        return Err(invalid!(
            "--loops needs mixes to route through: give --cover-via, --namecoind, or leave --announce-mix on"
        ));
    }
    let loops = crate::mix::loops::LoopConfig {
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
                                        invalid!("no home directory: pass --namecoind-cookie")
                                    })?,
                            };
                            crate::names::NamecoindSettings::cookie_in(&dir, net)
                        }
                    };
                    namecoin::rpc::Auth::Cookie(cookie)
                }
            };
            let regtest = net == namecoin::Network::Regtest;
            let require: Option<bool> = conf.parsed(net, "requirepostage")?;
            Some(crate::daemon::ChainSettings {
                namecoind: crate::names::NamecoindSettings {
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
                    .unwrap_or(crate::names::DEFAULT_HOPS),
            })
        }
    };
    Ok(DaemonSettings {
        chain,
        announce_mix,
        default_hops,
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
            reindex: args.reindex,
            ..StoreConfig::default()
        },
        sweep_interval: Duration::from_secs(60),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn base(conf: &str) -> Base {
        Base {
            network: Network::Regtest,
            datadir: PathBuf::from("/d"),
            netdir: PathBuf::from("/d/regtest"),
            conf: ConfFile::parse(conf, Path::new("bump.conf")).unwrap(),
            user_password: None,
        }
    }

    fn err(conf: &str, args: NodeArgs) -> String {
        node_settings(&base(conf), &args).unwrap_err().to_string()
    }

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
    fn defaults_without_flags_or_conf() {
        let s = node_settings(&base(""), &NodeArgs::default()).unwrap();
        assert_eq!(s.rpc_bind, config::default_rpc_bind(Network::Regtest));
        assert_eq!(s.limits.max_ttl, DEFAULT_MAX_TTL);
        assert_eq!(s.store.max_packets, crate::store::DEFAULT_MAX_PACKETS);
        assert!(s.chain.is_none());
        // Every node a mix: its record on the bus, cover on, 3 hops.
        assert!(s.announce_mix);
        assert_eq!(s.default_hops, 3);
        assert_eq!(
            s.cover.as_ref().map(|c| c.per_minute),
            Some(DEFAULT_COVER_RATE)
        );
        assert_eq!(s.p2p.trickle, None);
        assert_eq!(
            s.p2p.peers_file,
            Some(PathBuf::from("/d/regtest/peers.json"))
        );
        assert_eq!(
            s.loops.tau,
            crate::mix::tau::TauLevel::default_level().into()
        );
    }

    #[test]
    fn flag_beats_section_beats_top_level() {
        let conf = "maxttl=100\nmaxpackets=5\naddnode=a:1\nconnect=c:1\nmaxinboundperip=3\n[regtest]\nmaxttl=200\naddnode=b:2\n";
        let s = node_settings(&base(conf), &NodeArgs::default()).unwrap();
        assert_eq!(s.limits.max_ttl, 200, "section over top level");
        assert_eq!(s.store.max_packets, 5);
        assert_eq!(s.p2p.addnode, vec!["a:1", "b:2"]);
        assert_eq!(s.p2p.connect, vec!["c:1"]);
        assert_eq!(s.p2p.max_inbound_per_ip, 3);
        assert_eq!(s.p2p.max_inbound_per_netgroup, 16, "default");
        let args = NodeArgs {
            max_ttl: Some(300),
            addnode: vec!["f:9".into()],
            connect: vec!["g:9".into()],
            ..Default::default()
        };
        let s = node_settings(&base(conf), &args).unwrap();
        assert_eq!(s.limits.max_ttl, 300, "flag over conf");
        assert_eq!(s.p2p.addnode, vec!["f:9", "a:1", "b:2"], "addnode adds up");
        assert_eq!(
            s.p2p.connect,
            vec!["g:9"],
            "--connect replaces the conf list"
        );
    }

    #[test]
    fn bad_values_name_the_flag_or_key() {
        assert!(err("rpcbind=0.0.0.0:1\n", NodeArgs::default()).contains("loopback"));
        assert!(err("maxttl=soon\n", NodeArgs::default()).contains("maxttl"));
        let e = err(
            "",
            NodeArgs {
                max_ttl: Some(10),
                ..Default::default()
            },
        );
        assert!(e.contains("--max-ttl"), "{e}");
        let e = err(
            "",
            NodeArgs {
                cover_rate: Some(2.0),
                announce_mix: Some(false),
                ..Default::default()
            },
        );
        assert!(e.contains("--cover-rate needs mixes"), "{e}");
        let e = err(
            "",
            NodeArgs {
                cover_tau: Some("medium".into()),
                ..Default::default()
            },
        );
        assert!(e.contains("--cover-tau") && e.contains("standard"), "{e}");
        let e = err(
            "",
            NodeArgs {
                cover_via: vec!["nope".into()],
                ..Default::default()
            },
        );
        assert!(e.contains("--cover-via"), "{e}");
    }

    #[test]
    fn namecoind_auth_and_regtest_defaults() {
        let args = NodeArgs {
            namecoind: Some("http://127.0.0.1:1".into()),
            namecoind_datadir: Some(PathBuf::from("/nc")),
            ..Default::default()
        };
        let s = node_settings(&base("mixfee=7\n"), &args).unwrap();
        let c = s.chain.unwrap();
        assert_eq!(c.mix_fee, 7);
        assert_eq!(c.postage_confirmations, 0, "regtest: mempool is enough");
        assert_eq!(c.poll, Duration::from_secs(1));
        match c.namecoind.auth {
            namecoin::rpc::Auth::Cookie(p) => {
                assert_eq!(p, PathBuf::from("/nc/regtest/.cookie"))
            }
            other => panic!("{other:?}"),
        }
        let s = node_settings(
            &base("namecoind=http://x:1\nnamecoinduser=u\nnamecoindpassword=p\n"),
            &NodeArgs::default(),
        )
        .unwrap();
        assert!(matches!(
            s.chain.unwrap().namecoind.auth,
            namecoin::rpc::Auth::UserPass(..)
        ));
    }

    #[test]
    fn base_reads_credentials_from_the_conf_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bump.conf"), "regtest=1\nrpcuser=u\n").unwrap();
        let e = Base::resolve(Some(dir.path().into()), None, None).unwrap_err();
        assert!(e.to_string().contains("only one of rpcuser"), "{e}");
        std::fs::write(
            dir.path().join("bump.conf"),
            "regtest=1\nrpcuser=u\nrpcpassword=p\n",
        )
        .unwrap();
        let b = Base::resolve(Some(dir.path().into()), None, None).unwrap();
        assert_eq!(b.network, Network::Regtest);
        assert_eq!(b.netdir, dir.path().join("regtest"));
        assert_eq!(b.user_password, Some(("u".into(), "p".into())));
    }
}
