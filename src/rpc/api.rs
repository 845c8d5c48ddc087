//! JSON-RPC methods of a BuMP node and their parameter and result shapes.
//!
//! Methods are in the `bump_` namespace (documented in docs/rpc.md). Tags given to methods
//! follow the command line's rule: 40 hex digits are a tag, anything else is a human tag.
//! Binary data travels as standard base64.

use crate::packet::PacketJson;
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};

/// Error codes returned by the node. They sit at -32101 and below so they never collide with
/// the codes the JSON-RPC server itself uses (-32000 to -32011: oversized request or
/// response, server busy, ...), which docs/rpc.md lists too.
pub mod codes {
    /// Bad parameters: malformed tag, base64, message id, or options.
    pub const INVALID_PARAMS: i32 = -32602;
    /// A message over the node's size limit.
    pub const MESSAGE_TOO_LARGE: i32 = -32101;
    /// The store is full and nothing has expired.
    pub const STORE_FULL: i32 = -32102;
    /// A packet is malformed or outside the accepted expiry window.
    pub const INVALID_PACKET: i32 = -32103;
    /// The node failed internally (storage error).
    pub const INTERNAL: i32 = -32104;
    /// A TTL outside the accepted range.
    pub const BAD_TTL: i32 = -32105;
    /// The node has no namecoind configured.
    pub const NO_NAMECOIND: i32 = -32106;
    /// namecoind failed or could not be reached (message says which).
    pub const NAMECOIND: i32 = -32107;
    /// A mix name that does not exist or whose record is rejected.
    pub const BAD_MIX: i32 = -32108;
    /// A reply would exceed the response size limit: page through it instead.
    pub const TOO_BIG: i32 = -32109;
    /// A keyring problem: no such identity or group, a bad identity string, an unreadable
    /// keyring file.
    pub const KEYRING: i32 = -32110;
}

pub fn rpc_error(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    pub tag: String,
    /// Message bytes, base64.
    pub data: String,
    /// Time-to-live in seconds; default: the node's maximum TTL.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Send through these mixes, first hop first: public keys (66 hex digits) or Namecoin
    /// names (`bump/<label>`, looked up through namecoind).
    #[serde(default)]
    pub via: Option<Vec<String>>,
    /// Send through this many random distinct mixes from the directory (0 = unmixed).
    /// Default without `via`: 3 when the node has namecoind, else 0.
    #[serde(default)]
    pub hops: Option<usize>,
    /// Postage per hop, `TXID:VOUT` (empty string: none). Hops not given here whose record
    /// asks a fee are paid from the node's namecoind wallet.
    #[serde(default)]
    pub postage: Option<Vec<String>>,
    /// Standard Tau level at every mix: none, low, standard, high (default: standard).
    #[serde(default)]
    pub tau: Option<String>,
    /// Tau minimum crowd at every mix, overriding the level's.
    #[serde(default)]
    pub crowd: Option<u64>,
    /// Tau minimum delay in seconds at every mix, overriding the level's.
    #[serde(default)]
    pub delay: Option<u64>,
}

/// `bump_sealedsend`: seal `data` for a group or identities of the node's keyring, then send
/// it as `bump_send` would (same routing options).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSendParams {
    /// A group of the keyring.
    #[serde(default)]
    pub group: Option<String>,
    /// Recipients' identity strings (`bumpid1…`).
    #[serde(default)]
    pub to: Option<Vec<String>>,
    /// Sign with this identity of the keyring (inside the ciphertext).
    #[serde(default)]
    pub from: Option<String>,
    /// Message bytes, base64.
    pub data: String,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub via: Option<Vec<String>>,
    #[serde(default)]
    pub hops: Option<usize>,
    #[serde(default)]
    pub postage: Option<Vec<String>>,
    #[serde(default)]
    pub tau: Option<String>,
    #[serde(default)]
    pub crowd: Option<u64>,
    #[serde(default)]
    pub delay: Option<u64>,
}

