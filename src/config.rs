//! Where a node keeps its files and how it is configured.
//!
//! Datadir layout (default `~/.bump`, `--datadir`): `bump.conf` sits in the datadir root and
//! applies to every network; each network has its own folder, like namecoind — mainnet in the
//! root, `testnet/` and `regtest/` below it. A network folder holds `store/` (segments, index, sled), `.cookie`
//! (RPC credentials, rewritten at every start, removed at clean shutdown) and `rpc.addr` (the
//! address the running node's RPC server listens on, so clients find a port chosen with `:0`).
//!
//! `bump.conf` holds `key=value` lines, `#` comments, and optional `[main]`, `[test]`,
//! `[regtest]` sections whose keys apply only to that network. Command-line flags override it.

use namecoin::Network;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const CONF_FILE: &str = "bump.conf";
pub const COOKIE_FILE: &str = ".cookie";
pub const RPC_ADDR_FILE: &str = "rpc.addr";
/// Address the P2P listener is bound to, while the node runs.
pub const P2P_ADDR_FILE: &str = "p2p.addr";
/// The persisted peer table.
pub const PEERS_FILE: &str = "peers.json";
pub const STORE_DIR: &str = "store";
/// User name in the cookie file, as namecoind writes it.
pub const COOKIE_USER: &str = "__cookie__";

/// Keys `bump.conf` understands.
pub const CONF_KEYS: &[&str] = &[
    "network",
    "regtest",
    "testnet",
    "rpcbind",
    "rpcuser",
    "rpcpassword",
    "maxttl",
    "maxmessagesize",
    "maxpackets",
    "listen",
    "connect",
    "addnode",
    "maxinbound",
    "maxinboundperip",
    "maxinboundpernetgroup",
    "maxoutbound",
    "trickle",
    "bantime",
    "namecoind",
    "namecoindcookie",
    "namecoinddatadir",
    "namecoinduser",
    "namecoindpassword",
    "namecoindwallet",
    "mixfee",
    "requirepostage",
    "postageconfirmations",
    "hops",
    "namepoll",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Syntax {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("bad value for {key}: {msg}")]
    Value { key: String, msg: String },
    #[error("no home directory: pass --datadir")]
    NoHome,
}

/// BuMP's default RPC port per network (namecoind's RPC port + 3).
pub fn default_rpc_port(net: Network) -> u16 {
    net.rpc_port() + 3
}

/// BuMP's default P2P port per network (namecoind's P2P port + 3).
pub fn default_p2p_port(net: Network) -> u16 {
    net.p2p_port() + 3
}

/// `~/.bump`.
pub fn default_datadir() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".bump"))
        .ok_or(ConfigError::NoHome)
}

/// The folder of one network inside a datadir.
pub fn network_dir(datadir: &Path, net: Network) -> PathBuf {
    match net {
        Network::Mainnet => datadir.to_path_buf(),
        Network::Testnet => datadir.join("testnet"),
        Network::Regtest => datadir.join("regtest"),
    }
}

/// Parsed `bump.conf`: top-level keys and per-section keys.
#[derive(Debug, Default, Clone)]
pub struct ConfFile {
    top: HashMap<String, Vec<String>>,
    sections: HashMap<String, HashMap<String, Vec<String>>>,
}

impl ConfFile {
    /// Read `<datadir>/bump.conf`; a missing file is an empty config.
    pub fn load(datadir: &Path) -> Result<ConfFile, ConfigError> {
        let path = datadir.join(CONF_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => ConfFile::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfFile::default()),
            Err(err) => Err(ConfigError::Read { path, err }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<ConfFile, ConfigError> {
        let mut conf = ConfFile::default();
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |msg: String| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                if !matches!(name, "main" | "test" | "regtest") {
                    return Err(err(format!(
                        "unknown section [{name}] (use [main], [test] or [regtest])"
                    )));
                }
                section = Some(name.to_string());
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| err(format!("expected key=value, got {line:?}")))?;
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if !CONF_KEYS.contains(&k.as_str()) {
                return Err(err(format!(
                    "unknown key {k:?}; known keys: {}",
                    CONF_KEYS.join(", ")
                )));
            }
            match &section {
                None => conf.top.entry(k).or_default().push(v),
                Some(s) => conf
                    .sections
                    .entry(s.clone())
                    .or_default()
                    .entry(k)
                    .or_default()
                    .push(v),
            };
        }
        Ok(conf)
    }

