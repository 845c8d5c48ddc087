//! The mix role every node plays: its key, peeling packets addressed to its mix tag, the
//! replay cache, and releasing from the Tau pool.
//!
//! - **Key**: `<netdir>/mixkey` (32-byte secret, hex, mode 0600), made on first start, never
//!   logged. Its public key is what senders route through; [`mix_tag`] of it is where they send.
//! - **Processing**: every newly stored packet with our mix tag is peeled. A failed HMAC or
//!   malformed instructions drop it (counted). A shared secret seen before is a replay and is
//!   dropped; the replay cache (SHA-256 of the shared secret → the packet's expiry) is persisted
//!   and pruned only after the packet it guards has expired, since an expired packet cannot be
//!   stored again. Valid packets enter the [`TauPool`].
//! - **Release**: packets whose Tau values are met leave one by one, each at its own uniform
//!   random moment within [`RELEASE_SPREAD_MS`], stored (and so flooded) through the node's
//!   normal admission; only then are they removed from the pool. Dummies are discarded
//!   at their release time, so they behave like real packets until then.
//! - On start the mix re-reads stored packets under its tag: those not in the replay cache were
//!   never processed (the node stopped first) and are processed now.
//! - **Loops** ([`super::loops`]): the mix's own loop packets enter its pool without being
//!   published first; returning ones are recognised and noted. While the loop monitor's alarm
//!   is raised, strangers' packets enter the pool uncounted (they wait, but fill no crowd).

use super::loop_monitor::LoopMonitor;
use super::pool::{PoolError, PoolLimits, TauPool};
use super::postage::Postage;
use crate::clock::unix_ms;
use crate::node::Node;
use crate::onion::layer::{mix_tag, peel, BumpOnionError};
use crate::packet::Packet;
use crate::store::{Table, TableSpec};
use crate::sync::Locked;
use crate::tag::Tag;
use bitcoin::hashes::{sha256, Hash};
use secp256k1::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const KEY_FILE: &str = "mixkey";

#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("mix key file {0}: {1}")]
    Key(String, String),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Load the mix key from `netdir`, creating it if absent.
pub fn load_or_create_key(netdir: &Path) -> Result<SecretKey, MixError> {
    let path = netdir.join(KEY_FILE);
    let err = |e: &dyn std::fmt::Display| MixError::Key(path.display().to_string(), e.to_string());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| err(&e))?;
            SecretKey::from_slice(&bytes).map_err(|e| err(&e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::new(&mut rand::rngs::OsRng);
            std::fs::create_dir_all(netdir).map_err(|e| err(&e))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| err(&e))?;
            std::io::Write::write_all(&mut f, hex::encode(key.secret_bytes()).as_bytes())
                .map_err(|e| err(&e))?;
            f.sync_all().map_err(|e| err(&e))?;
            Ok(key)
        }
        Err(e) => Err(err(&e)),
    }
}

/// Counters for `bump mix status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MixStats {
    pub public_key: String,
    pub mix_tag: String,
    pub held: usize,
    pub entries: u64,
    pub released: u64,
    pub dummies_dropped: u64,
    /// Strangers' packets that entered while the loop alarm was raised and so counted toward
    /// no crowd.
    #[serde(default)]
    pub uncounted: u64,
    /// Own packets (sends, cover, loops) held and waiting for a packet from the network to
    /// enter with (counted in `held` too).
    #[serde(default)]
    pub staged: usize,
    /// Packets dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Loop packets and the (n-1) alarm (absent when loops are off).
    #[serde(default)]
    pub loops: Option<super::loop_monitor::LoopStats>,
    /// Other mixes this node knows from records on the bus (docs/protocol.md §6.7).
    #[serde(default)]
    pub bus_mixes: usize,
}

/// Where a packet the mix processes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Published by someone (stored under our mix tag).
    Network,
    /// Made by this mix (a loop packet's first layer).
    Own,
}

/// The replay cache (`ext/replay`): SHA-256 of a layer's shared secret → the expiry of the
/// packet it came in, after which the entry may go.
struct ReplayTable;
impl TableSpec for ReplayTable {
    const NAME: &'static str = "replay";
    type Key = [u8; 32];
    type Value = u32;
}

/// What a mix may be given at construction besides its key.
#[derive(Default)]
pub struct MixerParts {
    /// Check (and, with `require`, demand) postage.
    pub postage: Option<Arc<Postage>>,
    /// Track loop packets; its alarm decides what counts toward crowds.
    pub loops: Option<Arc<LoopMonitor>>,
}

