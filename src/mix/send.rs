//! The send service: everything between "send these bytes under this tag" and packets in the
//! store. It owns the choices a send makes — which mixes (given keys, Namecoin names, or random
//! directory mixes), the one TTL and Tau check, postage (given outpoints or paid now from the
//! namecoind wallet), wrapping each part in its onion ([`super::route`]) — and publishes through
//! the node's admission. The RPC server only translates to and from JSON; cover traffic and
//! loop packets take their mixes and their [`RoutePolicy`] from here too, so every packet this
//! node makes follows the same rules.

use super::gossip::MixBook;
use super::mixer::Mixer;
use super::postage::Postage;
use super::route::{final_capacity_with, wrap_parts, PartRoute, RoutePolicy};
use super::tau::{Tau, UnknownLevel};
use crate::message::{count_parts, ClearFramer, Framer, MessageError, MessageId};
use crate::names::directory::DirectoryError;
use crate::names::NamesCtx;
use crate::node::{mixed_expiry, Node, NodeError};
use crate::onion::layer::{parse_mix_key, MAX_HOPS};
use crate::packet::Packet;
use crate::tag::Tag;
use rand::RngCore;
use secp256k1::PublicKey;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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
    /// How parts are framed; `None` = in the clear (§3). Sealed messages frame inside the
    /// ciphertext (§8.4).
    pub framer: Option<std::sync::Arc<dyn Framer>>,
}

/// What a send produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub msgid: MessageId,
    pub tag: Tag,
    pub packets: usize,
    pub bytes: usize,
    pub expires: u32,
    /// Mixes the message went through (0 = published as is), our own included.
    pub hops: usize,
    /// Something the user should know about this send (sent unmixed for want of mixes, a
    /// crowd that may not fill): printed by `bump send` on stderr.
    pub note: Option<String>,
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
    #[error("{want} mixes asked for, this node knows {have} (from records on the bus; give --via, or wait for more)")]
    TooFewMixes { have: usize, want: usize },
    #[error("this node's mix did not take the packet: {0}")]
    OwnPool(String),
    #[error(transparent)]
    Mix(#[from] super::mixer::MixError),
}

/// Where cover traffic and loop packets find mixes.
#[derive(Clone)]
pub enum RouteSource {
    /// These mixes (`--cover-via`).
    Fixed(Vec<PublicKey>),
    /// Valid directory mixes whose record asks no fee (when the node has namecoind) and the
    /// mixes known from records on the bus.
    Network {
        directory: Option<Arc<crate::names::Chain>>,
        book: Option<Arc<MixBook>>,
    },
}

