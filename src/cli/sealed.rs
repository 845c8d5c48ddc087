//! Sealed messages on the command line (docs/protocol.md §8): `bump id …`, `bump group …`,
//! sealed `bump send --group/--to`, `bump get --group`, and `bump inbox`. Sealing and opening
//! happen here, in the client, with the keyring of the datadir; the node only ever sees
//! envelopes under rotating tags.

use super::ctx::{write_stdout, Ctx, B64};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::rpc::api::{BumpApiClient, GetOptions};
use bump::rpc::client::classify;
use bump::sealed::envelope::{self, OpenError, Opener, Plain, Seal};
use bump::sealed::keyring::Keyring;
use bump::sealed::keys::{GroupKey, Identity, PublicId};
use bump::sealed::tags;
use bump::settings::Base;
use bump::tag::Tag;
use clap::{Args, Subcommand};
use std::collections::{BTreeMap, HashSet};

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

pub fn id(base: &Base, c: IdCmd) -> Result<()> {
    let mut k = keyring(base)?;
    match c {
        IdCmd::New { name } => {
            let id = Identity::generate();
            k.add_identity(&name, &id)?;
            k.save()?;
            println!("{}", id.public().to_string_id());
        }
        IdCmd::List => {
            for (name, id) in k.all_identities() {
                println!("{name} {}", id.public().to_string_id());
            }
        }
        IdCmd::Show { name } => println!("{}", k.identity(&name)?.public().to_string_id()),
        IdCmd::Export { name } => println!("{}", k.identity(&name)?.to_secret_string()),
        IdCmd::Import { name, secret } => {
            let id = Identity::parse_secret(&secret)?;
            k.add_identity(&name, &id)?;
            k.save()?;
            println!("{}", id.public().to_string_id());
        }
    }
    Ok(())
}

pub fn group(base: &Base, c: GroupCmd) -> Result<()> {
    let mut k = keyring(base)?;
    match c {
        GroupCmd::New { name } => {
            k.add_group(&name, &GroupKey::generate(), "random")?;
            k.save()?;
            println!("{}", k.group(&name)?.to_invite());
        }
        GroupCmd::Join {
            name,
            passphrase,
            invite,
        } => {
            let (key, kind) = match (passphrase, invite) {
                (Some(p), _) => (GroupKey::from_passphrase(&p)?, "passphrase"),
                (None, Some(i)) => (GroupKey::parse_invite(&i)?, "random"),
                (None, None) => bail!("give --passphrase or --invite"),
            };
            k.add_group(&name, &key, kind)?;
            k.save()?;
        }
        GroupCmd::Invite { name } => println!("{}", k.group(&name)?.to_invite()),
        GroupCmd::List => {
            for (name, g) in &k.groups {
                println!("{name} ({})", g.kind);
            }
        }
        GroupCmd::Leave { name } => {
            k.remove_group(&name)?;
            k.save()?;
        }
    }
    Ok(())
}

/// Who a sealed send goes to, from `bump send`'s flags.
pub struct SealTo {
    pub group: Option<String>,
    pub to: Vec<String>,
    pub from: Option<String>,
}