pub struct Mixer {
    node: Arc<Node>,
    secret: SecretKey,
    public: PublicKey,
    tag: Tag,
    pool: Mutex<TauPool>,
    replay: Table<ReplayTable>,
    stats: Mutex<MixStats>,
    postage: Option<Arc<Postage>>,
    /// Packets whose postage could not be checked yet (namecoind down, too few
    /// confirmations): retried every few seconds until they expire.
    deferred: Mutex<Vec<Packet>>,
    loops: Option<Arc<LoopMonitor>>,
    last_drop: Mutex<String>,
    /// When the most recent entries entered (at most [`RECENT_ENTRIES`]).
    recent: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// Released packets waiting for their own moment to leave ([`RELEASE_SPREAD_MS`]); they
    /// stay in the pool (on disk) until published, so a restart releases them again.
    leaving: Mutex<Leaving>,
    /// Wakes the run loop when `leaving` gets an earlier moment.
    leave_wake: tokio::sync::Notify,
}

/// A released batch's packets leave one by one, each after its own uniform random wait of up
/// to this: they do not appear together, so how many packets a node announces at once says
/// nothing of how many of a batch were its own (own entries join the pool in groups, network
/// ones one by one; docs/anonymity.md). Every packet leaving the pool waits so, own or not.
pub const RELEASE_SPREAD_MS: u64 = 1500;

#[derive(Default)]
struct Leaving {
    queue: Vec<(std::time::Instant, Packet)>,
    ids: std::collections::HashSet<crate::packet::PacketId>,
}

/// Entry times kept for [`Mixer::entries_within`].
const RECENT_ENTRIES: usize = 1024;