impl RouteSource {
    /// The mixes to choose from now (empty when there are none, or the directory is out of
    /// reach and has no cached listing).
    pub async fn candidates(&self) -> Vec<PublicKey> {
        match self {
            RouteSource::Fixed(v) => v.clone(),
            RouteSource::Network { directory, book } => {
                let mut v = book
                    .as_ref()
                    .map(|b| b.mixes(crate::unix_now()))
                    .unwrap_or_default();
                if let Some(chain) = directory {
                    match chain.directory.listing(false).await {
                        Ok(l) => v.extend(
                            l.mixes
                                .iter()
                                .filter(|e| e.record.fee == 0)
                                .map(|e| e.record.public_key()),
                        ),
                        Err(e) => tracing::debug!("directory unavailable for cover routes: {e}"),
                    }
                }
                v.sort_by_key(|k| k.serialize());
                v.dedup();
                v
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RouteSource::Fixed(v) => format!("{} given mixes", v.len()),
            RouteSource::Network {
                directory: Some(_),
                book: Some(_),
            } => "fee-free directory mixes and mixes known from the bus".into(),
            RouteSource::Network {
                directory: Some(_), ..
            } => "fee-free directory mixes".into(),
            RouteSource::Network { .. } => "mixes known from the bus".into(),
        }
    }
}

/// The node's send service.
pub struct SendService {
    node: Arc<Node>,
    names: Option<Arc<NamesCtx>>,
    own: Option<RouteSource>,
    /// This node's mix, once started: every mixed send's first layer is its own, peeled here.
    mixer: std::sync::OnceLock<Arc<Mixer>>,
    /// Mixes known from records on the bus: routes of sends when there is no directory.
    book: Option<Arc<MixBook>>,
    /// Remote mixes per send when it names neither `via` nor `hops` (capped at those known
    /// when they come from the bus).
    default_hops: usize,
    cover_on: std::sync::atomic::AtomicBool,
}

impl SendService {
    /// `own_via`: mixes for the node's own traffic (cover, loops); empty = the mixes known
    /// from the bus (`book`) and the directory's fee-free mixes.
    pub fn new(
        node: Arc<Node>,
        names: Option<Arc<NamesCtx>>,
        own_via: Vec<PublicKey>,
        book: Option<Arc<MixBook>>,
        default_hops: usize,
    ) -> SendService {
        let own = if !own_via.is_empty() {
            Some(RouteSource::Fixed(own_via))
        } else if book.is_some() || names.is_some() {
            Some(RouteSource::Network {
                directory: names.as_ref().map(|n| n.chain.clone()),
                book: book.clone(),
            })
        } else {
            None
        };
        SendService {
            node,
            names,
            own,
            book,
            default_hops,
            mixer: std::sync::OnceLock::new(),
            cover_on: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on, mixed sends and cover start in this node's own pool (docs/protocol.md
    /// §6.6): a part is peeled here and leaves in one of the pool's shuffled batches, so its
    /// first announcement looks like any packet this node mixes.
    pub fn attach_mixer(&self, mixer: Arc<Mixer>) {
        let _ = self.mixer.set(mixer);
    }

    /// The key of this node's own mix, when attached.
    pub fn own_mix(&self) -> Option<PublicKey> {
        self.mixer.get().map(|m| m.public_key())
    }

    /// The minimum delay of our own first layer for one part or dummy: the level's delay plus
    /// an exponential wait of the same mean (capped at 4 means), drawn per part so that parts
    /// of one message leave our pool at unrelated times. Nobody else sees this layer.
    pub fn own_first_delay(tau: Tau, rng: &mut dyn RngCore) -> u64 {
        use rand::Rng as _;
        let mean = tau.delay_secs as f64;
        if mean <= 0.0 {
            return 0;
        }
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        tau.delay_secs + ((-u.ln()) * mean).min(4.0 * mean).round() as u64
    }

    /// Whether this node sends cover traffic (set by the daemon): crowds then fill on a quiet
    /// network.
    pub fn set_cover(&self, on: bool) {
        self.cover_on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// A word for the user when a crowd of `tau.crowd` may not fill: our pool saw fewer
    /// entries than that in the last 10 minutes and no cover traffic makes up for it.
    fn crowd_note(&self, tau: Tau) -> Option<String> {
        let mixer = self.mixer.get()?;
        if tau.crowd == 0 || self.cover_on.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let seen = mixer.entries_within(Duration::from_secs(600));
        (seen < tau.crowd as usize).then(|| {
            format!(
                "held in mixes until {} other packets pass each: this node's pool saw {seen} in \
                 the last 10 minutes and cover traffic is off, so delivery may take long \
                 (bump node --cover-rate 2 fills crowds on a quiet network)",
                tau.crowd
            )
        })
    }

    /// Hand packets this node made to the bus: those addressed to our own mix enter its pool
    /// (peeled here, released in its batches); the rest are solved and published.
    pub async fn submit(&self, packets: Vec<Packet>, now: u32) -> Result<(), SendError> {
        let (own, other): (Vec<Packet>, Vec<Packet>) = match self.mixer.get() {
            Some(m) => packets.into_iter().partition(|p| p.tag == m.tag()),
            None => (Vec::new(), packets),
        };
        if let Some(m) = self.mixer.get() {
            for p in &own {
                if !m.inject_own(p).await? {
                    return Err(SendError::OwnPool(m.last_drop_reason()));
                }
            }
        }
        if !other.is_empty() {
            self.publish(other, now).await?;
        }
        Ok(())
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Mixes (other than ours) known from records on the bus now.
    pub fn bus_mixes(&self) -> Vec<PublicKey> {
        self.book
            .as_ref()
            .map(|b| b.mixes(crate::unix_now()))
            .unwrap_or_default()
    }

    /// Where the node's own traffic (cover, loops) finds mixes, if anywhere.
    pub fn own_route(&self) -> Option<&RouteSource> {
        self.own.as_ref()
    }

    fn names(&self) -> Result<&Arc<NamesCtx>, SendError> {
        self.names.as_ref().ok_or(SendError::NoNamecoind)
    }

    /// The one TTL and Tau check: Tau values and the expiry of every layer for a send at
    /// `now`, on the 6-hour grid ([`mixed_expiry`]).
    pub fn policy(&self, tau: Tau, ttl: Option<u32>, now: u32) -> Result<RoutePolicy, SendError> {
        let limits = self.node.limits();
        let ttl = limits.check_ttl(ttl)?;
        Ok(RoutePolicy {
            crowd: tau.crowd,
            delay_secs: tau.delay_secs,
            expires: mixed_expiry(now, ttl, limits.max_ttl),
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
        if let Some(n) = &self.names {
            let hops = hops.unwrap_or(n.default_hops);
            if hops == 0 {
                return Ok(vec![]);
            }
            let picked = n.chain.directory.pick(hops).await?;
            return Ok(picked
                .into_iter()
                .map(|e| Hop {
                    key: e.record.public_key(),
                    fee: e.record.fee,
                    pay: e.record.pay.clone(),
                })
                .collect());
        }
        // No directory: the mixes known from records on the bus. By default as many as are
        // known up to the node's hops; a number asked for must be there.
        let known = self
            .book
            .as_ref()
            .map(|b| b.mixes(crate::unix_now()))
            .unwrap_or_default();
        let want = match hops {
            Some(h) if h > known.len() => {
                return Err(match &self.book {
                    Some(_) => SendError::TooFewMixes {
                        have: known.len(),
                        want: h,
                    },
                    None => SendError::NoNamecoind,
                })
            }
            Some(h) => h,
            None => self.default_hops.min(known.len()),
        };
        use rand::seq::SliceRandom;
        Ok(known
            .choose_multiple(&mut rand::rngs::OsRng, want)
            .map(|k| Hop::bare(*k))
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
        let framer: &dyn Framer = req.framer.as_deref().unwrap_or(&ClearFramer);
        let route = self.route(&req.via, req.hops).await?;
        if route.is_empty() {
            let (msgid, packets, expires) = self
                .node
                .send_framed(tag, &req.data, framer, req.ttl, now)
                .await?;
            // Unmixed by default (not by `--hops 0`) on a node set up to mix: say why.
            let by_default = req.via.is_empty() && req.hops.is_none();
            let note = (by_default && (self.book.is_some() || self.names.is_some())).then(|| {
                "sent unmixed: this node knows no mixes yet (other nodes' mix records arrive \
                 over the bus; --hops 0 sends unmixed on purpose)"
                    .to_string()
            });
            return Ok(Sent {
                msgid,
                tag,
                packets,
                bytes: req.data.len(),
                expires,
                hops: 0,
                note,
            });
        }
        // Our own mix goes first (and nowhere else on the route).
        let own = self.own_mix();
        let remote: Vec<Hop> = route.into_iter().filter(|h| Some(h.key) != own).collect();
        let first: Vec<PublicKey> = own.into_iter().collect();
        let layers = first.len() + remote.len();
        if layers > MAX_HOPS {
            return Err(SendError::RouteLength);
        }
        let pol = self.policy(tau, req.ttl, now)?;
        // Postage given by the user is per remote hop, in route order; our layer pays none.
        let given: Vec<String> = first
            .iter()
            .map(|_| String::new())
            .chain(req.postage.iter().cloned())
            .collect();
        let hops_fee: Vec<Hop> = first.iter().map(|k| Hop::bare(*k)).chain(remote).collect();
        let keys: Vec<PublicKey> = hops_fee.iter().map(|h| h.key).collect();
        // Capacity depends on which layers carry postage: reserve the field where it will be.
        let placeholder: Vec<Option<[u8; 36]>> = hops_fee
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (Self::given_postage(&given, i).is_some() || h.fee > 0).then_some([0u8; 36])
            })
            .collect();
        let cap = final_capacity_with(&keys, pol, &placeholder);
        let parts = count_parts(req.data.len(), framer, cap).ok_or(SendError::NoRoom)?;
        let limit = self.node.limits().max_message;
        if req.data.len() > limit || parts > crate::message::MAX_PARTS {
            return Err(SendError::TooLargeForRoute {
                size: req.data.len(),
            });
        }
        let postage = self.postage(&hops_fee, &given, parts).await?;
        // Each part its own route when the mixes were drawn at random and nobody is paid
        // (a paid route is paid once, for all its packets); always its own first delay.
        let fresh_routes = req.via.is_empty() && placeholder.iter().all(|p| p.is_none());
        let mut plans = Vec::with_capacity(parts);
        for i in 0..parts {
            let keys = if i > 0 && fresh_routes {
                let mut k = first.clone();
                k.extend(
                    self.route(&[], req.hops)
                        .await?
                        .into_iter()
                        .map(|h| h.key)
                        .filter(|k| Some(*k) != own)
                        .take(layers - first.len()),
                );
                if k.len() == layers {
                    k
                } else {
                    keys.clone()
                }
            } else {
                keys.clone()
            };
            let first_delay = own.map(|_| Self::own_first_delay(tau, &mut rand::rngs::OsRng));
            plans.push(PartRoute { keys, first_delay });
        }
        let (msgid, packets) = wrap_parts(
            &req.data,
            framer,
            tag,
            layers,
            |i, _| plans[i].clone(),
            pol,
            &postage,
            limit,
            &mut rand::rngs::OsRng,
        )?;
        let n = packets.len();
        self.submit(packets, now).await?;
        Ok(Sent {
            msgid,
            tag,
            packets: n,
            bytes: req.data.len(),
            expires: pol.expires,
            hops: layers,
            note: self.crowd_note(tau),
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
    use secp256k1::SecretKey;
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
        SendService::new(node, None, Vec::new(), None, 3)
    }

    /// A service whose node runs a mix (key `[9; 32]`) and knows `mixes` from records on the
    /// bus.
    async fn mixing_service(
        dir: &std::path::Path,
        mixes: &[SecretKey],
    ) -> (SendService, Arc<Mixer>) {
        let plain = service(dir);
        let node = plain.node().clone();
        let own = SecretKey::from_slice(&[9; 32]).unwrap();
        let now = crate::unix_now();
        for m in mixes {
            let rec = super::super::gossip::MixRecord::sign(m, now);
            node.send_message(super::super::gossip::record_tag(), &rec, Some(3600), now)
                .await
                .unwrap();
        }
        let book = MixBook::new(node.clone(), own);
        assert_eq!(book.refresh(now).await, mixes.len());
        let mixer = Mixer::new(
            node.clone(),
            own,
            crate::mix::pool::PoolLimits::default(),
            Default::default(),
        )
        .unwrap();
        let s = SendService::new(node, None, Vec::new(), Some(book), 2);
        s.attach_mixer(mixer.clone());
        (s, mixer)
    }

    #[tokio::test]
    async fn a_mixed_send_starts_in_our_own_pool_and_each_part_takes_its_own_route() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = test_mixes(3);
        let (s, mixer) = mixing_service(dir.path(), &sk).await;
        // Held: standard level, nothing published yet, not even to a first remote mix.
        let held_at = std::time::Instant::now();
        let sent = s.send(req(4, &[7u8; 3000])).await.unwrap();
        let first = sent.packets;
        assert_eq!(sent.hops, 3, "our own layer and 2 mixes from the bus");
        assert_eq!(sent.expires % crate::node::MIX_EXPIRY_GRID, 0);
        assert_eq!(mixer.stats().held, sent.packets);
        for k in &pk {
            assert!(s.node().packets(mix_tag(k)).await.unwrap().is_empty());
        }
        // Tau none: released at once, each part towards its own first remote mix.
        let mut r = req(5, &[8u8; 7000]);
        r.tau = Some("none".into());
        let sent = s.send(r).await.unwrap();
        assert!(sent.packets >= 10, "{}", sent.packets);
        let mut first_hops = std::collections::HashSet::new();
        let mut total = 0;
        for k in &pk {
            let n = s.node().packets(mix_tag(k)).await.unwrap().len();
            if n > 0 {
                first_hops.insert(*k);
            }
            total += n;
        }
        // The first send's parts (standard: a crowd of 5 and 30 s) leave too if this test ran
        // past their delay (a loaded machine; debug builds solve slowly).
        if held_at.elapsed() < std::time::Duration::from_secs(29) {
            assert_eq!(total, sent.packets, "every part left our pool");
        } else {
            assert!(
                total == sent.packets || total == sent.packets + first,
                "{total}"
            );
        }
        assert!(first_hops.len() > 1, "parts share one route");
        // Naming more mixes than the bus knows is refused with the numbers.
        let mut r = req(6, b"x");
        r.hops = Some(4);
        assert!(matches!(
            s.send(r).await,
            Err(SendError::TooFewMixes { have: 3, want: 4 })
        ));
    }

    #[tokio::test]
    async fn a_sealed_send_through_mixes_arrives_with_its_frames_inside_the_ciphertext() {
        use crate::sealed::envelope::{open, seal, Opener, Plain, Seal};
        use crate::sealed::keys::GroupKey;
        use crate::sealed::parts::{PartReader, SealedSend};
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = test_mixes(3);
        let (s, _mixer) = mixing_service(dir.path(), &sk).await;
        let g = GroupKey([21; 32]);
        let plain = Plain {
            timestamp: 1,
            content_type: 0,
            body: vec![0x5a; 4000],
        };
        let env = seal(&Seal::Group(&g), &plain, None).unwrap();
        let tag = Tag([33; 20]);
        let ss = SealedSend::group(&g, tag, env);
        let mut r = req(33, &ss.carried);
        r.tau = Some("none".into());
        r.framer = Some(Arc::new(ss.framer.clone()));
        let sent = s.send(r).await.unwrap();
        assert!(sent.packets >= 5, "{}", sent.packets);
        // Peel every part through its route, as the mixes would.
        let mut finals = Vec::new();
        let mut rng = rand::rngs::OsRng;
        for k in &pk {
            for (_, p) in s.node().packets(mix_tag(k)).await.unwrap() {
                let mut p = p;
                loop {
                    let key = sk.iter().find(|s| {
                        mix_tag(&PublicKey::from_secret_key(&secp256k1::Secp256k1::new(), s))
                            == p.tag
                    });
                    match key {
                        Some(key) => p = peel(key, &p, &mut rng).unwrap().outgoing.unwrap(),
                        None => break,
                    }
                }
                finals.push(p);
            }
        }
        assert_eq!(finals.len(), sent.packets);
        assert!(finals.iter().all(|p| p.tag == tag));
        // No clear frame: nothing parses as one, no shared message id.
        assert!(finals
            .iter()
            .all(|p| crate::message::PartHeader::decode(&p.body).is_err()
                || p.body[1..17] != finals[0].body[1..17]
                || std::ptr::eq(p, &finals[0])));
        let mut reader = PartReader::group(&g);
        let envs: Vec<Vec<u8>> = finals
            .iter()
            .enumerate()
            .flat_map(|(i, p)| reader.push(i as u64, p))
            .collect();
        assert_eq!(envs.len(), 1);
        assert_eq!(open(&envs[0], &Opener::Group(&g)).unwrap().plain, plain);
    }

    #[test]
    fn our_own_first_delay_is_drawn_per_part_above_the_level() {
        let tau = Tau::resolve(Some("standard"), None, None).unwrap();
        let d: Vec<u64> = (0..200)
            .map(|_| SendService::own_first_delay(tau, &mut rand::rngs::OsRng))
            .collect();
        assert!(d
            .iter()
            .all(|x| *x >= tau.delay_secs && *x <= 5 * tau.delay_secs));
        let distinct: std::collections::HashSet<_> = d.iter().collect();
        assert!(distinct.len() > 20, "{distinct:?}");
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        assert!((45.0..75.0).contains(&mean), "{mean}");
        let none = Tau::resolve(Some("none"), None, None).unwrap();
        assert_eq!(
            SendService::own_first_delay(none, &mut rand::rngs::OsRng),
            0
        );
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
        assert_eq!(
            sent.expires % crate::node::MIX_EXPIRY_GRID,
            0,
            "on the grid"
        );
        let held = s.node().packets(mix_tag(&pk[0])).await.unwrap();
        assert_eq!(held.len(), 1);
        let mut p = held[0].1.clone();
        for (i, k) in sk.iter().enumerate() {
            let u = peel(k, &p, &mut rand::rngs::OsRng).unwrap();
            assert_eq!(u.instructions.crowd, 2, "hop {i} has the low level");
            assert!(
                (10..=30).contains(&u.instructions.delay_secs),
                "hop {i}: the low level's delay and at most 2x more: {}",
                u.instructions.delay_secs
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