    /// The network the file selects at top level, if any.
    pub fn network(&self) -> Result<Option<Network>, ConfigError> {
        if let Some(n) = self.top.get("network").and_then(|v| v.last()) {
            return n
                .parse()
                .map(Some)
                .map_err(|e: namecoin::ParseNetworkError| ConfigError::Value {
                    key: "network".into(),
                    msg: e.to_string(),
                });
        }
        let flag = |k: &str| {
            self.top
                .get(k)
                .and_then(|v| v.last())
                .map(|v| v == "1")
                .unwrap_or(false)
        };
        if flag("regtest") {
            return Ok(Some(Network::Regtest));
        }
        if flag("testnet") {
            return Ok(Some(Network::Testnet));
        }
        Ok(None)
    }

    /// A key's value for `net`: its section wins over the top level; the last line wins.
    pub fn get(&self, net: Network, key: &str) -> Option<&str> {
        self.get_all(net, key).last().copied()
    }

    /// Every value of a repeatable key (e.g. `addnode`) for `net`: top level, then section.
    pub fn get_all(&self, net: Network, key: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .top
            .get(key)
            .map(|v| v.iter().map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if let Some(v) = self.sections.get(net.name()).and_then(|s| s.get(key)) {
            out.extend(v.iter().map(|s| s.as_str()));
        }
        out
    }

    /// Parse a key's value for `net` with `FromStr`.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        net: Network,
        key: &str,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(net, key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e: T::Err| ConfigError::Value {
                key: key.into(),
                msg: format!("{v:?}: {e}"),
            }),
        }
    }
}

/// Pick the network: explicit flag, then `bump.conf`, then mainnet.
pub fn resolve_network(flag: Option<Network>, conf: &ConfFile) -> Result<Network, ConfigError> {
    Ok(match flag {
        Some(n) => n,
        None => conf.network()?.unwrap_or(Network::Mainnet),
    })
}

/// Check that an RPC address is on loopback: the RPC server never listens elsewhere.
pub fn require_loopback(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(ConfigError::Value {
            key: "rpcbind".into(),
            msg: format!("{addr} is not a loopback address; the RPC server listens on 127.0.0.0/8 or ::1 only"),
        })
    }
}

pub fn default_rpc_bind(net: Network) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), default_rpc_port(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_override_top_level() {
        let c = ConfFile::parse(
            "# comment\nregtest=1\nmaxttl=100\n[regtest]\nmaxttl = 50 # trailing\n[main]\nrpcbind=127.0.0.1:1\n",
            Path::new("bump.conf"),
        )
        .unwrap();
        assert_eq!(c.network().unwrap(), Some(Network::Regtest));
        assert_eq!(
            c.parsed::<u32>(Network::Regtest, "maxttl").unwrap(),
            Some(50)
        );
        assert_eq!(
            c.parsed::<u32>(Network::Testnet, "maxttl").unwrap(),
            Some(100)
        );
        assert_eq!(c.get(Network::Regtest, "rpcbind"), None);
        assert_eq!(c.get(Network::Mainnet, "rpcbind"), Some("127.0.0.1:1"));
        let c = ConfFile::parse(
            "addnode=a:1\n[regtest]\naddnode=b:2\naddnode=c:3\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(
            c.get_all(Network::Regtest, "addnode"),
            vec!["a:1", "b:2", "c:3"]
        );
        assert_eq!(c.get_all(Network::Mainnet, "addnode"), vec!["a:1"]);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = ConfFile::parse("maxttl=1\nbogus=2\n", Path::new("x.conf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.conf:2") && e.contains("bogus"), "{e}");
        let e = ConfFile::parse("[moon]\n", Path::new("x.conf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("moon"), "{e}");
        let c = ConfFile::parse("maxttl=soon\n", Path::new("x.conf")).unwrap();
        assert!(c.parsed::<u32>(Network::Mainnet, "maxttl").is_err());
    }

    #[test]
    fn network_dirs_and_loopback() {
        let d = Path::new("/d");
        assert_eq!(network_dir(d, Network::Mainnet), PathBuf::from("/d"));
        assert_eq!(
            network_dir(d, Network::Regtest),
            PathBuf::from("/d/regtest")
        );
        assert!(require_loopback("127.0.0.5:1".parse().unwrap()).is_ok());
        assert!(require_loopback("[::1]:1".parse().unwrap()).is_ok());
        assert!(require_loopback("0.0.0.0:1".parse().unwrap()).is_err());
    }
}