impl SealedSendParams {
    /// A `bump_send` request sealed for a group or recipients: its data and routing as they
    /// are (its tag is not used: the tags come from the group or the recipients).
    pub fn sealing(
        p: SendParams,
        group: Option<String>,
        to: Option<Vec<String>>,
        from: Option<String>,
    ) -> SealedSendParams {
        SealedSendParams {
            group,
            to,
            from,
            data: p.data,
            ttl: p.ttl,
            via: p.via,
            hops: p.hops,
            postage: p.postage,
            tau: p.tau,
            crowd: p.crowd,
            delay: p.delay,
        }
    }

    /// The `bump_send` request that carries one envelope (base64 `data`) under `tag`.
    pub fn envelope(&self, tag: String, data: String) -> SendParams {
        SendParams {
            tag,
            data,
            ttl: self.ttl,
            via: self.via.clone(),
            hops: self.hops,
            postage: self.postage.clone(),
            tau: self.tau.clone(),
            crowd: self.crowd,
            delay: self.delay,
        }
    }
}

/// `bump_sealedget`: a group's messages, or the inbox of one identity (or of all).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedGetParams {
    #[serde(default)]
    pub group: Option<String>,
    /// Inbox of this identity; with neither field, the inboxes of every identity.
    #[serde(default)]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedMessageJson {
    /// The identity (keyring name) a direct message was for; absent for a group message.
    pub to: Option<String>,
    /// The signer's identity string, when signed (the signature verified).
    pub sender: Option<String>,
    /// "unsigned", "valid" (signer in this keyring) or "valid, unverified key".
    pub signature: String,
    /// The sealed timestamp (unix s).
    pub time: u64,
    /// Base64 of the message bytes.
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedResult {
    /// Oldest first; a replayed envelope once.
    pub messages: Vec<SealedMessageJson>,
    /// Envelopes that did not open, by reason.
    pub skipped: std::collections::BTreeMap<String, usize>,
}

/// An identity of the keyring: its name and public string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityJson {
    pub name: String,
    /// `bumpid1…`
    pub id: String,
}

/// A group of the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJson {
    pub name: String,
    /// "random" (an invite-string key) or "passphrase" (argon2id of a shared passphrase).
    pub kind: String,
}

/// `bump_groupjoin`: exactly one of `passphrase` and `invite`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupJoinParams {
    pub name: String,
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub invite: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResult {
    pub msgid: String,
    pub tag: String,
    pub packets: usize,
    pub bytes: usize,
    pub expires: u32,
    /// Through how many mixes, the node's own first (0 = published unmixed).
    #[serde(default)]
    pub hops: usize,
    /// A word for the user (sent unmixed for want of mixes, a crowd that may not fill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetOptions {
    /// Only this message (32 hex digits).
    #[serde(default)]
    pub msgid: Option<String>,
    /// Only the most recently completed message.
    #[serde(default)]
    pub last: bool,
    /// Leave out the data (for listings).
    #[serde(default)]
    pub no_data: bool,
    /// Only messages completed after this seq (a previous page's last `seq`).
    #[serde(default)]
    pub after: Option<u64>,
    /// Stop adding messages once their data passes this many bytes (at least one message is
    /// returned); `more` says whether any were left. Default and cap: the node's page size.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageJson {
    pub msgid: String,
    pub tag: String,
    /// Base64 of the message bytes; empty when `no_data` was asked.
    pub data: String,
    pub size: usize,
    pub parts: u16,
    /// Arrival sequence number of the part that completed it.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialJson {
    pub msgid: String,
    pub have: u16,
    pub count: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagesResult {
    pub tag: String,
    pub messages: Vec<MessageJson>,
    pub partial: Vec<PartialJson>,
    /// Packets under the tag that carry no message frame (e.g. onion packets).
    pub unframed: usize,
    /// Packets of the tag whose bytes on disk are damaged, by segment file (one entry each):
    /// their messages cannot complete.
    #[serde(default)]
    pub damaged: Vec<String>,
    /// More complete messages follow: ask again with `after` = the last message's `seq`.
    #[serde(default)]
    pub more: bool,
}

/// One packet of a `subscribepackets` stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PacketEvent {
    /// The node's arrival sequence number.
    pub seq: u64,
    /// True for packets the node held when the subscription began (sent first).
    pub stored: bool,
    #[serde(flatten)]
    pub packet: PacketJson,
}

