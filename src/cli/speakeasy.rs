//! `bump speakeasy` (alias `bump se`): serve the Speak Easy forum (docs/speakeasy.md) on
//! 127.0.0.1, talking to the local node over its RPC. Prints the URL with a one-time login
//! token on stdout (like Jupyter) and serves until interrupted.

use super::ctx::Ctx;
use anyhow::{Context, Result};
use bump::speakeasy::app::{self, App, SendOpts};
use clap::Args;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Args)]
pub struct SpeakEasyArgs {
    /// Port on 127.0.0.1 to serve on (0: any free port)
    #[arg(long, default_value_t = 8470)]
    port: u16,
    /// Where Speak Easy keeps its pseudonyms and keys [default: DATADIR/<net>/speakeasy];
    /// set $BUMP_SE_PASSPHRASE to keep them encrypted at rest (argon2id + XChaCha20-Poly1305)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Tau level of posts at every mix: none, low, standard, high [default: the node's, standard]
    #[arg(long)]
    tau: Option<String>,
    /// Mixes per post [default: the node's: 3 when it has mixes, else none, and the pages say so]
    #[arg(long)]
    hops: Option<usize>,
}

pub async fn run(ctx: &Ctx, a: SpeakEasyArgs) -> Result<()> {
    let dir = a.dir.unwrap_or_else(|| ctx.base.netdir.join("speakeasy"));
    let target = ctx.target()?;
    let app = App::open(
        dir.clone(),
        target,
        SendOpts {
            tau: a.tau,
            hops: a.hops,
        },
    )?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, a.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let (url, serve) = bump::speakeasy::web::serve(app.clone(), listener).await?;
    tokio::spawn(app::run_reader(app));
    println!("{url}");
    eprintln!(
        "Speak Easy serving on {} (keys in {}); open the URL above in a browser on this machine. Ctrl-C stops.",
        url.split("/login").next().unwrap_or(&url),
        dir.display()
    );
    tokio::select! {
        r = serve => r.context("the web server stopped")?,
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    Ok(())
}
