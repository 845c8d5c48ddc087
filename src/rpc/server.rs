//! The JSON-RPC server: method implementations over a [`Node`], served by jsonrpsee on a
//! loopback address behind [`auth`](super::auth). HTTP and WebSocket share one port.

use super::api::{
    codes, rpc_error, BumpApiServer, GetOptions, GroupJoinParams, GroupJson, IdentityJson,
    ImportResult, MessageJson, MessagesResult, PacketEvent, PacketPage, PartialJson,
    SealedGetParams, SealedMessageJson, SealedResult, SealedSendParams, SendParams, SendResult,
    StatusResult,
};
use super::auth::Credentials;
use crate::message::{Assembler, CompleteMessage, MessageError, MessageId};
use crate::mix::send::{SendError, SendRequest, SendService};
use crate::mix::{MixStats, Mixer};
use crate::names::directory::DirectoryError;
use crate::names::NamesCtx;
use crate::node::{Node, NodeError};
use crate::p2p::overlay::PeerRow;
use crate::p2p::Overlay;
use crate::packet::{Packet, PacketJson};
use crate::sealed::keyring::{Keyring, KeyringError};
use crate::store::StoreError;
use crate::tag::Tag;
use base64::Engine as _;
use jsonrpsee::core::{async_trait, RpcResult, SubscriptionResult};
use jsonrpsee::server::{PendingSubscriptionSink, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn node_error(e: NodeError) -> ErrorObjectOwned {
    let code = match &e {
        NodeError::InvalidPacket { .. } => codes::INVALID_PACKET,
        NodeError::Message(MessageError::TooLarge { .. }) => codes::MESSAGE_TOO_LARGE,
        NodeError::Message(
            MessageError::BadFrame(_) | MessageError::NoRoom | MessageError::Seal,
        ) => codes::INVALID_PARAMS,
        NodeError::TtlTooLong { .. } | NodeError::TtlTooShort => codes::BAD_TTL,
        NodeError::Store(StoreError::Full { .. }) | NodeError::BelowFloor { .. } => {
            codes::STORE_FULL
        }
        NodeError::Store(_) => {
            tracing::error!("store error: {e}");
            codes::INTERNAL
        }
    };
    rpc_error(code, e.to_string())
}

/// Most packets one `packetpage` reply carries.
pub const PACKET_PAGE: usize = 4096;
/// Upper bound of one packet's interchange JSON (1024 bytes as base64 plus the tag and keys).
const PACKET_JSON_BYTES: usize = 1500;

/// Message bytes per `getmessages` page for a response size limit: base64 grows data by 4/3;
/// leave 1 MiB for the JSON around it.
pub fn page_bytes(max_body: u32) -> usize {
    ((max_body as usize).saturating_sub(1 << 20) / 4 * 3).max(1 << 20)
}

fn parse_tag(s: &str) -> Result<Tag, ErrorObjectOwned> {
    Tag::from_arg(s).map_err(|e| rpc_error(codes::INVALID_PARAMS, e.to_string()))
}

fn message_json(tag: &Tag, m: &CompleteMessage, with_data: bool) -> MessageJson {
    MessageJson {
        msgid: m.id.to_hex(),
        tag: tag.to_hex(),
        data: if with_data {
            B64.encode(&m.data)
        } else {
            String::new()
        },
        size: m.data.len(),
        parts: m.parts,
        seq: m.completed_seq,
    }
}

/// The node's parts the RPC methods translate to.
pub struct RpcImpl {
    pub node: Arc<Node>,
    /// Most message bytes one `getmessages` page carries (fits the response size limit).
    pub page_bytes: usize,
    pub sender: Arc<SendService>,
    pub overlay: Option<Arc<Overlay>>,
    pub mix: Option<Arc<Mixer>>,
    pub names: Option<Arc<NamesCtx>>,
    /// Sealed envelopes that did not open in `sealedget`, by reason (shown by `status`).
    pub sealed_skipped: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

fn dir_error(e: DirectoryError) -> jsonrpsee::types::ErrorObjectOwned {
    match e {
        DirectoryError::Rpc(e) => rpc_error(codes::NAMECOIND, format!("namecoind: {e}")),
        e => rpc_error(codes::BAD_MIX, e.to_string()),
    }
}

/// What a `bump_send`-shaped request asks of the send service, for `tag` and `data` (already
/// parsed and decoded by the caller).
fn send_request(p: SendParams, tag: Tag, data: Vec<u8>) -> SendRequest {
    SendRequest {
        tag: Some(tag),
        data,
        ttl: p.ttl,
        via: p.via.unwrap_or_default(),
        hops: p.hops,
        tau: p.tau,
        crowd: p.crowd,
        delay_secs: p.delay,
        postage: p.postage.unwrap_or_default(),
        framer: None,
    }
}

fn keyring_error(e: impl std::fmt::Display) -> ErrorObjectOwned {
    rpc_error(codes::KEYRING, e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeyringError> + Send + 'static,
) -> RpcResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| rpc_error(codes::INTERNAL, format!("keyring task failed: {e}")))?
        .map_err(keyring_error)
}

fn identity_json(name: String, id: &crate::sealed::keys::Identity) -> IdentityJson {
    IdentityJson {
        name,
        id: id.public().to_string_id(),
    }
}

impl RpcImpl {
    /// The node's keyring, read afresh (the `bump id`/`bump group` commands edit it), off
    /// the async runtime: opening an encrypted one runs argon2id.
    async fn keyring(&self) -> RpcResult<Keyring> {
        let netdir = self.node.info().netdir.clone();
        blocking(move || Keyring::load(&netdir)).await
    }

    /// Read the keyring and answer from it.
    async fn read_keyring<T>(
        &self,
        f: impl FnOnce(&Keyring) -> Result<T, KeyringError>,
    ) -> RpcResult<T> {
        f(&self.keyring().await?).map_err(keyring_error)
    }

    /// Change the keyring under its lock ([`Keyring::edit`]), off the async runtime.
    async fn edit_keyring<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Keyring) -> Result<T, KeyringError> + Send + 'static,
    ) -> RpcResult<T> {
        let netdir = self.node.info().netdir.clone();
        blocking(move || Keyring::edit(&netdir, f)).await
    }

    /// Send one message as `bump_send` does.
    async fn send_one(&self, req: SendRequest) -> RpcResult<SendResult> {
        let sent = self.sender.send(req).await.map_err(send_error)?;
        tracing::debug!(packets = sent.packets, hops = sent.hops, "message stored");
        Ok(SendResult {
            msgid: sent.msgid.to_hex(),
            tag: sent.tag.to_hex(),
            packets: sent.packets,
            bytes: sent.bytes,
            expires: sent.expires,
            hops: sent.hops,
            note: sent.note,
        })
    }

    fn names(&self) -> RpcResult<&Arc<NamesCtx>> {
        self.names
            .as_ref()
            .ok_or_else(|| rpc_error(codes::NO_NAMECOIND, SendError::NoNamecoind.to_string()))
    }
}

