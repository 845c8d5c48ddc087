//! Namecoin networks (mainnet, testnet3, regtest) and their parameters, as in namecoin-core's
//! `kernel/chainparams.cpp` and `chainparamsbase.cpp`.

use std::fmt;
use std::str::FromStr;

/// One of the three Namecoin networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    Mainnet,
    Testnet,
    Regtest,
}

/// A network name that is not one of `main`, `test`, `regtest` (or their aliases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network '{0}': expected one of main, test, regtest")]
pub struct ParseNetworkError(pub String);

impl Network {
    pub const ALL: [Network; 3] = [Network::Mainnet, Network::Testnet, Network::Regtest];

    /// The four magic bytes that start every P2P message on this network.
    pub fn magic(self) -> [u8; 4] {
        match self {
            Network::Mainnet => [0xf9, 0xbe, 0xb4, 0xfe],
            Network::Testnet => [0xfa, 0xbf, 0xb5, 0xfe],
            Network::Regtest => [0xfa, 0xbf, 0xb5, 0xda],
        }
    }

    /// namecoind's default P2P port.
    pub fn p2p_port(self) -> u16 {
        match self {
            Network::Mainnet => 8334,
            Network::Testnet => 18334,
            Network::Regtest => 18444,
        }
    }

    /// namecoind's default JSON-RPC port.
    pub fn rpc_port(self) -> u16 {
        match self {
            Network::Mainnet => 8336,
            Network::Testnet => 18336,
            Network::Regtest => 18443,
        }
    }

    /// Human-readable part of bech32 addresses.
    pub fn bech32_hrp(self) -> &'static str {
        match self {
            Network::Mainnet => "nc",
            Network::Testnet => "tn",
            Network::Regtest => "ncrt",
        }
    }

    /// Version byte of base58 P2PKH addresses.
    pub fn p2pkh_prefix(self) -> u8 {
        match self {
            Network::Mainnet => 52,
            Network::Testnet | Network::Regtest => 111,
        }
    }

    /// Version byte of base58 P2SH addresses.
    pub fn p2sh_prefix(self) -> u8 {
        match self {
            Network::Mainnet => 13,
            Network::Testnet | Network::Regtest => 196,
        }
    }

    /// Blocks a name lives after its last update (names/main.h: 36,000; 30 on regtest).
    pub fn name_expiration_depth(self) -> u64 {
        match self {
            Network::Mainnet | Network::Testnet => 36_000,
            Network::Regtest => 30,
        }
    }

    /// Confirmations a name_new needs before its name_firstupdate is mined (all networks).
    pub const MIN_FIRSTUPDATE_DEPTH: u64 = 12;

    /// Subfolder of a datadir that holds this network's files, as namecoind lays it out:
    /// mainnet lives in the datadir root, the others in `testnet3/` and `regtest/`.
    pub fn namecoind_subdir(self) -> Option<&'static str> {
        match self {
            Network::Mainnet => None,
            Network::Testnet => Some("testnet3"),
            Network::Regtest => Some("regtest"),
        }
    }

    /// Short name used on command lines and in `getblockchaininfo`'s `chain` field.
    pub fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "main",
            Network::Testnet => "test",
            Network::Regtest => "regtest",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Network {
    type Err = ParseNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "main" | "mainnet" => Ok(Network::Mainnet),
            "test" | "testnet" | "testnet3" => Ok(Network::Testnet),
            "regtest" => Ok(Network::Regtest),
            _ => Err(ParseNetworkError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.name().parse::<Network>().unwrap(), n);
        }
        assert!("bitcoin".parse::<Network>().is_err());
    }

    #[test]
    fn magics_are_distinct_and_match_namecoin_core() {
        assert_eq!(Network::Regtest.magic(), [0xfa, 0xbf, 0xb5, 0xda]);
        assert_ne!(Network::Mainnet.magic(), Network::Testnet.magic());
        assert_ne!(Network::Testnet.magic(), Network::Regtest.magic());
    }
}
