//! What every client command starts from: the resolved datadir, network and credentials
//! ([`bump::settings::Base`]), how to reach the node's RPC, and the two I/O rules of the
//! command line — input from a file or `-`, output written to stdout whole or not at all.

use anyhow::{Context, Result};
use bump::rpc::client::Target;
use bump::settings::Base;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest RPC body the client sends or accepts.
pub const CLIENT_MAX_BODY: u32 = 1 << 30;

pub struct Ctx {
    pub base: Base,
    pub connect: Option<SocketAddr>,
    /// How long to wait for each RPC answer.
    pub timeout: std::time::Duration,
}

impl Ctx {
    pub fn target(&self) -> Result<Target> {
        Ok(Target::locate(
            &self.base.netdir,
            self.base.network,
            self.connect,
            self.base.user_password.clone(),
        )?
        .with_timeout(self.timeout))
    }

    pub fn client(&self) -> Result<jsonrpsee::http_client::HttpClient> {
        Ok(self.target()?.http(CLIENT_MAX_BODY)?)
    }
}

/// The bytes of FILE, or of stdin for `-`, read as a stream and refused as soon as they pass
/// `limit` bytes (so `/dev/zero` or a huge sparse file costs `limit`, not its size).
pub fn read_input(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let name = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot read {name}"))?)
    };
    let mut buf = Vec::new();
    reader
        .take(limit.saturating_add(1) as u64)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {name}"))?;
    if buf.len() > limit {
        return Err(TooLarge { name, limit }.into());
    }
    Ok(buf)
}

/// Input over the size the command accepts.
#[derive(Debug, thiserror::Error)]
#[error("{name} is over {limit} bytes")]
pub struct TooLarge {
    pub name: String,
    pub limit: usize,
}

/// Write all of `bytes` to stdout at once (nothing half-written on an earlier error).
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Log to stderr at `$RUST_LOG` (else `default`). The JSON-RPC library is held at `info`
/// whatever `$RUST_LOG` asks: at `debug` and `trace` it writes request parameters and
/// replies, which carry keyring secrets, passphrases and message bytes.
pub fn init_logging(default: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A static filter (not a closure) so that disabled call sites stay free.
    let no_rpc_bodies = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::TRACE)
        .with_target("jsonrpsee", tracing::level_filters::LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .with_filter(no_rpc_bodies),
        )
        .init();
}
