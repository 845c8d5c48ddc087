//! The `bump` binary: parses the command line and dispatches — `bump node` to the daemon, the
//! offline helpers (`tag`, `keygen`, `demo`) at once, everything else to a client command that
//! talks to the node over JSON-RPC (`cli/`). Errors end here as one line on stderr and exit
//! status 1; a closed stdout ends the process quietly (141, like SIGPIPE).

mod cli;

use anyhow::Result;
use bump::settings::{node_settings, Base};
use clap::Parser;
use cli::args::{Cli, Cmd};
use cli::ctx::{init_logging, Ctx};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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

fn run(cli: Cli) -> Result<()> {
    if !matches!(cli.cmd, Cmd::Node(_)) && !is_demo(&cli.cmd) {
        restore_sigpipe();
    }
    let network = cli.network_flag();
    let cmd = match cli.cmd {
        Cmd::Tag { tag } => return cli::mix::tag(&tag),
        #[cfg(feature = "demo")]
        Cmd::Demo { speakeasy } => {
            init_logging("warn");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if speakeasy {
                return rt.block_on(cli::demo::run_speakeasy());
            }
            return rt.block_on(cli::demo::run());
        }
        cmd => cmd,
    };
    let user_password = cli.rpcuser.clone().zip(cli.rpcpassword.clone());
    let base = Base::resolve(cli.datadir.clone(), network, user_password)?;
    let cmd = match cmd {
        Cmd::Keygen => return cli::mix::keygen(&base),
        Cmd::Id(c) => return cli::sealed::id(&base, c),
        Cmd::Group(c) => return cli::sealed::group(&base, c),
        Cmd::Node(args) => {
            init_logging("info");
            let settings = node_settings(&base, &args)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return Ok(rt.block_on(bump::daemon::run(settings))?);
        }
        cmd => cmd,
    };
    init_logging("warn");
    let ctx = Ctx {
        base,
        connect: cli.rpc_connect,
        timeout: std::time::Duration::from_secs(cli.rpc_timeout.max(1)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(client_command(&ctx, cmd))
}

fn is_demo(_cmd: &Cmd) -> bool {
    #[cfg(feature = "demo")]
    if matches!(_cmd, Cmd::Demo { .. }) {
        return true;
    }
    false
}

/// Client commands print to stdout, often into a pipe (`bump get TAG | head`). Rust ignores
/// SIGPIPE, which turns a closed pipe into a panic inside `println!`; restore the default so
/// the process ends quietly, as other Unix tools do (exit status 141 in the shell). The node
/// keeps ignoring it: its sockets report a closed peer as an error instead.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once on the main thread before any other thread writes to a pipe;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Commands that talk to a running node.
async fn client_command(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Send(a) => cli::send::run(ctx, a).await,
        Cmd::Get(a) => cli::get::run(ctx, a).await,
        Cmd::Watch(a) => cli::get::watch(ctx, a).await,
        Cmd::Inbox(a) => cli::sealed::inbox(ctx, a).await,
        Cmd::Import(a) => cli::packets::import(ctx, a).await,
        Cmd::Export(a) => cli::packets::export(ctx, a).await,
        Cmd::Status(a) => cli::status::status(ctx, a).await,
        Cmd::Mix(a) => cli::status::mix(ctx, a).await,
        Cmd::Peers(a) => cli::status::peers(ctx, a).await,
        Cmd::Stop => cli::status::stop(ctx).await,
        Cmd::Speakeasy(a) => cli::speakeasy::run(ctx, a).await,
        Cmd::Mixes(a) => cli::mix::mixes(ctx, a).await,
        Cmd::Name(c) => cli::name::run(ctx, c).await,
        Cmd::Node(_) | Cmd::Tag { .. } | Cmd::Keygen | Cmd::Id(_) | Cmd::Group(_) => {
            anyhow::bail!("internal: offline command reached the client path")
        }
        #[cfg(feature = "demo")]
        Cmd::Demo { .. } => anyhow::bail!("internal: offline command reached the client path"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
