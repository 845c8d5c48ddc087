//! The send service: everything between "send these bytes under this tag" and packets in the
//! store. It owns the choices a send makes — which mixes (given keys, Namecoin names, or random
//! directory mixes), the one TTL and Tau check, postage (given outpoints or paid now from the
//! namecoind wallet), wrapping each part in its onion ([`super::route`]) — and publishes through
//! the node's admission. The RPC server only translates to and from JSON; cover traffic and
//! loop packets take their mixes and their [`RoutePolicy`] from here too, so every packet this
//! node makes follows the same rules.

use super::postage::Postage;
use super::route::{part_capacity_with, wrap_message, RoutePolicy};
use super::tau::{Tau, UnknownLevel};
use crate::message::{MessageError, MessageId};
use crate::names::directory::DirectoryError;
use crate::names::NamesCtx;
use crate::node::{quantized_expiry, Node, NodeError};
use crate::onion::layer::{parse_mix_key, MAX_HOPS};
use crate::packet::Packet;
use crate::tag::Tag;
use secp256k1::PublicKey;
use std::collections::HashSet;
use std::sync::Arc;

/// One hop of a resolved route: the mix's key, the fee its record asks (0 for bare keys), and
/// where that fee is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub key: PublicKey,
    pub fee: u64,
    pub pay: Option<String>,
}

impl Hop {
    fn bare(key: PublicKey) -> Hop {
        Hop {
            key,
            fee: 0,
            pay: None,
        }
    }
}

/// What a user asks to send.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub tag: Option<Tag>,
    pub data: Vec<u8>,
    /// Seconds; `None` = the node's maximum.
    pub ttl: Option<u32>,
    /// Mixes first hop first: public keys (66 hex) or names (`bump/...`).
    pub via: Vec<String>,
    /// Random directory mixes; `None` = the node's default (3 with namecoind, else 0).
    pub hops: Option<usize>,
    /// Tau level name and expert overrides.
    pub tau: Option<String>,
    pub crowd: Option<u64>,
    pub delay_secs: Option<u64>,
    /// Postage per hop, `TXID:VOUT`, empty or `-` for none.
    pub postage: Vec<String>,
}

