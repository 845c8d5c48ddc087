//! Sealed messages on the command line (docs/protocol.md §8): `bump id …` and `bump group …`
//! edit the keyring of the datadir (no node needed); `bump get --group` and `bump inbox` ask
//! the node (`bump_sealedget`), which opens envelopes with that keyring (sealed sends are in
//! `send.rs`, by `bump_sealedsend`). Only envelopes under rotating tags are stored or sent.

use super::ctx::{write_stdout, Ctx, B64};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::rpc::api::{BumpApiClient, SealedGetParams, SealedResult};
use bump::rpc::client::classify;
use bump::sealed::keyring::Keyring;
use bump::settings::Base;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum IdCmd {
    /// Create an identity (a secp256k1 key pair kept in the keyring) and print its public string
    New { name: String },
    /// List identities: name and public string
    List,
    /// Print an identity's public string (`bumpid1…`), to give to people who write to you
    Show { name: String },
    /// Print an identity's secret string (`bumpsec1…`) for `bump id import` elsewhere; keep it secret
    Export { name: String },
    /// Add an identity from its secret string
    Import { name: String, secret: String },
    /// Encrypt the keyring (identities and groups) at rest with the passphrase in
    /// $BUMP_KEYRING_PASSPHRASE (argon2id + XChaCha20-Poly1305). Every later command, and a
    /// node that reads the keyring for sealed sends and reads, needs that variable set
    Lock,
    /// Store the keyring in the clear again (the variable must hold its passphrase)
    Unlock,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group with a random 256-bit key; `bump group invite` prints it for members
    New { name: String },
    /// Join a group by its invite string, or by a passphrase shared with the others (argon2id,
    /// fixed parameters: everyone with the same passphrase meets in the same group)
    Join {
        name: String,
        #[arg(long, conflicts_with = "invite", required_unless_present = "invite")]
        passphrase: Option<String>,
        #[arg(long)]
        invite: Option<String>,
    },
    /// Print a group's invite string (`bumpgrp1…`): whoever has it reads and writes the group
    Invite { name: String },
    /// List groups
    List,
    /// Forget a group
    Leave { name: String },
}

fn keyring(base: &Base) -> Result<Keyring> {
    Ok(Keyring::load(&base.netdir)?)
}

/// Change the keyring under its lock (a running node may change it too).
fn edit<T>(
    base: &Base,
    f: impl FnOnce(&mut Keyring) -> Result<T, bump::sealed::keyring::KeyringError>,
) -> Result<T> {
    Ok(Keyring::edit(&base.netdir, f)?)
}

pub fn id(base: &Base, c: IdCmd) -> Result<()> {
    match c {
        IdCmd::New { name } => {
            let id = edit(base, |k| k.new_identity(&name))?;
            println!("{}", id.public().to_string_id());
        }
        IdCmd::List => {
            for (name, id) in keyring(base)?.all_identities() {
                println!("{name} {}", id.public().to_string_id());
            }
        }
        IdCmd::Show { name } => println!(
            "{}",
            keyring(base)?.identity(&name)?.public().to_string_id()
        ),
        IdCmd::Export { name } => {
            println!("{}", keyring(base)?.identity(&name)?.to_secret_string())
        }
        IdCmd::Import { name, secret } => {
            let id = edit(base, |k| k.import_identity(&name, &secret))?;
            println!("{}", id.public().to_string_id());
        }
        IdCmd::Lock => {
            let pass = std::env::var(bump::sealed::keyring::PASSPHRASE_ENV).unwrap_or_default();
            if pass.is_empty() {
                bail!(
                    "set {} to the passphrase to lock the keyring with",
                    bump::sealed::keyring::PASSPHRASE_ENV
                );
            }
            edit(base, |k| k.set_passphrase(Some(pass)))?;
            eprintln!("bump: the keyring is encrypted at rest");
        }
        IdCmd::Unlock => {
            edit(base, |k| k.set_passphrase(None))?;
            eprintln!("bump: the keyring is stored in the clear");
        }
    }
    Ok(())
}

pub fn group(base: &Base, c: GroupCmd) -> Result<()> {
    match c {
        GroupCmd::New { name } => {
            let key = edit(base, |k| k.new_group(&name))?;
            println!("{}", key.to_invite());
        }
        GroupCmd::Join {
            name,
            passphrase,
            invite,
        } => {
            edit(base, |k| {
                k.join_group(&name, passphrase.as_deref(), invite.as_deref())
            })?;
        }
        GroupCmd::Invite { name } => println!("{}", keyring(base)?.group(&name)?.to_invite()),
        GroupCmd::List => {
            for (name, g) in &keyring(base)?.groups {
                println!("{name} ({})", g.kind);
            }
        }
        GroupCmd::Leave { name } => edit(base, |k| k.remove_group(&name))?,
    }
    Ok(())
}

#[derive(Args)]
pub struct InboxArgs {
    /// Only this identity's messages [default: every identity in the keyring]
    #[arg(long, value_name = "NAME")]
    id: Option<String>,
    /// One JSON line per message: to, sender, signature status, time, data (base64)
    #[arg(long)]
    json: bool,
}