impl Mixer {
    pub fn new(
        node: Arc<Node>,
        secret: SecretKey,
        limits: PoolLimits,
        parts: MixerParts,
    ) -> Result<Arc<Mixer>, MixError> {
        let public = PublicKey::from_secret_key(secp256k1::SECP256K1, &secret);
        let tag = mix_tag(&public);
        let pool = TauPool::open(node.store(), limits)?;
        let replay = node.store().table::<ReplayTable>()?;
        let stats = MixStats {
            public_key: hex::encode(public.serialize()),
            mix_tag: tag.to_hex(),
            ..Default::default()
        };
        Ok(Arc::new(Mixer {
            node,
            secret,
            public,
            tag,
            pool: Mutex::new(pool),
            replay,
            stats: Mutex::new(stats),
            postage: parts.postage,
            deferred: Mutex::new(Vec::new()),
            loops: parts.loops,
            last_drop: Mutex::new(String::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            leaving: Mutex::new(Leaving::default()),
            leave_wake: tokio::sync::Notify::new(),
        }))
    }

    fn loop_monitor(&self) -> Option<&Arc<LoopMonitor>> {
        self.loops.as_ref()
    }

    /// The largest Tau crowd among the packets held now.
    pub fn largest_held_crowd(&self) -> u64 {
        self.pool.locked().largest_crowd()
    }

    /// Put a packet this mix made (addressed to itself) into its pool: peeled here, never
    /// published in this form, staged until the next packet from the network enters (or, see
    /// [`Mixer::enter_overdue`], the network stays quiet or the wait grows too long), durably
    /// before this returns.
    pub async fn inject_own(&self, packet: &Packet) -> Result<bool, MixError> {
        let entered = self
            .process_from(packet, crate::unix_now(), Origin::Own)
            .await?;
        if entered {
            self.node.store().durable().await?;
            // An own layer without delay (Tau none) has nothing to wait for: it enters now,
            // with whatever else is staged, and leaves if it can, without the release spread
            // (the sender asked for no wait at all).
            if self.enter_overdue()? > 0 {
                self.node.store().durable().await?;
                if self.release_with(crate::unix_now(), false).await? > 0 {
                    self.leave(crate::unix_now()).await?;
                }
            }
        }
        Ok(entered)
    }

    /// Staged own entries that waited long enough for a network entry enter anyway: at once
    /// when they have no delay; while the network is quiet (no packet from a peer for
    /// [`super::pool::STAGE_MAX_MS`]) once overdue; while it is busy only once one has waited
    /// three times its delay, at most [`super::pool::STAGE_HOLD_MAX_MS`] (a mix nobody routes
    /// through must still send).
    fn enter_overdue(&self) -> Result<usize, MixError> {
        let now = unix_ms();
        let quiet = self
            .node
            .last_from_peer_ms()
            .is_none_or(|t| now.saturating_sub(t) >= super::pool::STAGE_MAX_MS);
        let mut pool = self.pool.locked();
        match pool.staged_until() {
            Some(until) if now >= until => {
                let n = pool.may_enter_alone(now, quiet);
                Ok(pool.enter_staged(n, &mut rand::rngs::OsRng)?)
            }
            _ => Ok(0),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// How many packets entered the pool in the last `window` (up to [`RECENT_ENTRIES`]).
    pub fn entries_within(&self, window: Duration) -> usize {
        let r = self.recent.locked();
        r.iter().rev().take_while(|t| t.elapsed() <= window).count()
    }

    /// Why the last packet this mix dropped was dropped.
    pub fn last_drop_reason(&self) -> String {
        self.last_drop.locked().clone()
    }

    fn count_drop(&self, reason: &str) {
        reason.clone_into(&mut self.last_drop.locked());
        *self
            .stats
            .locked()
            .dropped
            .entry(reason.into())
            .or_default() += 1;
    }

    pub fn stats(&self) -> MixStats {
        let mut s = self.stats.locked().clone();
        let pool = self.pool.locked();
        s.held = pool.len();
        s.staged = pool.staged();
        s.entries = pool.entries();
        drop(pool);
        s.loops = self.loop_monitor().map(|m| m.stats());
        s
    }

    /// Peel one packet addressed to us and put it in the pool. Returns whether it entered.
    async fn process(&self, packet: &Packet, now: u32) -> Result<bool, MixError> {
        self.process_from(packet, now, Origin::Network).await
    }

    async fn process_from(
        &self,
        packet: &Packet,
        now: u32,
        origin: Origin,
    ) -> Result<bool, MixError> {
        let u = match peel(&self.secret, packet, &mut rand::rngs::OsRng) {
            Ok(u) => u,
            Err(BumpOnionError::Onion(crate::onion::OnionError::Hmac)) => {
                self.count_drop("hmac");
                return Ok(false);
            }
            Err(_) => {
                self.count_drop("malformed");
                return Ok(false);
            }
        };
        let key = sha256::Hash::hash(&u.shared_secret).to_byte_array();
        if self.replay.contains(&key)? {
            self.count_drop("replay");
            return Ok(false);
        }
        // One of our loops coming home (its last layer is ours and says drop)?
        let monitor = self.loop_monitor();
        let own_loop = u.outgoing.is_none()
            && monitor
                .as_ref()
                .is_some_and(|m| m.returned(&u.shared_secret, unix_ms()));
        let ours = origin == Origin::Own || own_loop;
        // While the loop alarm is up, only our own packets count toward crowds.
        let counts = ours || !monitor.as_ref().is_some_and(|m| m.alarmed());
        // Postage: checked after the HMAC and the replay cache, before the packet may count
        // toward anyone's crowd. Our own packets owe us nothing.
        let postage = if ours { None } else { self.postage.as_ref() };
        if let Some(post) = postage {
            match u.instructions.postage {
                Some(field) => match post.charge(&field).await? {
                    super::postage::Verdict::Paid { .. } => {}
                    super::postage::Verdict::Rejected(reason) => {
                        self.count_drop(reason);
                        return Ok(false);
                    }
                    super::postage::Verdict::Retry(why) => {
                        tracing::debug!("postage check deferred: {why}");
                        let mut d = self.deferred.locked();
                        if d.len() < 10_000 && !d.iter().any(|p| p.id() == packet.id()) {
                            d.push(packet.clone());
                        } else if d.len() >= 10_000 {
                            drop(d);
                            self.count_drop("postage check backlog full");
                        }
                        return Ok(false);
                    }
                },
                None if post.policy().require => {
                    self.count_drop("unpaid");
                    return Ok(false);
                }
                None => {}
            }
        }
        // A dummy still waits its turn: keep it as a packet we will discard at release.
        let (outgoing, dummy) = match u.outgoing {
            Some(p) => (p, false),
            None => (dummy_placeholder(packet), true),
        };
        if !dummy && outgoing.expires <= now {
            self.count_drop("expired");
            return Ok(false);
        }
        // The packet we will publish carries our proof of work; solved now, so the pool holds
        // it ready and a release after a crash publishes the very same packet.
        let outgoing = if dummy {
            outgoing
        } else {
            match self.node.solve(vec![outgoing], now).await.pop() {
                Some(p) => p,
                None => return Ok(false),
            }
        };
        let mut pool = self.pool.locked();
        // The node's own packets are staged; a packet from the network enters at once and
        // lets the staged ones in with it (pool.rs, "Staged entries").
        let entered = if origin == Origin::Own {
            pool.stage(
                &outgoing,
                u.instructions.crowd,
                u.instructions.delay_secs,
                unix_ms(),
            )
        } else {
            pool.insert_with(
                &outgoing,
                u.instructions.crowd,
                u.instructions.delay_secs,
                unix_ms(),
                counts,
            )
            .and_then(|()| {
                // The staged own entries enter with each network entry: the pool gains
                // entries only at moments a packet visibly reached it.
                pool.enter_staged(usize::MAX, &mut rand::rngs::OsRng)
                    .map(|_| ())
            })
        };
        match entered {
            Ok(()) if !counts => {
                self.stats.locked().uncounted += 1;
            }
            Ok(()) => {}
            Err(PoolError::CrowdTooLarge(_)) => {
                self.count_drop("crowd over policy");
                return Ok(false);
            }
            Err(PoolError::DelayTooLong(_)) => {
                self.count_drop("delay over policy");
                return Ok(false);
            }
            Err(PoolError::Full) => {
                self.count_drop("pool full");
                return Ok(false);
            }
            Err(PoolError::Duplicate) => {
                self.count_drop("replay");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        drop(pool);
        self.replay.insert(&key, &packet.expires)?;
        let mut r = self.recent.locked();
        if r.len() >= RECENT_ENTRIES {
            r.pop_front();
        }
        r.push_back(std::time::Instant::now());
        Ok(true)
    }

    /// Take the packets whose Tau values are met out of the pool's waiting: dummies and
    /// expired ones are dropped now, the others each get their moment to leave
    /// ([`RELEASE_SPREAD_MS`], [`Mixer::leave`]). Returns how many were scheduled.
    async fn release(&self, now: u32) -> Result<usize, MixError> {
        self.release_with(now, true).await
    }

    /// [`Mixer::release`]; without `spread` the packets released now may leave at once.
    async fn release_with(&self, now: u32, spread: bool) -> Result<usize, MixError> {
        // (Never both locks at once.)
        let leaving = self.leaving.locked().ids.clone();
        let due = self
            .pool
            .locked()
            .due_except(unix_ms(), &mut rand::rngs::OsRng, &leaving)?;
        if due.is_empty() {
            return Ok(0);
        }
        let (dummies, real): (Vec<Packet>, Vec<Packet>) =
            due.into_iter().partition(is_dummy_placeholder);
        let (live, expired): (Vec<Packet>, Vec<Packet>) = real
            .into_iter()
            .partition(|p| p.check_expiry(now, self.node.limits().max_ttl).is_ok());
        if !dummies.is_empty() || !expired.is_empty() {
            {
                let mut pool = self.pool.locked();
                for p in dummies.iter().chain(&expired) {
                    pool.remove(&p.id())?;
                }
            }
            self.node.store().durable().await?;
            let mut s = self.stats.locked();
            s.dummies_dropped += dummies.len() as u64;
            if !expired.is_empty() {
                *s.dropped.entry("expired while held".into()).or_default() += expired.len() as u64;
            }
        }
        let mut n = 0;
        {
            let mut leaving = self.leaving.locked();
            let start = std::time::Instant::now();
            let mut rng = rand::rngs::OsRng;
            for p in live {
                if leaving.ids.insert(p.id()) {
                    let wait = match spread {
                        true => rand::Rng::gen_range(&mut rng, 0..=RELEASE_SPREAD_MS),
                        false => 0,
                    };
                    leaving.queue.push((start + Duration::from_millis(wait), p));
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.leave_wake.notify_one();
        }
        Ok(n)
    }

    /// When the next released packet leaves, if any is waiting.
    fn next_leave(&self) -> Option<std::time::Instant> {
        self.leaving.locked().queue.iter().map(|(at, _)| *at).min()
    }

    /// Publish the released packets whose moment has come, then forget them in the pool.
    async fn leave(&self, now: u32) -> Result<usize, MixError> {
        let ready: Vec<Packet> = {
            let mut leaving = self.leaving.locked();
            let t = std::time::Instant::now();
            let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut leaving.queue)
                .into_iter()
                .partition(|(at, _)| *at <= t);
            leaving.queue = wait;
            ready.into_iter().map(|(_, p)| p).collect()
        };
        if ready.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.node.publish(ready.clone(), now).await {
            tracing::warn!("mix could not publish released packets: {e}");
            // Try again in a second; they are still in the pool.
            let again = std::time::Instant::now() + Duration::from_secs(1);
            self.leaving
                .locked()
                .queue
                .extend(ready.into_iter().map(|p| (again, p)));
            return Ok(0);
        }
        {
            let mut pool = self.pool.locked();
            for p in &ready {
                pool.remove(&p.id())?;
            }
        }
        {
            let mut leaving = self.leaving.locked();
            for p in &ready {
                leaving.ids.remove(&p.id());
            }
        }
        self.node.store().durable().await?;
        self.stats.locked().released += ready.len() as u64;
        Ok(ready.len())
    }

    /// Drop replay-cache entries of packets that have expired.
    fn prune_replay(&self, now: u32) {
        let stale: Vec<[u8; 32]> = self
            .replay
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, expires)| *expires <= now)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.replay.remove(&k);
        }
    }

    /// Run until shutdown: process packets for our tag and release due ones.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut rx = self.node.subscribe();
        // Packets stored before we were listening (e.g. while the node was down).
        match self.node.packets(self.tag).await {
            Ok(list) => {
                let now = crate::unix_now();
                let mut n = 0;
                for (_, p) in list {
                    if let Ok(true) = self.process(&p, now).await {
                        n += 1;
                    }
                }
                if n > 0 {
                    let _ = self.node.store().durable().await;
                }
            }
            Err(e) => tracing::warn!("mix could not read its backlog: {e}"),
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut prune = tokio::time::interval(Duration::from_secs(600));
        let mut retry = tokio::time::interval(Duration::from_secs(2));
        loop {
            let next_leave = self.next_leave();
            let leave_at = async {
                match next_leave {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = leave_at => {
                    if let Err(e) = self.leave(crate::unix_now()).await {
                        tracing::warn!("mix could not send released packets: {e}");
                    }
                }
                _ = self.leave_wake.notified() => {}
                ev = rx.recv() => match ev {
                    Ok(batch) => {
                        let mut ours = false;
                        let mut entered = false;
                        for ev in batch.iter().filter(|ev| ev.packet.tag == self.tag) {
                            ours = true;
                            match self.process(&ev.packet, crate::unix_now()).await {
                                Ok(true) => entered = true,
                                Ok(false) => {}
                                Err(e) => tracing::warn!("mix could not process a packet: {e}"),
                            }
                        }
                        if entered {
                            if let Err(e) = self.node.store().durable().await {
                                tracing::warn!("mix pool flush failed: {e}");
                            }
                        }
                        // New entries can complete crowds: release at once.
                        if ours {
                            if let Err(e) = self.release(crate::unix_now()).await {
                                tracing::warn!("mix release failed: {e}");
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "mix fell behind; rereading its tag");
                        if let Ok(list) = self.node.packets(self.tag).await {
                            for (_, p) in list {
                                let _ = self.process(&p, crate::unix_now()).await;
                            }
                        }
                    }
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    match self.enter_overdue() {
                        Ok(0) => {}
                        Ok(_) => {
                            if let Err(e) = self.node.store().durable().await {
                                tracing::warn!("mix pool flush failed: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("mix could not enter staged packets: {e}"),
                    }
                    if let Err(e) = self.release(crate::unix_now()).await {
                        tracing::warn!("mix release failed: {e}");
                    }
                }
                _ = prune.tick() => self.prune_replay(crate::unix_now()),
                _ = retry.tick() => {
                    let now = crate::unix_now();
                    let waiting: Vec<Packet> = std::mem::take(&mut *self.deferred.locked());
                    let mut entered = false;
                    for p in waiting {
                        if p.expires <= now {
                            self.count_drop("expired waiting for postage check");
                            continue;
                        }
                        entered |= matches!(self.process(&p, now).await, Ok(true));
                    }
                    if entered {
                        let _ = self.node.store().durable().await;
                        let _ = self.release(crate::unix_now()).await;
                    }
                }
            }
        }
    }
}

/// Dummies occupy the pool like real packets; they are marked by an all-zero tag and body so
/// the release step can discard them. (Real outgoing packets never have an all-zero body: it
/// is either an onion layer or data with random padding.)
fn dummy_placeholder(incoming: &Packet) -> Packet {
    // Distinct per incoming packet so several dummies can be held at once.
    let mut body = Box::new([0u8; crate::packet::BODY_LEN]);
    body[..32].copy_from_slice(&incoming.id().0);
    Packet {
        tag: Tag([0; 20]),
        expires: incoming.expires,
        nonce: 0,
        body,
    }
}

fn is_dummy_placeholder(p: &Packet) -> bool {
    p.tag == Tag([0; 20]) && p.body[32..].iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Limits, NodeInfo};
    use crate::onion::layer::{wrap, HopInstructions};
    use crate::store::{Store, StoreConfig};

    /// A node on a store in `dir`.
    fn test_node(dir: &Path) -> (Arc<Store>, Arc<Node>) {
        let store = Arc::new(Store::open(&dir.join("store"), &StoreConfig::default()).unwrap());
        let info = NodeInfo {
            network: namecoin::Network::Regtest,
            netdir: dir.to_path_buf(),
        };
        let node = Arc::new(Node::new(
            store.clone(),
            Limits::default(),
            info,
            CancellationToken::new(),
        ));
        (store, node)
    }

    #[tokio::test]
    async fn a_replayed_packet_is_dropped_and_the_cache_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let secret = load_or_create_key(dir.path()).unwrap();
        assert_eq!(
            load_or_create_key(dir.path()).unwrap(),
            secret,
            "the key is kept"
        );
        let public = PublicKey::from_secret_key(&secp256k1::Secp256k1::new(), &secret);
        let now = crate::unix_now();
        let instr = vec![HopInstructions {
            next_tag: Tag([7; 20]),
            next_expires: now + 3600,
            crowd: 5,
            delay_secs: 60,
            postage: None,
            drop: false,
            final_data: Some(b"hi".to_vec()),
        }];
        let packet = wrap(&[public], &instr, now + 3600, &mut rand::rngs::OsRng).unwrap();
        for round in 0..2 {
            let (store, node) = test_node(dir.path());
            let mix =
                Mixer::new(node, secret, PoolLimits::default(), MixerParts::default()).unwrap();
            let first = mix.process(&packet, now).await.unwrap();
            assert_eq!(first, round == 0, "round {round}");
            assert!(
                !mix.process(&packet, now).await.unwrap(),
                "second time is a replay"
            );
            assert_eq!(mix.stats().held, 1);
            assert!(mix.stats().dropped["replay"] >= 1);
            store.durable().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_released_batch_leaves_one_by_one_within_the_spread() {
        let dir = tempfile::tempdir().unwrap();
        let secret = load_or_create_key(dir.path()).unwrap();
        let public = PublicKey::from_secret_key(&secp256k1::Secp256k1::new(), &secret);
        let (_store, node) = test_node(dir.path());
        let mix = Mixer::new(
            node.clone(),
            secret,
            PoolLimits::default(),
            MixerParts::default(),
        )
        .unwrap();
        let now = crate::unix_now();
        let out = Tag([9; 20]);
        for i in 0..4u8 {
            let instr = vec![HopInstructions {
                next_tag: out,
                next_expires: now + 3600,
                crowd: 0,
                delay_secs: 0,
                postage: None,
                drop: false,
                final_data: Some(vec![i; 10]),
            }];
            let packet = wrap(&[public], &instr, now + 3600, &mut rand::rngs::OsRng).unwrap();
            assert!(mix.process(&packet, now).await.unwrap());
        }
        let start = std::time::Instant::now();
        assert_eq!(mix.release(now).await.unwrap(), 4);
        assert_eq!(mix.release(now).await.unwrap(), 0, "scheduled once");
        let moments: Vec<std::time::Instant> = mix
            .leaving
            .locked()
            .queue
            .iter()
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(moments.len(), 4);
        let spread = Duration::from_millis(RELEASE_SPREAD_MS);
        assert!(moments
            .iter()
            .all(|&at| at >= start && at <= start + spread + Duration::from_millis(50)));
        let distinct: std::collections::HashSet<_> = moments.iter().collect();
        assert!(distinct.len() > 1, "each packet has its own moment");
        // Nothing is published before its moment; all are within the spread (bounded loop).
        for _ in 0..40 {
            let n = node.packets(out).await.unwrap().len();
            let due = moments
                .iter()
                .filter(|&&at| at <= std::time::Instant::now())
                .count();
            assert!(n <= due, "{n} published, {due} due");
            if n == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            mix.leave(crate::unix_now()).await.unwrap();
        }
        assert_eq!(node.packets(out).await.unwrap().len(), 4);
        assert_eq!(mix.stats().released, 4);
        assert_eq!(mix.stats().held, 0, "forgotten in the pool once published");
        assert!(mix.leaving.locked().ids.is_empty());
    }
}