/// What a send produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub msgid: MessageId,
    pub tag: Tag,
    pub packets: usize,
    pub bytes: usize,
    pub expires: u32,
    /// Mixes the message went through (0 = published as is).
    pub hops: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no tag given")]
    NoTag,
    #[error(transparent)]
    Tau(#[from] UnknownLevel),
    #[error("not a mix public key (66 hex digits) or a mix name (bump/...): {0:?}")]
    NotAMix(String),
    #[error("a route must not repeat a mix")]
    RepeatedMix,
    #[error("a route has 1 to {MAX_HOPS} mixes")]
    RouteLength,
    #[error("route has no room for data")]
    NoRoom,
    #[error("message of {size} bytes is too large for this route")]
    TooLargeForRoute { size: usize },
    #[error("postage must be TXID:VOUT, got {0:?}")]
    PostageField(String),
    #[error("this node has no namecoind: start it with --namecoind URL (see bump node --help)")]
    NoNamecoind,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("paying postage to {pay}: {err}")]
    Payment { pay: String, err: String },
    #[error(transparent)]
    Wrap(#[from] super::route::WrapError),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Where cover traffic and loop packets find mixes.
#[derive(Clone)]
pub enum RouteSource {
    /// These mixes (`--cover-via`).
    Fixed(Vec<PublicKey>),
    /// Valid directory mixes whose record asks no fee.
    Directory(Arc<crate::names::Chain>),
}

impl RouteSource {
    /// The mixes to choose from now (empty when there are none, or the directory is out of
    /// reach and has no cached listing).
    pub async fn candidates(&self) -> Vec<PublicKey> {
        match self {
            RouteSource::Fixed(v) => v.clone(),
            RouteSource::Directory(chain) => match chain.directory.listing(false).await {
                Ok(l) => l
                    .mixes
                    .iter()
                    .filter(|e| e.record.fee == 0)
                    .map(|e| e.record.public_key())
                    .collect(),
                Err(e) => {
                    tracing::debug!("directory unavailable for cover routes: {e}");
                    Vec::new()
                }
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RouteSource::Fixed(v) => format!("{} given mixes", v.len()),
            RouteSource::Directory(_) => "fee-free directory mixes".into(),
        }
    }
}

/// The node's send service.
pub struct SendService {
    node: Arc<Node>,
    names: Option<Arc<NamesCtx>>,
    own: Option<RouteSource>,
}

impl SendService {
    /// `own_via`: mixes for the node's own traffic (cover, loops); empty = the directory's
    /// fee-free mixes when there is a directory.
    pub fn new(
        node: Arc<Node>,
        names: Option<Arc<NamesCtx>>,
        own_via: Vec<PublicKey>,
    ) -> SendService {
        let own = if !own_via.is_empty() {
            Some(RouteSource::Fixed(own_via))
        } else {
            names
                .as_ref()
                .map(|n| RouteSource::Directory(n.chain.clone()))
        };
        SendService { node, names, own }
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Where the node's own traffic (cover, loops) finds mixes, if anywhere.
    pub fn own_route(&self) -> Option<&RouteSource> {
        self.own.as_ref()
    }

    fn names(&self) -> Result<&Arc<NamesCtx>, SendError> {
        self.names.as_ref().ok_or(SendError::NoNamecoind)
    }

    /// The one TTL and Tau check: Tau values and the quantized expiry for a send at `now`.
    pub fn policy(&self, tau: Tau, ttl: Option<u32>, now: u32) -> Result<RoutePolicy, SendError> {
        let ttl = self.node.limits().check_ttl(ttl)?;
        Ok(RoutePolicy {
            crowd: tau.crowd,
            delay_secs: tau.delay_secs,
            expires: quantized_expiry(now, ttl),
        })
    }

    /// The policy of the node's own packets (cover, loops): like [`SendService::policy`], with
    /// their TTL capped at the node's maximum.
    pub fn own_policy(&self, tau: Tau, ttl: u32, now: u32) -> Result<RoutePolicy, SendError> {
        self.policy(tau, Some(ttl.min(self.node.limits().max_ttl)), now)
    }

    /// The route for a send: `via` as given (keys or names), else `hops` random directory
    /// mixes (default: the node's, 0 without namecoind).
    pub async fn route(&self, via: &[String], hops: Option<usize>) -> Result<Vec<Hop>, SendError> {
        if !via.is_empty() {
            let mut out = Vec::with_capacity(via.len());
            for v in via {
                if let Some(k) = parse_mix_key(v).filter(|_| v.trim().len() == 66) {
                    out.push(Hop::bare(k));
                } else if v.starts_with(crate::names::record::NAMESPACE) {
                    let e = self.names()?.chain.directory.resolve(v).await?;
                    out.push(Hop {
                        key: e.record.public_key(),
                        fee: e.record.fee,
                        pay: e.record.pay.clone(),
                    });
                } else {
                    return Err(SendError::NotAMix(v.clone()));
                }
            }
            let distinct: HashSet<_> = out.iter().map(|h| h.key).collect();
            if distinct.len() != out.len() {
                return Err(SendError::RepeatedMix);
            }
            return Ok(out);
        }
        let hops = match (hops, &self.names) {
            (Some(h), _) => h,
            (None, Some(n)) => n.default_hops,
            (None, None) => 0,
        };
        if hops == 0 {
            return Ok(vec![]);
        }
        let picked = self.names()?.chain.directory.pick(hops).await?;
        Ok(picked
            .into_iter()
            .map(|e| Hop {
                key: e.record.public_key(),
                fee: e.record.fee,
                pay: e.record.pay.clone(),
            })
            .collect())
    }

    /// A given postage field for hop `i`, if the user gave one.
    fn given_postage(given: &[String], i: usize) -> Option<&str> {
        given
            .get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty() && *s != "-")
    }

    /// Postage fields per hop: given ones, else paid now from the wallet when a fee is asked.
    pub async fn postage(
        &self,
        route: &[Hop],
        given: &[String],
        packets: usize,
    ) -> Result<Vec<Option<[u8; 36]>>, SendError> {
        let mut out = Vec::with_capacity(route.len());
        for (i, hop) in route.iter().enumerate() {
            match Self::given_postage(given, i) {
                Some(s) => {
                    let field = s
                        .split_once(':')
                        .and_then(|(t, v)| Postage::field(t, v.parse().ok()?))
                        .ok_or_else(|| SendError::PostageField(s.to_string()))?;
                    out.push(Some(field));
                }
                None if hop.fee > 0 => {
                    let client = &self.names()?.chain.client;
                    let pay = hop.pay.clone().unwrap_or_default();
                    let amount = hop.fee * packets as u64;
                    let fail = |e: namecoin::rpc::RpcError| SendError::Payment {
                        pay: pay.clone(),
                        err: e.to_string(),
                    };
                    let txid = client.sendtoaddress(&pay, amount).await.map_err(fail)?;
                    let tx = client
                        .getrawtransaction_verbose(&txid)
                        .await
                        .map_err(fail)?;
                    let vout = tx
                        .vout
                        .iter()
                        .find(|o| {
                            o.script_pub_key.address.as_deref() == Some(pay.as_str())
                                && o.value == amount
                        })
                        .map(|o| o.n)
                        .ok_or_else(|| SendError::Payment {
                            pay: pay.clone(),
                            err: format!("postage tx {txid} has no output to {pay}"),
                        })?;
                    tracing::info!(hop = i, sat = amount, "postage paid");
                    out.push(Postage::field(&txid, vout));
                }
                None => out.push(None),
            }
        }
        Ok(out)
    }

    /// Send a message: straight to its tag without mixes, or wrapped for a route.
    pub async fn send(&self, req: SendRequest) -> Result<Sent, SendError> {
        let tag = req.tag.ok_or(SendError::NoTag)?;
        let tau = Tau::resolve(req.tau.as_deref(), req.crowd, req.delay_secs)?;
        let now = crate::unix_now();
        let route = self.route(&req.via, req.hops).await?;
        if route.is_empty() {
            let (msgid, packets, expires) =
                self.node.send_message(tag, &req.data, req.ttl, now).await?;
            return Ok(Sent {
                msgid,
                tag,
                packets,
                bytes: req.data.len(),
                expires,
                hops: 0,
            });
        }
        if route.len() > MAX_HOPS {
            return Err(SendError::RouteLength);
        }
        let pol = self.policy(tau, req.ttl, now)?;
        let keys: Vec<PublicKey> = route.iter().map(|h| h.key).collect();
        // Capacity depends on which layers carry postage: reserve the field where it will be.
        let placeholder: Vec<Option<[u8; 36]>> = route
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (Self::given_postage(&req.postage, i).is_some() || h.fee > 0).then_some([0u8; 36])
            })
            .collect();
        let per_part = part_capacity_with(&keys, pol, &placeholder);
        if per_part == 0 {
            return Err(SendError::NoRoom);
        }
        let parts = req.data.len().div_ceil(per_part).max(1);
        let limit = self.node.limits().max_message;
        if req.data.len() > limit || parts > crate::message::MAX_PARTS {
            return Err(SendError::TooLargeForRoute {
                size: req.data.len(),
            });
        }
        let postage = self.postage(&route, &req.postage, parts).await?;
        let (msgid, packets) = wrap_message(
            &req.data,
            tag,
            &keys,
            pol,
            &postage,
            limit,
            &mut rand::rngs::OsRng,
        )?;
        let n = packets.len();
        self.publish(packets, now).await?;
        Ok(Sent {
            msgid,
            tag,
            packets: n,
            bytes: req.data.len(),
            expires: pol.expires,
            hops: route.len(),
        })
    }

    /// Solve the proof of work of packets this node made, then store (and so flood) them.
    pub async fn publish(&self, packets: Vec<Packet>, now: u32) -> Result<(), SendError> {
        let packets = self.node.solve(packets, now).await;
        self.node.publish(packets, now).await?;
        Ok(())
    }
}

