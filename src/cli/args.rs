//! The command line's shape: global options and the list of commands. Each command's own
//! arguments live beside its code (`cli/<command>.rs`), as in mini-redis's `cmd/`.

use super::{get, mix, name, packets, sealed, send, speakeasy, status};
use bump::settings::NodeArgs;
use clap::{Parser, Subcommand};
use namecoin::Network;
use std::net::SocketAddr;
use std::path::PathBuf;

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
Plain tags are readable by every node: encrypt before sending, e.g.\n  \
gpg -c secret.txt && base64 secret.txt.gpg > msg.dat && bump send '#mytag' msg.dat\n  \
bump get '#mytag' | base64 -d | gpg > decoded\n\
or let BuMP seal it: `bump group new club`, `bump send --group club FILE`, `bump get --group club`;\n\
`bump id new me`, `bump send --to bumpid1... FILE`, `bump inbox`."
)]
pub struct Cli {
    /// Data directory [default: ~/.bump]. Each network has its own folder inside it.
    #[arg(long, global = true, env = "BUMP_DATADIR", value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// Network: main, test or regtest [default: from bump.conf, else main]
    #[arg(long, global = true, value_name = "NET")]
    pub network: Option<Network>,
    /// Same as --network regtest
    #[arg(long, global = true, conflicts_with_all = ["network", "testnet"])]
    pub regtest: bool,
    /// Same as --network test
    #[arg(long, global = true, conflicts_with = "network")]
    pub testnet: bool,
    /// Client: RPC address of the node [default: read from the datadir]
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub rpc_connect: Option<SocketAddr>,
    /// Client: seconds to wait for each answer from the node
    #[arg(
        long,
        global = true,
        env = "BUMP_RPC_TIMEOUT",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub rpc_timeout: u64,
    /// RPC user name (instead of the cookie file); also accepted by `bump node`
    #[arg(long, global = true, requires = "rpcpassword")]
    pub rpcuser: Option<String>,
    /// RPC password (instead of the cookie file); also accepted by `bump node`
    #[arg(long, global = true, requires = "rpcuser")]
    pub rpcpassword: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

impl Cli {
    /// The network the flags name, if any.
    pub fn network_flag(&self) -> Option<Network> {
        if self.regtest {
            Some(Network::Regtest)
        } else if self.testnet {
            Some(Network::Testnet)
        } else {
            self.network
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a node: store packets and serve the JSON-RPC API on loopback until SIGINT/SIGTERM
    /// (a flag given twice takes its last value)
    #[command(args_override_self = true)]
    Node(Box<NodeArgs>),
    /// Send FILE (`-` for stdin) under TAG; prints the message id once the node has it on disk
    Send(send::SendArgs),
    /// Write the complete messages under TAG to stdout, byte for byte, oldest first
    Get(get::GetArgs),
    /// Print the 40-hex tag of a tag argument (human tags are hashed); needs no node
    Tag { tag: String },
    /// Create this node's mix key if it has none (DATADIR/<net>/mixkey, mode 0600) and print its
    /// public key and mix tag; needs no node (a node also creates it on first start)
    Keygen,
    /// Store packets from FILE (`-` for stdin): JSON lines, a JSON array, or one JSON object
    Import(packets::ImportArgs),
    /// Write the packets under TAG as JSON lines, for `bump import` on another node
    Export(packets::ExportArgs),
    /// Show the node's status
    Status(status::JsonFlag),
    /// Print each new complete message under TAG as a JSON line as it arrives (WebSocket)
    Watch(get::WatchArgs),
    /// Identities for sealed messages: new, list, show, export, import (keyring in the datadir;
    /// needs no node)
    #[command(subcommand)]
    Id(sealed::IdCmd),
    /// Groups for sealed messages: new, join (invite or passphrase), invite, list, leave (needs
    /// no node)
    #[command(subcommand)]
    Group(sealed::GroupCmd),
    /// Print the sealed direct messages to your identities, byte for byte (`--json`: sender,
    /// signature, time)
    Inbox(sealed::InboxArgs),
    /// Show this node's mix: public key (for others' --via), tag, pool, released, dropped
    Mix(status::JsonFlag),
    /// Publish this node's mix record as a Namecoin name, or show what is published
    #[command(subcommand)]
    Name(name::NameCmd),
    /// List the mix directory (every bump/ name, validated); rejected records with the reason
    Mixes(mix::MixesArgs),
    /// List the node's peers
    Peers(status::JsonFlag),
    /// Stop the running node cleanly
    Stop,
    /// Serve the Speak Easy forum on 127.0.0.1 for the local node (prints a login URL): boards
    /// and threads in compartments of a clearance tree, every post sealed and mixed
    #[command(visible_alias = "se")]
    Speakeasy(speakeasy::SpeakEasyArgs),
    /// Run a self-contained demo in a temporary datadir and exit (0 on success); with
    /// --speakeasy, a two-node, three-member Speak Easy forum served until Ctrl-C
    #[cfg(feature = "demo")]
    Demo {
        /// Serve a ready Speak Easy network (admin, Bob, Carol) and print their login URLs
        #[arg(long)]
        speakeasy: bool,
    },
}
