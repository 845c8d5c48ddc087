//! The JSON-RPC server: method implementations over a [`Node`], served by jsonrpsee on a
//! loopback address behind [`auth`](super::auth). HTTP and WebSocket share one port.

use super::api::{
    codes, rpc_error, BumpApiServer, GetOptions, ImportResult, MessageJson, MessagesResult,
    PartialJson, SendParams, SendResult, StatusResult,
};
use super::auth::Credentials;
use crate::message::{Assembler, CompleteMessage, MessageError, MessageId};
use crate::mix::postage::Postage;
use crate::mix::send::{wrap_message, RoutePolicy, SendError};
use crate::mix::{MixStats, Mixer};
use crate::names::directory::DirectoryError;
use crate::names::NamesCtx;
use crate::node::{Node, NodeError};
use crate::p2p::overlay::PeerRow;
use crate::p2p::Overlay;
use crate::packet::{Packet, PacketJson};
use crate::store::StoreError;
use crate::tag::Tag;
use base64::Engine as _;
use jsonrpsee::core::{async_trait, RpcResult, SubscriptionResult};
use jsonrpsee::server::{PendingSubscriptionSink, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use secp256k1::PublicKey;
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
        NodeError::Message(MessageError::BadFrame(_)) => codes::INVALID_PARAMS,
        NodeError::TtlTooLong { .. } | NodeError::TtlTooShort => codes::BAD_TTL,
        NodeError::Store(StoreError::Full { .. }) => codes::STORE_FULL,
        NodeError::Store(_) => {
            tracing::error!("store error: {e}");
            codes::INTERNAL
        }
    };
    rpc_error(code, e.to_string())
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

pub struct RpcImpl {
    node: Arc<Node>,
    overlay: Option<Arc<Overlay>>,
    mix: Option<Arc<Mixer>>,
    names: Option<Arc<NamesCtx>>,
}

fn dir_error(e: DirectoryError) -> jsonrpsee::types::ErrorObjectOwned {
    match e {
        DirectoryError::Rpc(e) => rpc_error(codes::NAMECOIND, format!("namecoind: {e}")),
        e => rpc_error(codes::BAD_MIX, e.to_string()),
    }
}

impl RpcImpl {
    pub fn new(
        node: Arc<Node>,
        overlay: Option<Arc<Overlay>>,
        mix: Option<Arc<Mixer>>,
        names: Option<Arc<NamesCtx>>,
    ) -> Self {
        RpcImpl {
            node,
            overlay,
            mix,
            names,
        }
    }

    fn names(&self) -> RpcResult<&Arc<NamesCtx>> {
        self.names.as_ref().ok_or_else(|| {
            rpc_error(
                codes::NO_NAMECOIND,
                "this node has no namecoind: start it with --namecoind URL (see bump node --help)",
            )
        })
    }

    /// The route for a send: keys and, per hop, the fee its record asks (0 for bare keys).
    async fn route(&self, params: &SendParams) -> RpcResult<Vec<(PublicKey, u64, Option<String>)>> {
        let via: Vec<String> = params.via.clone().unwrap_or_default();
        if !via.is_empty() {
            let mut out = Vec::new();
            for v in &via {
                if let Some(k) =
                    crate::onion::layer::parse_mix_key(v).filter(|_| v.trim().len() == 66)
                {
                    out.push((k, 0, None));
                } else if v.starts_with(crate::names::record::NAMESPACE) {
                    let e = self
                        .names()?
                        .chain
                        .directory
                        .resolve(v)
                        .await
                        .map_err(dir_error)?;
                    out.push((e.record.public_key(), e.record.fee, e.record.pay.clone()));
                } else {
                    return Err(rpc_error(
                        codes::INVALID_PARAMS,
                        format!(
                            "not a mix public key (66 hex digits) or a mix name (bump/...): {v:?}"
                        ),
                    ));
                }
            }
            let distinct: std::collections::HashSet<_> = out.iter().map(|(k, _, _)| *k).collect();
            if distinct.len() != out.len() {
                return Err(rpc_error(
                    codes::INVALID_PARAMS,
                    "a route must not repeat a mix",
                ));
            }
            return Ok(out);
        }
        let hops = match (params.hops, &self.names) {
            (Some(h), _) => h,
            (None, Some(n)) => n.default_hops,
            (None, None) => 0,
        };
        if hops == 0 {
            return Ok(vec![]);
        }
        let picked = self
            .names()?
            .chain
            .directory
            .pick(hops)
            .await
            .map_err(dir_error)?;
        Ok(picked
            .into_iter()
            .map(|e| (e.record.public_key(), e.record.fee, e.record.pay.clone()))
            .collect())
    }