/// A send's failure as an RPC error: the code says what kind, the message says what.
fn send_error(e: SendError) -> ErrorObjectOwned {
    if e.is_too_large() {
        return rpc_error(codes::MESSAGE_TOO_LARGE, e.to_string());
    }
    let code = match e {
        SendError::Node(n) => return node_error(n),
        SendError::Directory(d) => return dir_error(d),
        SendError::NoNamecoind => codes::NO_NAMECOIND,
        SendError::Payment { .. } => codes::NAMECOIND,
        SendError::OwnPool(ref why) if why.contains("full") => codes::STORE_FULL,
        SendError::Mix(ref m) => {
            tracing::error!("mix error on send: {m}");
            codes::INTERNAL
        }
        SendError::TooFewMixes { .. } => codes::BAD_MIX,
        SendError::OwnPool(_)
        | SendError::NoTag
        | SendError::Tau(_)
        | SendError::NotAMix(_)
        | SendError::RepeatedMix
        | SendError::RouteLength
        | SendError::NoRoom
        | SendError::TooLargeForRoute { .. }
        | SendError::PostageField(_)
        | SendError::Wrap(_) => codes::INVALID_PARAMS,
    };
    rpc_error(code, e.to_string())
}

#[async_trait]
impl BumpApiServer for RpcImpl {
    async fn send(&self, params: SendParams) -> RpcResult<SendResult> {
        let tag = parse_tag(&params.tag)?;
        let data = B64.decode(params.data.trim()).map_err(|e| {
            rpc_error(
                codes::INVALID_PARAMS,
                format!("data is not valid base64: {e}"),
            )
        })?;
        self.send_one(send_request(params, tag, data)).await
    }