/// Print what `bump_sealedget` returned: the bytes, or JSON lines; skipped envelopes on stderr.
fn print(r: SealedResult, json: bool) -> Result<()> {
    let mut out = Vec::new();
    for m in &r.messages {
        if json {
            out.extend(serde_json::to_string(m)?.bytes());
            out.push(b'\n');
        } else {
            out.extend(B64.decode(&m.data).context("node sent malformed base64")?);
        }
    }
    write_stdout(&out)?;
    if !r.skipped.is_empty() {
        let why: Vec<String> = r.skipped.iter().map(|(e, n)| format!("{n} {e}")).collect();
        eprintln!(
            "bump: skipped {} envelope(s) or sealed packet(s) that did not open: {}",
            r.skipped.values().sum::<usize>(),
            why.join("; ")
        );
    }
    Ok(())
}

/// `bump get --group NAME`.
pub async fn get_group(ctx: &Ctx, name: &str, json: bool) -> Result<()> {
    let r = ctx
        .client()?
        .sealed_get(SealedGetParams {
            group: Some(name.to_string()),
            identity: None,
        })
        .await
        .map_err(classify)?;
    if r.messages.is_empty() && r.skipped.is_empty() {
        bail!("no message in group {name}");
    }
    print(r, json)
}

/// `bump inbox`: direct messages to the keyring's identities.
pub async fn inbox(ctx: &Ctx, a: InboxArgs) -> Result<()> {
    if a.id.is_none() && keyring(&ctx.base)?.identities.is_empty() {
        bail!("the keyring holds no identity: `bump id new NAME` makes one");
    }
    let r = ctx
        .client()?
        .sealed_get(SealedGetParams {
            group: None,
            identity: a.id,
        })
        .await
        .map_err(classify)?;
    print(r, a.json)
}

/// `bump watch --group NAME`: subscribe to the packets of the group's tag of today and of
/// tomorrow (a sender's clock may be past midnight), moving on as days pass; reassemble the
/// sealed parts (§8.4), open each new message with the keyring here and print it as a JSON
/// line. Messages complete before the watch began are not printed.
pub async fn watch_group(ctx: &Ctx, name: &str, count: Option<usize>) -> Result<()> {
    use bump::sealed::envelope::{self, Opener};
    use bump::sealed::parts::PartReader;
    use bump::sealed::tags;
    use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
    let k = keyring(&ctx.base)?;
    let key = k.group(name)?;
    let known: std::collections::HashSet<_> =
        k.all_identities().iter().map(|(_, i)| i.public()).collect();
    let ws = ctx.target()?.ws(super::ctx::CLIENT_MAX_BODY).await?;
    let mut subs: std::collections::BTreeMap<u32, Subscription<serde_json::Value>> =
        Default::default();
    let mut reader = PartReader::group(&key);
    let mut seen = std::collections::HashSet::new();
    let mut printed = 0usize;
    loop {
        let today = tags::slot(bump::unix_now());
        subs.retain(|s, _| *s + 1 >= today);
        for slot in [today, today + 1] {
            if let std::collections::btree_map::Entry::Vacant(e) = subs.entry(slot) {
                let sub = ws
                    .subscribe(
                        "bump_subscribepackets",
                        jsonrpsee::rpc_params![tags::group_tag(&key, slot).to_hex()],
                        "bump_unsubscribepackets",
                    )
                    .await
                    .map_err(classify)?;
                e.insert(sub);
            }
        }
        // The next notification from any of the subscriptions, or a minute to re-check the day.
        let next = {
            let streams = subs.values_mut().map(|s| s.next());
            let any = futures::future::select_all(streams.map(Box::pin));
            tokio::time::timeout(std::time::Duration::from_secs(60), any).await
        };
        let v = match next {
            Err(_) => continue,
            Ok((Some(Ok(v)), _, _)) => v,
            Ok((Some(Err(e)), _, _)) => bail!("subscription error: {e}"),
            Ok((None, _, _)) => bail!("the node closed the subscription"),
        };
        let stored = v["stored"].as_bool().unwrap_or(false);
        let seq = v["seq"].as_u64().unwrap_or(0);
        let packet = match serde_json::from_value::<bump::packet::PacketJson>(serde_json::json!({
            "tag": v["tag"], "chunk": v["chunk"], "expires": v["expires"], "nonce": v["nonce"],
        }))
        .map_err(|e| e.to_string())
        .and_then(|j| bump::packet::Packet::from_json(&j).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bump: the node sent a packet that does not parse: {e}");
                continue;
            }
        };
        for data in reader.push(seq, &packet) {
            let h = bitcoin::hashes::sha256::Hash::hash(&data).to_byte_array();
            if !seen.insert(h) || stored {
                continue;
            }
            match envelope::open(&data, &Opener::Group(&key)) {
                Ok(o) => {
                    let line = serde_json::json!({
                        "sender": o.signer.map(|s| s.to_string_id()),
                        "signature": match &o.signer {
                            None => "unsigned",
                            Some(s) if known.contains(s) => "valid",
                            Some(_) => "valid, unverified key",
                        },
                        "time": o.plain.timestamp,
                        "data": B64.encode(&o.plain.body),
                    });
                    println!("{line}");
                    std::io::Write::flush(&mut std::io::stdout())?;
                    printed += 1;
                    if count.is_some_and(|c| printed >= c) {
                        return Ok(());
                    }
                }
                Err(e) => eprintln!("bump: skipped an envelope that did not open: {e}"),
            }
        }
    }
}

use bitcoin::hashes::Hash as _;