/// One page of a tag's raw packets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PacketPage {
    pub packets: Vec<PacketJson>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default)]
    pub next: Option<u64>,
    /// Packets of the tag whose bytes on disk are damaged, by segment file.
    #[serde(default)]
    pub damaged: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportResult {
    pub accepted: usize,
    pub duplicates: usize,
}

pub use crate::node::AdmissionStatus;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DamagedSegment {
    pub segment: String,
    pub packets: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResult {
    pub version: String,
    pub network: String,
    pub datadir: String,
    pub packets: u64,
    pub max_packets: u64,
    pub store_bytes_on_disk: u64,
    /// Segment files with damaged records, and how many (found at a rebuild or on reads).
    #[serde(default)]
    pub store_damaged: Vec<DamagedSegment>,
    /// Why and how the index was rebuilt from the segment files at start, if it was.
    #[serde(default)]
    pub index_rebuilt: Option<String>,
    pub max_ttl: u32,
    pub max_message_size: usize,
    pub uptime_secs: u64,
    /// Sealed envelopes that did not open when read through `bump_sealedget`, by reason,
    /// since start.
    #[serde(default)]
    pub sealed_skipped: std::collections::BTreeMap<String, u64>,
    /// Admission (docs/admission.md): the network's base work, this node's floor now (work
    /// per TTL a new packet needs), the highest floor a peer announced, and packets being
    /// solved by sends in progress.
    #[serde(default)]
    pub admission: Option<AdmissionStatus>,
    /// P2P overlay state (absent when the node runs without P2P).
    #[serde(default)]
    pub p2p: Option<crate::p2p::overlay::SyncStatus>,
    /// This node's mix (absent when it runs none).
    #[serde(default)]
    pub mix: Option<crate::mix::MixStats>,
}

#[rpc(server, client, namespace = "bump")]
pub trait BumpApi {
    /// Split a message into packets under a tag and store them; returns once durable.
    #[method(name = "send")]
    async fn send(&self, params: SendParams) -> RpcResult<SendResult>;

    /// Seal a message for a group or identities of the node's keyring and send it; one
    /// result per envelope (direct messages: one per recipients' inbox bucket).
    #[method(name = "sealedsend")]
    async fn sealed_send(&self, params: SealedSendParams) -> RpcResult<Vec<SendResult>>;

    /// Send an envelope sealed elsewhere (e.g. by `bump speakeasy`) in sealed parts
    /// (protocol.md §8.4): `send.data` is the carried bytes, `frame_key` (64 hex) the key of
    /// the parts' frames, `head` (base64, 416 bytes) a direct envelope's head. The node learns
    /// the frame headers, never the envelope's contents.
    #[method(name = "sendframed")]
    async fn send_framed(
        &self,
        send: SendParams,
        frame_key: String,
        head: Option<String>,
    ) -> RpcResult<SendResult>;

    /// Open the sealed messages of a group, or of inboxes, with the node's keyring.
    #[method(name = "sealedget")]
    async fn sealed_get(&self, params: SealedGetParams) -> RpcResult<SealedResult>;

    /// Make an identity in the node's keyring; returns its public string.
    #[method(name = "idnew")]
    async fn id_new(&self, name: String) -> RpcResult<IdentityJson>;

    /// The keyring's identities.
    #[method(name = "idlist")]
    async fn id_list(&self) -> RpcResult<Vec<IdentityJson>>;

    /// Add an identity from its secret string (`bumpsec1…`).
    #[method(name = "idimport")]
    async fn id_import(&self, name: String, secret: String) -> RpcResult<IdentityJson>;

    /// An identity's secret string (`bumpsec1…`), for `idimport` elsewhere.
    #[method(name = "idexport")]
    async fn id_export(&self, name: String) -> RpcResult<String>;

    /// Make a group with a random key; returns its invite string (`bumpgrp1…`).
    #[method(name = "groupnew")]
    async fn group_new(&self, name: String) -> RpcResult<String>;

    /// Join a group by invite string or shared passphrase.
    #[method(name = "groupjoin")]
    async fn group_join(&self, params: GroupJoinParams) -> RpcResult<GroupJson>;

    /// A group's invite string (`bumpgrp1…`): whoever holds it reads and writes the group.
    #[method(name = "groupinvite")]
    async fn group_invite(&self, name: String) -> RpcResult<String>;

    /// The keyring's groups.
    #[method(name = "grouplist")]
    async fn group_list(&self) -> RpcResult<Vec<GroupJson>>;

    /// Forget a group.
    #[method(name = "groupleave")]
    async fn group_leave(&self, name: String) -> RpcResult<bool>;

    /// Complete messages of a tag (in completion order) and the incomplete ones.
    #[method(name = "getmessages")]
    async fn get_messages(
        &self,
        tag: String,
        options: Option<GetOptions>,
    ) -> RpcResult<MessagesResult>;

    /// Raw packets of a tag in interchange form, in arrival order (a tag too large for one
    /// reply is refused with TOO_BIG: use `packetpage`).
    #[method(name = "getpackets")]
    async fn get_packets(&self, tag: String) -> RpcResult<Vec<PacketJson>>;

    /// A page of a tag's raw packets: those with seq > `after`, at most `limit` (default and
    /// cap 4096).
    #[method(name = "packetpage")]
    async fn packet_page(
        &self,
        tag: String,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> RpcResult<PacketPage>;

    /// Store packets given in interchange form. All are checked first; if one is invalid,
    /// none is stored.
    #[method(name = "importpackets")]
    async fn import_packets(&self, packets: Vec<PacketJson>) -> RpcResult<ImportResult>;

    /// Node status.
    #[method(name = "status")]
    async fn status(&self) -> RpcResult<StatusResult>;

    /// The mix role: public key, tag, pool size, released and dropped counts.
    #[method(name = "mixstatus")]
    async fn mix_status(&self) -> RpcResult<crate::mix::MixStats>;

    /// The mix directory: valid mix records and rejected ones with reasons.
    #[method(name = "mixes")]
    async fn mixes(&self, refresh: Option<bool>) -> RpcResult<crate::names::directory::Listing>;

    /// Publish (or change) this node's mix record as `bump/<label>`; resumable.
    #[method(name = "namepublish")]
    async fn name_publish(
        &self,
        label: String,
        fee: Option<u64>,
        p2p: Option<String>,
    ) -> RpcResult<crate::names::publish::PublishState>;

    /// The names this node publishes and their stage.
    #[method(name = "namestatus")]
    async fn name_status(&self) -> RpcResult<Vec<crate::names::publish::PublishState>>;

    /// Connected peers.
    /// For each packet id (64 hex): how many connected BuMP peers are known to hold it
    /// (announced or sent it to us, or were sent its announcement). Empty without P2P.
    #[method(name = "packetholders")]
    async fn packet_holders(&self, ids: Vec<String>) -> RpcResult<Vec<usize>>;

    #[method(name = "peers")]
    async fn peers(&self) -> RpcResult<Vec<crate::p2p::overlay::PeerRow>>;

    /// Shut the node down cleanly.
    #[method(name = "stop")]
    async fn stop(&self) -> RpcResult<String>;

    /// Push every message of a tag as soon as it is complete (WebSocket only).
    #[subscription(name = "subscribe" => "message", unsubscribe = "unsubscribe", item = MessageJson)]
    async fn subscribe_messages(&self, tag: String) -> SubscriptionResult;

    /// Push every packet of a tag: those stored first (`stored: true`), then each new one as
    /// it arrives (WebSocket only). Sealed messages are read this way (§8.4).
    #[subscription(name = "subscribepackets" => "packet", unsubscribe = "unsubscribepackets", item = PacketEvent)]
    async fn subscribe_packets(&self, tag: String) -> SubscriptionResult;
}