    async fn send_framed(
        &self,
        send: SendParams,
        frame_key: String,
        head: Option<String>,
    ) -> RpcResult<SendResult> {
        let tag = parse_tag(&send.tag)?;
        let data = B64.decode(send.data.trim()).map_err(|e| {
            rpc_error(
                codes::INVALID_PARAMS,
                format!("data is not valid base64: {e}"),
            )
        })?;
        let key: [u8; 32] = hex::decode(frame_key.trim())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| rpc_error(codes::INVALID_PARAMS, "frame_key is not 64 hex digits"))?;
        let head = head
            .map(|h| B64.decode(h.trim()))
            .transpose()
            .map_err(|e| {
                rpc_error(
                    codes::INVALID_PARAMS,
                    format!("head is not valid base64: {e}"),
                )
            })?;
        let framer =
            crate::sealed::parts::SealedFramer::from_parts(key, tag, head).map_err(|_| {
                rpc_error(
                    codes::INVALID_PARAMS,
                    format!("head is not {} bytes", crate::sealed::envelope::HEAD_LEN),
                )
            })?;
        let mut req = send_request(send, tag, data);
        req.framer = Some(Arc::new(framer));
        self.send_one(req).await
    }

    async fn sealed_send(&self, params: SealedSendParams) -> RpcResult<Vec<SendResult>> {
        let data = B64.decode(params.data.trim()).map_err(|e| {
            rpc_error(
                codes::INVALID_PARAMS,
                format!("data is not valid base64: {e}"),
            )
        })?;
        let how = crate::sealed::book::SealTo {
            group: params.group.clone(),
            to: params.to.clone().unwrap_or_default(),
            from: params.from.clone(),
        };
        let envelopes =
            crate::sealed::book::seal_for(&self.keyring().await?, &how, data, crate::unix_now())
                .map_err(keyring_error)?;
        let mut out = Vec::new();
        for s in envelopes {
            let route = params.envelope(s.tag.to_hex(), String::new());
            let mut req = send_request(route, s.tag, s.carried);
            req.framer = Some(Arc::new(s.framer));
            out.push(self.send_one(req).await?);
        }
        Ok(out)
    }

    async fn id_new(&self, name: String) -> RpcResult<IdentityJson> {
        self.edit_keyring(move |k| Ok(identity_json(name.clone(), &k.new_identity(&name)?)))
            .await
    }

    async fn id_list(&self) -> RpcResult<Vec<IdentityJson>> {
        self.read_keyring(|k| {
            Ok(k.all_identities()
                .into_iter()
                .map(|(n, i)| identity_json(n, &i))
                .collect())
        })
        .await
    }

    async fn id_import(&self, name: String, secret: String) -> RpcResult<IdentityJson> {
        self.edit_keyring(move |k| {
            let id = k.import_identity(&name, &secret)?;
            Ok(identity_json(name, &id))
        })
        .await
    }

    async fn id_export(&self, name: String) -> RpcResult<String> {
        self.read_keyring(move |k| Ok(k.identity(&name)?.to_secret_string()))
            .await
    }

    async fn group_new(&self, name: String) -> RpcResult<String> {
        self.edit_keyring(move |k| Ok(k.new_group(&name)?.to_invite()))
            .await
    }

    async fn group_join(&self, p: GroupJoinParams) -> RpcResult<GroupJson> {
        self.edit_keyring(move |k| {
            k.join_group(&p.name, p.passphrase.as_deref(), p.invite.as_deref())?;
            Ok(GroupJson {
                kind: k.groups[&p.name].kind.clone(),
                name: p.name,
            })
        })
        .await
    }

    async fn group_invite(&self, name: String) -> RpcResult<String> {
        self.read_keyring(move |k| Ok(k.group(&name)?.to_invite()))
            .await
    }

    async fn group_list(&self) -> RpcResult<Vec<GroupJson>> {
        self.read_keyring(|k| {
            Ok(k.groups
                .iter()
                .map(|(name, g)| GroupJson {
                    name: name.clone(),
                    kind: g.kind.clone(),
                })
                .collect())
        })
        .await
    }

    async fn group_leave(&self, name: String) -> RpcResult<bool> {
        self.edit_keyring(move |k| k.remove_group(&name).map(|_| true))
            .await
    }

    async fn sealed_get(&self, params: SealedGetParams) -> RpcResult<SealedResult> {
        use crate::sealed::book::{group_tags, inbox_tags, Reading};
        use crate::sealed::envelope::Opener;
        use crate::sealed::parts::PartReader;
        let k = self.keyring().await?;
        let now = crate::unix_now();
        let max_ttl = self.node.limits().max_ttl;
        let mut r = Reading::default();
        // Every packet of the tags, through a reader of sealed parts (§8.4).
        let envelopes_of = |tags: Vec<Tag>, mut parts: PartReader| async move {
            let mut envs = Vec::new();
            for tag in tags {
                for (seq, p) in self.node.packets(tag).await.map_err(node_error)? {
                    envs.extend(parts.push(seq, &p));
                }
            }
            Ok::<_, ErrorObjectOwned>((envs, parts.unopened()))
        };
        let ids = if let Some(g) = &params.group {
            let key = k.group(g).map_err(keyring_error)?;
            let (envs, unopened) =
                envelopes_of(group_tags(&key, now, max_ttl), PartReader::group(&key)).await?;
            for m in envs {
                r.take(&m, &Opener::Group(&key), None);
            }
            r.unopened(unopened);
            Vec::new()
        } else {
            match &params.identity {
                Some(n) => vec![(n.clone(), k.identity(n).map_err(keyring_error)?)],
                None => k.all_identities(),
            }
        };
        for (name, id) in &ids {
            let (envs, unopened) =
                envelopes_of(inbox_tags(id, now, max_ttl), PartReader::identity(id)).await?;
            for m in envs {
                r.take(&m, &Opener::Identity(id), Some(name));
            }
            r.unopened(unopened);
            r.next_identity();
        }
        let known: std::collections::HashSet<_> =
            k.all_identities().iter().map(|(_, i)| i.public()).collect();
        let (read, skipped) = r.sorted();
        let skipped: std::collections::BTreeMap<String, usize> = skipped
            .into_iter()
            .map(|(e, n)| (e.to_string(), n))
            .collect();
        {
            let mut total = crate::sync::Locked::locked(&self.sealed_skipped);
            for (why, n) in &skipped {
                *total.entry(why.clone()).or_default() += *n as u64;
            }
        }
        Ok(SealedResult {
            messages: read
                .into_iter()
                .map(|m| SealedMessageJson {
                    to: m.to,
                    sender: m.opened.signer.map(|s| s.to_string_id()),
                    signature: match &m.opened.signer {
                        None => "unsigned",
                        Some(s) if known.contains(s) => "valid",
                        Some(_) => "valid, unverified key",
                    }
                    .into(),
                    time: m.opened.plain.timestamp,
                    data: B64.encode(&m.opened.plain.body),
                })
                .collect(),
            skipped,
        })
    }

    async fn get_messages(
        &self,
        tag: String,
        options: Option<GetOptions>,
    ) -> RpcResult<MessagesResult> {
        let tag = parse_tag(&tag)?;
        let opts = options.unwrap_or_default();
        let want = match &opts.msgid {
            Some(s) => Some(MessageId::from_hex(s).ok_or_else(|| {
                rpc_error(
                    codes::INVALID_PARAMS,
                    format!("message id must be 32 hex digits, got {s:?}"),
                )
            })?),
            None => None,
        };
        let found = self.node.messages(tag).await.map_err(node_error)?;
        let (mut done, mut partial) = (found.done, found.partial);
        if let Some(id) = want {
            done.retain(|m| m.id == id);
            partial.retain(|p| p.id == id);
        }
        if opts.last && done.len() > 1 {
            done.drain(..done.len() - 1);
        }
        // One page: messages completed after `after`, until their data passes the page size
        // (at least one message per page, so any message the node holds can be read).
        let after = opts.after.unwrap_or(0);
        let budget = opts
            .max_bytes
            .unwrap_or(self.page_bytes)
            .min(self.page_bytes);
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        for m in done.iter().filter(|m| m.completed_seq > after) {
            let size = if opts.no_data { 0 } else { m.data.len() };
            if !messages.is_empty() && bytes + size > budget {
                more = true;
                break;
            }
            bytes += size;
            messages.push(message_json(&tag, m, !opts.no_data));
        }
        Ok(MessagesResult {
            tag: tag.to_hex(),
            messages,
            partial: partial
                .iter()
                .map(|p| PartialJson {
                    msgid: p.id.to_hex(),
                    have: p.have,
                    count: p.count,
                })
                .collect(),
            unframed: found.unframed,
            damaged: found.damaged,
            more,
        })
    }

    async fn get_packets(&self, tag: String) -> RpcResult<Vec<PacketJson>> {
        let tag = parse_tag(&tag)?;
        // Each packet is about 1.4 KB of JSON: refuse clearly rather than build a reply the
        // server will not send.
        let fits = self.page_bytes / PACKET_JSON_BYTES;
        let read = self.node.read(tag, 0, fits).await.map_err(node_error)?;
        if read.more {
            return Err(rpc_error(
                codes::TOO_BIG,
                format!(
                    "tag {tag} holds more than {fits} packets, too many for one reply: page with bump_packetpage (bump export does)"
                ),
            ));
        }
        Ok(read.packets.iter().map(|(_, p)| p.to_json()).collect())
    }

    async fn packet_page(
        &self,
        tag: String,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> RpcResult<PacketPage> {
        let tag = parse_tag(&tag)?;
        let limit = limit
            .unwrap_or(PACKET_PAGE)
            .clamp(1, PACKET_PAGE.min(self.page_bytes / PACKET_JSON_BYTES));
        let read = self
            .node
            .read(tag, after.unwrap_or(0), limit)
            .await
            .map_err(node_error)?;
        Ok(PacketPage {
            next: read
                .more
                .then(|| read.packets.last().map(|(seq, _)| *seq))
                .flatten(),
            packets: read.packets.iter().map(|(_, p)| p.to_json()).collect(),
            damaged: read.damaged,
        })
    }

    async fn import_packets(&self, packets: Vec<PacketJson>) -> RpcResult<ImportResult> {
        let mut parsed = Vec::with_capacity(packets.len());
        for (i, j) in packets.iter().enumerate() {
            let p = Packet::from_json(j)
                .map_err(|e| rpc_error(codes::INVALID_PACKET, format!("packet {}: {e}", i + 1)))?;
            parsed.push(p);
        }
        let r = self
            .node
            .admit(parsed, crate::unix_now())
            .await
            .map_err(|e| match e {
                // Report 1-based positions, as in the file the user gave.
                NodeError::InvalidPacket { index, err } => rpc_error(
                    codes::INVALID_PACKET,
                    format!("packet {}: {err}", index + 1),
                ),
                other => node_error(other),
            })?;
        Ok(ImportResult {
            accepted: r.new,
            duplicates: r.duplicates,
        })
    }

    async fn status(&self) -> RpcResult<StatusResult> {
        let store = self.node.store();
        Ok(StatusResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            network: self.node.info().network.name().to_string(),
            datadir: self.node.info().netdir.display().to_string(),
            packets: store.len(),
            max_packets: store.max_packets(),
            store_bytes_on_disk: store.size_on_disk(),
            store_damaged: store
                .damaged_segments()
                .into_iter()
                .map(|(segment, packets)| crate::rpc::api::DamagedSegment { segment, packets })
                .collect(),
            index_rebuilt: store.rebuilt(),
            max_ttl: self.node.limits().max_ttl,
            max_message_size: self.node.limits().max_message,
            uptime_secs: self.node.uptime().as_secs(),
            admission: Some(self.node.admission_status(crate::unix_now())),
            sealed_skipped: crate::sync::Locked::locked(&self.sealed_skipped).clone(),
            p2p: self.overlay.as_ref().map(|o| o.sync_status()),
            mix: self.mix.as_ref().map(|m| m.stats()),
        })
    }

    async fn mix_status(&self) -> RpcResult<MixStats> {
        let mut s = self
            .mix
            .as_ref()
            .map(|m| m.stats())
            .ok_or_else(|| rpc_error(codes::INTERNAL, "this node runs no mix"))?;
        s.bus_mixes = self.sender.bus_mixes().len();
        Ok(s)
    }

    async fn mixes(&self, refresh: Option<bool>) -> RpcResult<crate::names::directory::Listing> {
        self.names()?
            .chain
            .directory
            .listing(refresh.unwrap_or(false))
            .await
            .map_err(dir_error)
    }

    async fn name_publish(
        &self,
        label: String,
        fee: Option<u64>,
        p2p: Option<String>,
    ) -> RpcResult<crate::names::publish::PublishState> {
        self.names()?
            .publisher
            .request(&label, fee.unwrap_or(0), p2p)
            .map_err(|e| rpc_error(codes::INVALID_PARAMS, e.to_string()))
    }

    async fn name_status(&self) -> RpcResult<Vec<crate::names::publish::PublishState>> {
        Ok(self.names()?.publisher.states())
    }

    async fn packet_holders(&self, ids: Vec<String>) -> RpcResult<Vec<usize>> {
        if ids.len() > 4096 {
            return Err(rpc_error(codes::INVALID_PARAMS, "at most 4096 ids at once"));
        }
        let mut parsed = Vec::with_capacity(ids.len());
        for (i, s) in ids.iter().enumerate() {
            parsed.push(
                crate::packet::PacketId::from_hex_bytes(s.trim()).ok_or_else(|| {
                    rpc_error(
                        codes::INVALID_PARAMS,
                        format!("id {}: not 64 hex digits", i + 1),
                    )
                })?,
            );
        }
        Ok(self
            .overlay
            .as_ref()
            .map(|o| o.holders(&parsed))
            .unwrap_or_default())
    }

    async fn peers(&self) -> RpcResult<Vec<PeerRow>> {
        Ok(self
            .overlay
            .as_ref()
            .map(|o| o.peer_rows())
            .unwrap_or_default())
    }

    async fn stop(&self) -> RpcResult<String> {
        tracing::info!("stop requested over RPC");
        self.node.shutdown_token().cancel();
        Ok("BuMP node stopping".into())
    }

    async fn subscribe_messages(
        &self,
        pending: PendingSubscriptionSink,
        tag: String,
    ) -> SubscriptionResult {
        let mut asm = Assembler::new();
        self.stream_tag(pending, tag, move |tag, seq, p, stored| {
            // Messages the node held complete before are not sent; parts stored before
            // count toward the messages new parts complete.
            let m = asm.push(seq, p)?;
            (!stored).then(|| serde_json::value::to_raw_value(&message_json(tag, m, true)))
        })
        .await
    }

    async fn subscribe_packets(
        &self,
        pending: PendingSubscriptionSink,
        tag: String,
    ) -> SubscriptionResult {
        self.stream_tag(pending, tag, |_, seq, p, stored| {
            Some(serde_json::value::to_raw_value(&PacketEvent {
                seq,
                stored,
                packet: p.to_json(),
            }))
        })
        .await
    }
}