    /// Postage fields per hop: given ones, else paid now from the wallet when a fee is asked.
    async fn postage(
        &self,
        route: &[(PublicKey, u64, Option<String>)],
        given: &[String],
        packets: usize,
    ) -> RpcResult<Vec<Option<[u8; 36]>>> {
        let mut out = Vec::new();
        for (i, (_, fee, pay)) in route.iter().enumerate() {
            match given
                .get(i)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty() && *s != "-")
            {
                Some(s) => {
                    let field = s
                        .split_once(':')
                        .and_then(|(t, v)| Postage::field(t, v.parse().ok()?))
                        .ok_or_else(|| {
                            rpc_error(
                                codes::INVALID_PARAMS,
                                format!("postage must be TXID:VOUT, got {s:?}"),
                            )
                        })?;
                    out.push(Some(field));
                }
                None if *fee > 0 => {
                    let client = &self.names()?.chain.client;
                    let pay = pay.clone().unwrap_or_default();
                    let amount = fee * packets as u64;
                    let nc = |e: namecoin::rpc::RpcError| {
                        rpc_error(codes::NAMECOIND, format!("paying postage to {pay}: {e}"))
                    };
                    let txid = client.sendtoaddress(&pay, amount).await.map_err(nc)?;
                    let tx = client.getrawtransaction_verbose(&txid).await.map_err(nc)?;
                    let vout = tx
                        .vout
                        .iter()
                        .find(|o| {
                            o.script_pub_key.address.as_deref() == Some(pay.as_str())
                                && o.value == amount
                        })
                        .map(|o| o.n)
                        .ok_or_else(|| {
                            rpc_error(
                                codes::NAMECOIND,
                                format!("postage tx {txid} has no output to {pay}"),
                            )
                        })?;
                    tracing::info!(hop = i, sat = amount, "postage paid");
                    out.push(Postage::field(&txid, vout));
                }
                None => out.push(None),
            }
        }
        Ok(out)
    }

    /// `bump_send` with `via`: wrap each part in an onion for the route and publish it.
    async fn send_via(
        &self,
        tag: Tag,
        data: &[u8],
        params: &SendParams,
        hops: &[(PublicKey, u64, Option<String>)],
    ) -> RpcResult<SendResult> {
        let route: Vec<PublicKey> = hops.iter().map(|(k, _, _)| *k).collect();
        if route.is_empty() || route.len() > crate::onion::layer::MAX_HOPS {
            return Err(rpc_error(
                codes::INVALID_PARAMS,
                format!("a route has 1 to {} mixes", crate::onion::layer::MAX_HOPS),
            ));
        }
        let now = crate::unix_now();
        let ttl = params.ttl.unwrap_or(self.node.limits().max_ttl);
        if ttl > self.node.limits().max_ttl || ttl < 60 {
            return Err(rpc_error(
                codes::BAD_TTL,
                format!("ttl must be 60..={} seconds", self.node.limits().max_ttl),
            ));
        }
        let level = match params.tau.as_deref() {
            Some(name) => crate::mix::tau::TauLevel::named(name).ok_or_else(|| {
                rpc_error(
                    codes::INVALID_PARAMS,
                    format!(
                        "unknown Tau level {name:?}; the levels are {}",
                        crate::mix::tau::TauLevel::names()
                    ),
                )
            })?,
            None => crate::mix::tau::TauLevel::default_level(),
        };
        let pol = RoutePolicy {
            crowd: params.crowd.unwrap_or(level.crowd),
            delay_secs: params.delay.unwrap_or(level.delay_secs),
            expires: crate::node::quantized_expiry(now, ttl),
        };
        let given = params.postage.as_deref().unwrap_or(&[]);
        let placeholder: Vec<Option<[u8; 36]>> = hops
            .iter()
            .enumerate()
            .map(|(i, (_, fee, _))| {
                let explicit = given
                    .get(i)
                    .is_some_and(|s| !s.trim().is_empty() && s.trim() != "-");
                (explicit || *fee > 0).then_some([0u8; 36])
            })
            .collect();
        let per_part = crate::mix::send::part_capacity_with(&route, pol, &placeholder);
        if per_part == 0 {
            return Err(rpc_error(
                codes::INVALID_PARAMS,
                "route has no room for data",
            ));
        }
        let parts = data.len().div_ceil(per_part).max(1);
        if data.len() > self.node.limits().max_message || parts > crate::message::MAX_PARTS {
            return Err(rpc_error(
                codes::MESSAGE_TOO_LARGE,
                format!(
                    "message of {} bytes is too large for this route",
                    data.len()
                ),
            ));
        }
        let postage = self.postage(hops, given, parts).await?;
        let (id, packets) = wrap_message(
            data,
            tag,
            &route,
            pol,
            &postage,
            self.node.limits().max_message,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| match e {
            SendError::Message(MessageError::TooLarge { .. }) => {
                rpc_error(codes::MESSAGE_TOO_LARGE, e.to_string())
            }
            e => rpc_error(codes::INVALID_PARAMS, e.to_string()),
        })?;
        let n = packets.len();
        self.node.admit(packets, now).await.map_err(node_error)?;
        Ok(SendResult {
            msgid: id.to_hex(),
            tag: tag.to_hex(),
            packets: n,
            bytes: data.len(),
            expires: pol.expires,
        })
    }
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
        let route = self.route(&params).await?;
        if !route.is_empty() {
            return self.send_via(tag, &data, &params, &route).await;
        }
        let (id, packets, expires) = self
            .node
            .send_message(tag, &data, params.ttl, crate::unix_now())
            .await
            .map_err(node_error)?;
        tracing::debug!(packets, "message stored");
        Ok(SendResult {
            msgid: id.to_hex(),
            tag: tag.to_hex(),
            packets,
            bytes: data.len(),
            expires,
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
        let (mut done, mut partial, unframed) =
            self.node.messages(tag).await.map_err(node_error)?;
        if let Some(id) = want {
            done.retain(|m| m.id == id);
            partial.retain(|p| p.id == id);
        }
        if opts.last && done.len() > 1 {
            done.drain(..done.len() - 1);
        }
        Ok(MessagesResult {
            tag: tag.to_hex(),
            messages: done
                .iter()
                .map(|m| message_json(&tag, m, !opts.no_data))
                .collect(),
            partial: partial
                .iter()
                .map(|p| PartialJson {
                    msgid: p.id.to_hex(),
                    have: p.have,
                    count: p.count,
                })
                .collect(),
            unframed,
        })
    }

    async fn get_packets(&self, tag: String) -> RpcResult<Vec<PacketJson>> {
        let tag = parse_tag(&tag)?;
        let packets = self.node.packets(tag).await.map_err(node_error)?;
        Ok(packets.iter().map(|(_, p)| p.to_json()).collect())
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
            max_ttl: self.node.limits().max_ttl,
            max_message_size: self.node.limits().max_message,
            uptime_secs: self.node.uptime().as_secs(),
            p2p: self.overlay.as_ref().map(|o| o.sync_status()),
            mix: self.mix.as_ref().map(|m| m.stats()),
        })
    }

    async fn mix_status(&self) -> RpcResult<MixStats> {
        self.mix
            .as_ref()
            .map(|m| m.stats())
            .ok_or_else(|| rpc_error(codes::INTERNAL, "this node runs no mix"))
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
        let tag = match parse_tag(&tag) {
            Ok(t) => t,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        // Listen before reading the store so nothing falls between the two.
        let mut rx = self.node.subscribe();
        let mut asm = Assembler::new();
        let mut last_seq = 0;
        for (seq, p) in self.node.packets(tag).await.map_err(node_error)? {
            asm.push(seq, &p);
            last_seq = last_seq.max(seq);
        }
        let sink = pending.accept().await?;
        loop {
            let batch: Vec<(u64, Arc<Packet>)> = tokio::select! {
                _ = sink.closed() => return Ok(()),
                _ = self.node.shutdown_token().cancelled() => return Ok(()),
                ev = rx.recv() => match ev {
                    Ok(ev) if ev.packet.tag == tag => vec![(ev.seq, ev.packet)],
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "subscription lagged; rereading the store");
                        self.node
                            .packets(tag)
                            .await
                            .map_err(node_error)?
                            .into_iter()
                            .filter(|(seq, _)| *seq > last_seq)
                            .map(|(s, p)| (s, Arc::new(p)))
                            .collect()
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            };
            for (seq, p) in batch {
                last_seq = last_seq.max(seq);
                if let Some(m) = asm.push(seq, &p) {
                    let item = serde_json::value::to_raw_value(&message_json(&tag, m, true))?;
                    if sink.send(item).await.is_err() {
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
    node: Arc<Node>,
    overlay: Option<Arc<Overlay>>,
    mix: Option<Arc<Mixer>>,
    names: Option<Arc<NamesCtx>>,
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
    let handle = server.start(RpcImpl::new(node, overlay, mix, names).into_rpc());
    Ok((addr, handle))
}