/// Seal `data` as `bump send --group/--to` asks: (tag, envelope) pairs to send. A direct
/// message is sealed once per inbox bucket of its recipients (8 recipients per envelope).
pub fn seal_for(base: &Base, how: &SealTo, data: Vec<u8>, now: u32) -> Result<Vec<(Tag, Vec<u8>)>> {
    let k = keyring(base)?;
    let signer = how.from.as_deref().map(|n| k.identity(n)).transpose()?;
    let plain = Plain {
        timestamp: now as u64,
        content_type: 0,
        body: data,
    };
    let slot = tags::slot(now);
    if let Some(g) = &how.group {
        let key = k.group(g)?;
        let env = envelope::seal(&Seal::Group(&key), &plain, signer.as_ref())?;
        return Ok(vec![(tags::group_tag(&key, slot), env)]);
    }
    let mut by_bucket: BTreeMap<u8, Vec<PublicId>> = BTreeMap::new();
    for s in &how.to {
        let id = PublicId::parse(s).with_context(|| format!("--to {s}"))?;
        by_bucket.entry(tags::bucket(&id)).or_default().push(id);
    }
    let mut out = Vec::new();
    for (bucket, ids) in by_bucket {
        for chunk in ids.chunks(envelope::SLOTS) {
            let env = envelope::seal(&Seal::Direct(chunk), &plain, signer.as_ref())?;
            out.push((tags::inbox_tag(bucket, slot), env));
        }
    }
    Ok(out)
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

/// Every complete message (its bytes) under `tag`, a page at a time.
async fn messages_of(ctx: &Ctx, tag: Tag) -> Result<Vec<Vec<u8>>> {
    let client = ctx.client()?;
    let mut after = None;
    let mut out = Vec::new();
    loop {
        let opts = GetOptions {
            msgid: None,
            last: false,
            no_data: false,
            after,
            max_bytes: None,
        };
        let r = client
            .get_messages(tag.to_hex(), Some(opts))
            .await
            .map_err(classify)?;
        for m in &r.messages {
            out.push(B64.decode(&m.data).context("node sent malformed base64")?);
        }
        match (r.more, r.messages.last()) {
            (true, Some(m)) => after = Some(m.seq),
            _ => break,
        }
    }
    Ok(out)
}

/// What reading found: opened messages in order, and skipped envelopes by reason.
#[derive(Default)]
struct Reading {
    opened: Vec<(Option<String>, envelope::Opened)>,
    skipped: BTreeMap<OpenError, usize>,
    seen: HashSet<[u8; 32]>,
}

impl Reading {
    fn take(&mut self, bytes: &[u8], opener: &Opener, to: Option<&str>) {
        // A replayed envelope (the same bytes sent again) is shown once.
        let h = bitcoin::hashes::sha256::Hash::hash(bytes).to_byte_array();
        if !self.seen.insert(h) {
            return;
        }
        match envelope::open(bytes, opener) {
            Ok(o) => self.opened.push((to.map(str::to_string), o)),
            Err(e) => *self.skipped.entry(e).or_default() += 1,
        }
    }

    fn print(mut self, json: bool, known: &HashSet<PublicId>) -> Result<()> {
        self.opened.sort_by_key(|(_, o)| o.plain.timestamp);
        let mut out = Vec::new();
        for (to, o) in &self.opened {
            if json {
                let signature = match &o.signer {
                    None => "unsigned",
                    Some(s) if known.contains(s) => "valid",
                    Some(_) => "valid, unverified key",
                };
                let line = serde_json::json!({
                    "to": to,
                    "sender": o.signer.map(|s| s.to_string_id()),
                    "signature": signature,
                    "time": o.plain.timestamp,
                    "data": B64.encode(&o.plain.body),
                });
                out.extend(line.to_string().bytes());
                out.push(b'\n');
            } else {
                out.extend_from_slice(&o.plain.body);
            }
        }
        write_stdout(&out)?;
        if !self.skipped.is_empty() {
            let why: Vec<String> = self
                .skipped
                .iter()
                .map(|(e, n)| format!("{n} {e}"))
                .collect();
            eprintln!(
                "bump: skipped {} envelope(s): {}",
                self.skipped.values().sum::<usize>(),
                why.join("; ")
            );
        }
        Ok(())
    }
}

use bitcoin::hashes::Hash as _;

/// `bump get --group NAME`: the group's tags of every slot a message may still live in.
pub async fn get_group(ctx: &Ctx, name: &str, json: bool) -> Result<()> {
    let k = keyring(&ctx.base)?;
    let key = k.group(name)?;
    let status = ctx.client()?.status().await.map_err(classify)?;
    let now = bump::unix_now();
    let mut r = Reading::default();
    for slot in tags::read_slots(now, status.max_ttl) {
        for m in messages_of(ctx, tags::group_tag(&key, slot)).await? {
            r.take(&m, &Opener::Group(&key), None);
        }
    }
    if r.opened.is_empty() && r.skipped.is_empty() {
        bail!("no message in group {name}");
    }
    let known = k.all_identities().iter().map(|(_, i)| i.public()).collect();
    r.print(json, &known)
}

/// `bump inbox`: direct messages to the keyring's identities.
pub async fn inbox(ctx: &Ctx, a: InboxArgs) -> Result<()> {
    let k = keyring(&ctx.base)?;
    let ids: Vec<(String, Identity)> = match &a.id {
        Some(n) => vec![(n.clone(), k.identity(n)?)],
        None => k.all_identities(),
    };
    if ids.is_empty() {
        bail!("the keyring holds no identity: `bump id new NAME` makes one");
    }
    let status = ctx.client()?.status().await.map_err(classify)?;
    let now = bump::unix_now();
    let mut r = Reading::default();
    for (name, id) in &ids {
        let bucket = tags::bucket(&id.public());
        for slot in tags::read_slots(now, status.max_ttl) {
            for m in messages_of(ctx, tags::inbox_tag(bucket, slot)).await? {
                r.take(&m, &Opener::Identity(id), Some(name));
            }
        }
        // Others' messages in the same bucket are not ours: not worth a warning.
        r.skipped.remove(&OpenError::NotForUs);
        r.seen.clear();
    }
    let known = ids.iter().map(|(_, i)| i.public()).collect();
    r.print(a.json, &known)
}