impl SendError {
    /// Whether the message was too large (for RPC's error code).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            SendError::TooLargeForRoute { .. }
                | SendError::Wrap(super::route::WrapError::Message(
                    MessageError::TooLarge { .. }
                ))
                | SendError::Node(NodeError::Message(MessageError::TooLarge { .. }))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Limits, NodeInfo};
    use crate::onion::layer::{mix_tag, peel, test_mixes};
    use crate::store::{Store, StoreConfig};
    use tokio_util::sync::CancellationToken;

    fn service(dir: &std::path::Path) -> SendService {
        let store = Arc::new(Store::open(dir, &StoreConfig::default()).unwrap());
        let node = Arc::new(Node::new(
            store,
            Limits::default(),
            NodeInfo {
                network: namecoin::Network::Regtest,
                netdir: dir.to_path_buf(),
            },
            CancellationToken::new(),
        ));
        SendService::new(node, None, Vec::new())
    }

    fn req(tag: u8, data: &[u8]) -> SendRequest {
        SendRequest {
            tag: Some(Tag([tag; 20])),
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn unmixed_send_lands_under_its_tag() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let sent = s.send(req(1, b"hello")).await.unwrap();
        assert_eq!((sent.hops, sent.packets, sent.bytes), (0, 1, 5));
        let m = s.node().messages(Tag([1; 20])).await.unwrap();
        assert_eq!(m.done[0].data, b"hello");
        assert_eq!(m.done[0].id, sent.msgid);
    }

    #[tokio::test]
    async fn a_routed_send_is_stored_for_the_first_mix_and_peels_to_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (sk, pk) = test_mixes(2);
        let mut r = req(2, b"through two");
        r.via = pk.iter().map(|k| hex::encode(k.serialize())).collect();
        r.tau = Some("low".into());
        let sent = s.send(r).await.unwrap();
        assert_eq!(sent.hops, 2);
        assert_eq!(sent.expires % 60, 0, "quantized");
        let held = s.node().packets(mix_tag(&pk[0])).await.unwrap();
        assert_eq!(held.len(), 1);
        let mut p = held[0].1.clone();
        for (i, k) in sk.iter().enumerate() {
            let u = peel(k, &p, &mut rand::rngs::OsRng).unwrap();
            assert_eq!(
                (u.instructions.crowd, u.instructions.delay_secs),
                (2, 10),
                "hop {i} has the low level"
            );
            p = u.outgoing.unwrap();
        }
        assert_eq!(p.tag, Tag([2; 20]));
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (_, pk) = test_mixes(2);
        let key = hex::encode(pk[0].serialize());
        let mut r = req(3, b"x");
        r.via = vec![key.clone(), key.clone()];
        assert!(matches!(s.send(r).await, Err(SendError::RepeatedMix)));
        let mut r = req(3, b"x");
        r.via = vec!["alice".into()];
        assert!(matches!(s.send(r).await, Err(SendError::NotAMix(_))));
        let mut r = req(3, b"x");
        r.via = vec!["bump/alice".into()];
        assert!(matches!(s.send(r).await, Err(SendError::NoNamecoind)));
        let mut r = req(3, b"x");
        r.hops = Some(2);
        assert!(matches!(s.send(r).await, Err(SendError::NoNamecoind)));
        let mut r = req(3, b"x");
        r.via = vec![key.clone()];
        r.tau = Some("medium".into());
        assert!(matches!(s.send(r).await, Err(SendError::Tau(_))));
        for ttl in [59, Limits::default().max_ttl + 1] {
            let mut r = req(3, b"x");
            r.via = vec![key.clone()];
            r.ttl = Some(ttl);
            assert!(
                matches!(s.send(r).await, Err(SendError::Node(_))),
                "ttl {ttl} via a mix"
            );
            let mut r = req(3, b"x");
            r.ttl = Some(ttl);
            assert!(
                matches!(s.send(r).await, Err(SendError::Node(_))),
                "ttl {ttl} unmixed"
            );
        }
        let mut r = req(3, b"x");
        r.via = vec![key];
        r.postage = vec!["nothex:1".into()];
        assert!(matches!(s.send(r).await, Err(SendError::PostageField(_))));
        let mut r = req(3, &vec![0u8; Limits::default().max_message + 1]);
        r.via = vec![hex::encode(pk[1].serialize())];
        let e = s.send(r).await.unwrap_err();
        assert!(e.is_too_large(), "{e}");
        assert!(
            s.node().store().is_empty(),
            "nothing stored by a refused send"
        );
    }
}