impl RpcImpl {
    /// Feed a subscriber the packets of `tag`, those stored (`stored` = true) then each new
    /// one; `emit` turns a packet into an item to send, or nothing.
    async fn stream_tag(
        &self,
        pending: PendingSubscriptionSink,
        tag: String,
        mut emit: impl FnMut(
                &Tag,
                u64,
                &Packet,
                bool,
            )
                -> Option<Result<Box<serde_json::value::RawValue>, serde_json::Error>>
            + Send,
    ) -> SubscriptionResult {
        let tag = match parse_tag(&tag) {
            Ok(t) => t,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        // Listen before reading the store so nothing falls between the two.
        let mut rx = self.node.subscribe();
        let stored = self.node.packets(tag).await.map_err(node_error)?;
        let sink = pending.accept().await?;
        let mut last_seq = 0;
        for (seq, p) in stored {
            last_seq = last_seq.max(seq);
            if let Some(item) = emit(&tag, seq, &p, true) {
                if sink.send(item?).await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            let batch: Vec<(u64, Packet)> = tokio::select! {
                _ = sink.closed() => return Ok(()),
                _ = self.node.shutdown_token().cancelled() => return Ok(()),
                ev = rx.recv() => match ev {
                    Ok(batch) => batch
                        .iter()
                        .filter(|ev| ev.packet.tag == tag)
                        .map(|ev| (ev.seq, ev.packet.clone()))
                        .collect(),
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "subscription lagged; rereading the store");
                        self.node
                            .packets(tag)
                            .await
                            .map_err(node_error)?
                            .into_iter()
                            .filter(|(seq, _)| *seq > last_seq)
                            .collect()
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            };
            for (seq, p) in batch {
                if seq <= last_seq {
                    continue;
                }
                last_seq = seq;
                if let Some(item) = emit(&tag, seq, &p, false) {
                    if sink.send(item?).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Start serving on `bind` (port 0 picks a free port). Returns the bound address and a handle
/// whose `stop()` ends the server.
pub async fn start(
    methods: RpcImpl,
    bind: SocketAddr,
    creds: Credentials,
    max_body_bytes: u32,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let middleware = tower::ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            http::header::AUTHORIZATION,
        ]))
        .layer(ValidateRequestHeaderLayer::custom(creds.validator()));
    let config = ServerConfig::builder()
        .max_request_body_size(max_body_bytes)
        .max_response_body_size(max_body_bytes)
        .build();
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(middleware)
        .build(bind)
        .await?;
    let addr = server.local_addr()?;
    let handle = server.start(methods.into_rpc());
    Ok((addr, handle))
}
