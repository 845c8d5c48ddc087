//! The running Speak Easy client (docs/speakeasy.md §5–6): the saved state, one [`Forum`] per
//! network, the readers of every tag the member reads, and the link to the local node. The
//! node only ever sees sealed bytes: items are sealed here, and the node is handed the
//! carried bytes and their frame key (`bump_sendframed`), never a compartment key.
//!
//! Reading: [`run_reader`] keeps one WebSocket subscription (`bump_subscribepackets`) per tag
//! wanted — each readable compartment's tags for every unexpired day, each pseudonym's inbox —
//! and feeds the packets through [`PartReader`]s into the forums.

use super::forum::{self, Forum, Ingested, Keys};
use super::grant::{self, Grant};
use super::post::{Body, ItemId, NewCompartment, Rekey};
use super::seal::{open_item, opened_item, seal_direct, seal_item};
use super::state::{Pending, State};
use super::tree::{Clearance, CompartmentId, Tree};
use crate::packet::{Packet, DEFAULT_MAX_TTL};
use crate::rpc::api::{BumpApiClient, PacketEvent, SendParams, SendResult, StatusResult};
use crate::rpc::client::Target;
use crate::sealed::envelope;
use crate::sealed::keys::{GroupKey, Identity, PublicId};
use crate::sealed::parts::{PartReader, SealedSend};
use crate::sealed::tags;
use crate::tag::Tag;
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Largest RPC body exchanged with the node.
const MAX_BODY: u32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("no such network")]
    NoNetwork,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Tree(#[from] super::tree::TreeError),
    #[error(transparent)]
    Seal(#[from] super::seal::SeError),
    #[error(transparent)]
    Grant(#[from] grant::GrantError),
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error("the node did not take it: {0}")]
    Node(String),
}

/// How posts are sent (`bump speakeasy --tau/--hops`).
#[derive(Debug, Clone, Default)]
pub struct SendOpts {
    /// Tau level at every mix; default: the node's (standard).
    pub tau: Option<String>,
    /// Mixes per route; default: the node's (3 when it has mixes).
    pub hops: Option<usize>,
}

/// What became of a post of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Mixes it went through (0: posted without mixing).
    pub hops: usize,
    /// The node's note (e.g. why it could not mix).
    pub note: Option<String>,
    /// Seen back on the bus (released by the last mix and stored).
    pub published: bool,
    /// For posts: the network, compartment and thread, and the text (shown as waiting).
    pub preview: Option<([u8; 16], CompartmentId, ItemId, String)>,
    /// The packet that completed it when it came back (its last part to arrive).
    pub packet: Option<crate::packet::PacketId>,
    /// Connected peers of the node known to hold that packet, as last asked.
    pub holders: Option<usize>,
}

#[derive(Clone)]
enum Reading {
    /// A compartment's key (network, compartment, epoch).
    Group([u8; 16], GroupKey),
    /// A pseudonym's inbox.
    Inbox(Identity),
}

struct Reader {
    reading: Reading,
    parts: PartReader,
}

pub struct Inner {
    pub state: State,
    /// Parallel to `state.networks`.
    pub forums: Vec<Forum>,
    pub sent: HashMap<ItemId, Sent>,
    readers: HashMap<Tag, Reader>,
    /// Why opening failed, by reason (shown on the settings page).
    pub skipped: BTreeMap<String, usize>,
    /// The node's last status, and the last error talking to it.
    pub node_status: Option<StatusResult>,
    pub node_error: Option<String>,
    /// Subscriptions open.
    pub subscribed: usize,
    /// Mixes the last send went through (0: it went out unmixed).
    pub last_hops: Option<usize>,
    /// Compartments below our clearance where we have said our name (this run, or seen).
    introduced: HashSet<([u8; 16], CompartmentId)>,
    /// Our items seen back on the bus before their send returned (unmixed sends race it).
    returned: HashMap<ItemId, crate::packet::PacketId>,
}

impl Inner {
    pub fn network(&self, id: &[u8; 16]) -> Option<(usize, &Keys, &Forum)> {
        let i = self.state.networks.iter().position(|k| k.network == *id)?;
        Some((i, &self.state.networks[i], &self.forums[i]))
    }
}

pub struct App {
    pub dir: PathBuf,
    pub target: Target,
    pub opts: SendOpts,
    inner: Mutex<Inner>,
    /// Bumped on every change the pages show (live updates wait on it).
    pub changed: tokio::sync::watch::Sender<u64>,
}

fn now() -> u32 {
    crate::unix_now()
}

impl App {
    pub fn open(dir: PathBuf, target: Target, opts: SendOpts) -> Result<Arc<App>, AppError> {
        let state = State::load(&dir)?;
        let forums = state.networks.iter().map(|_| Forum::default()).collect();
        let (changed, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(App {
            dir,
            target,
            opts,
            inner: Mutex::new(Inner {
                state,
                forums,
                sent: HashMap::new(),
                readers: HashMap::new(),
                skipped: BTreeMap::new(),
                node_status: None,
                node_error: None,
                subscribed: 0,
                last_hops: None,
                introduced: HashSet::new(),
                returned: HashMap::new(),
            }),
            changed,
        }))
    }

    /// The state, locked (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn save(&self, inner: &Inner) -> Result<(), AppError> {
        inner.state.save(&self.dir)?;
        Ok(())
    }

    // ----- sending -----

    async fn send_sealed(&self, s: SealedSend, opts: &SendOpts) -> Result<SendResult, AppError> {
        let client = self
            .target
            .http(MAX_BODY)
            .map_err(|e| AppError::Node(e.to_string()))?;
        let (key, head) = s.framer.key_and_head();
        let params = SendParams {
            tag: s.tag.to_hex(),
            data: B64.encode(&s.carried),
            ttl: None,
            via: None,
            hops: opts.hops,
            postage: None,
            tau: opts.tau.clone(),
            crowd: None,
            delay: None,
        };
        client
            .send_framed(params, hex::encode(key), head.map(|h| B64.encode(h)))
            .await
            .map_err(|e| AppError::Node(e.to_string()))
    }

    /// Seal an item of ours in compartment `c` and send it; returns its id.
    pub async fn send_item(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        body: Body,
    ) -> Result<ItemId, AppError> {
        self.send_item_with(net, c, body, &self.opts.clone()).await
    }

    /// [`App::send_item`] routed as `opts` says.
    pub async fn send_item_with(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        body: Body,
        opts: &SendOpts,
    ) -> Result<ItemId, AppError> {
        let (sealed, id) = {
            let g = self.lock();
            let (_, keys, _) = g.network(net).ok_or(AppError::NoNetwork)?;
            if !keys.cleared_for(&c) {
                return Err(AppError::Refused(
                    "not cleared for that compartment".to_string(),
                ));
            }
            let item = forum::item(keys, c, body)?;
            (
                seal_item(&keys.tree, &keys.clearance, &item, &keys.me, now())?,
                item.id,
            )
        };
        let r = self.send_sealed(sealed, opts).await?;
        let mut g = self.lock();
        g.last_hops = Some(r.hops);
        let back = g.returned.remove(&id);
        g.sent.entry(id).or_insert(Sent {
            hops: r.hops,
            note: r.note,
            published: back.is_some(),
            preview: None,
            packet: back,
            holders: None,
        });
        drop(g);
        self.bump();
        Ok(id)
    }

    /// A new post (a thread's first when `parent` is none), routed by the default options.
    pub async fn post(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        board: &str,
        parent: Option<ItemId>,
        title: &str,
        text: &str,
    ) -> Result<ItemId, AppError> {
        let opts = self.opts.clone();
        self.post_with(net, c, board, parent, title, text, &opts)
            .await
    }

    /// [`App::post`] routed as `opts` says (the compose form's Tau choice).
    #[allow(clippy::too_many_arguments)]
    pub async fn post_with(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        board: &str,
        parent: Option<ItemId>,
        title: &str,
        text: &str,
        opts: &SendOpts,
    ) -> Result<ItemId, AppError> {
        let root = self.thread_root(net, parent)?;
        let body = Body::Post(super::post::Post {
            board: board.to_string(),
            root,
            parent: parent.unwrap_or(ItemId::NONE),
            title: title.to_string(),
            text: text.to_string(),
        });
        self.publish(net, c, body, root, text, opts).await
    }

    /// A file attached to a thread (a reply to `parent`), sealed like a post.
    #[allow(clippy::too_many_arguments)]
    pub async fn attach_with(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        board: &str,
        parent: ItemId,
        name: &str,
        data: Vec<u8>,
        opts: &SendOpts,
    ) -> Result<ItemId, AppError> {
        let root = self.thread_root(net, Some(parent))?;
        let shown = format!("attachment {name} ({} bytes)", data.len());
        let body = Body::Attachment(super::post::Attachment {
            board: board.to_string(),
            root,
            parent,
            name: name.to_string(),
            data,
        });
        self.publish(net, c, body, root, &shown, opts).await
    }

    /// The thread a reply to `parent` belongs to ([`ItemId::NONE`] for a new thread).
    fn thread_root(&self, net: &[u8; 16], parent: Option<ItemId>) -> Result<ItemId, AppError> {
        match parent {
            None => Ok(ItemId::NONE),
            Some(p) => {
                let g = self.lock();
                let (_, _, f) = g.network(net).ok_or(AppError::NoNetwork)?;
                f.post(&p)
                    .map(|x| x.thread())
                    .ok_or_else(|| AppError::Refused("no such post to reply to".into()))
            }
        }
    }

    /// Send a post or attachment of ours: bounds checked first, our name said in `c` if not
    /// yet, then the item; remembered as waiting with `shown` as its preview.
    async fn publish(
        &self,
        net: &[u8; 16],
        c: CompartmentId,
        body: Body,
        root: ItemId,
        shown: &str,
        opts: &SendOpts,
    ) -> Result<ItemId, AppError> {
        // Check the bounds before anything is sent.
        forum::item(&self.keys_of(net)?, c, body.clone())?
            .encode()
            .map_err(|e| AppError::Refused(e.to_string()))?;
        // Readers of `c` who are cleared below us know our name only if we say it there.
        let introduce = {
            let mut g = self.lock();
            let me_at = g.network(net).map(|(_, k, _)| k.clearance.at);
            me_at != Some(c) && g.introduced.insert((*net, c))
        };
        if introduce {
            let name = self.keys_of(net)?.my_name;
            self.send_item_with(net, c, Body::Member(name), opts)
                .await?;
        }
        let id = self.send_item_with(net, c, body, opts).await?;
        let thread = if root == ItemId::NONE { id } else { root };
        if let Some(s) = self.lock().sent.get_mut(&id) {
            s.preview = Some((*net, c, thread, shown.to_string()));
        }
        Ok(id)
    }

    fn keys_of(&self, net: &[u8; 16]) -> Result<Keys, AppError> {
        let g = self.lock();
        g.network(net)
            .map(|(_, k, _)| k.clone())
            .ok_or(AppError::NoNetwork)
    }

    /// A private message to member `to`, sealed to it and to us.
    pub async fn send_dm(
        &self,
        net: &[u8; 16],
        to: &PublicId,
        text: &str,
    ) -> Result<ItemId, AppError> {
        let opts = self.opts.clone();
        self.send_dm_with(net, to, text, &opts).await
    }

    /// [`App::send_dm`] routed as `opts` says.
    pub async fn send_dm_with(
        &self,
        net: &[u8; 16],
        to: &PublicId,
        text: &str,
        opts: &SendOpts,
    ) -> Result<ItemId, AppError> {
        let (env, ck, me, id) = {
            let g = self.lock();
            let (_, keys, _) = g.network(net).ok_or(AppError::NoNetwork)?;
            let item = super::post::Item {
                place: super::post::Place {
                    network: keys.network,
                    compartment: CompartmentId([0; 16]),
                    epoch: 0,
                },
                id: ItemId::random(),
                body: Body::Direct {
                    to: to.to_bytes(),
                    text: text.to_string(),
                },
            };
            item.encode()
                .map_err(|e| AppError::Refused(e.to_string()))?;
            let (env, ck) = seal_direct(&item, to, &keys.me, now())?;
            (env, ck, keys.me.public(), item.id)
        };
        // One envelope, under the recipient's inbox tag and under ours if that differs.
        let r = self.send_direct(to, &env, &ck, opts).await?;
        if tags::bucket(&me) != tags::bucket(to) {
            self.send_direct(&me, &env, &ck, opts).await?;
        }
        self.lock().last_hops = Some(r.hops);
        self.bump();
        Ok(id)
    }

    // ----- networks and membership -----

    /// A new network with this member as its admin (cleared at the root).
    pub async fn create_network(
        &self,
        name: &str,
        root_name: &str,
        my_name: &str,
    ) -> Result<[u8; 16], AppError> {
        check_display(name, "network name")?;
        check_display(my_name, "your name")?;
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let root = CompartmentId::random();
        let keys = Keys {
            network: id,
            name: name.to_string(),
            me: Identity::generate(),
            my_name: my_name.to_string(),
            tree: Tree::new(root, root_name)?,
            clearance: Clearance {
                at: root,
                epoch: 0,
                key: GroupKey::generate().0,
            },
            past: vec![],
        };
        {
            let mut g = self.lock();
            g.state.networks.push(keys);
            g.forums.push(Forum::default());
            self.save(&g)?;
        }
        self.bump();
        self.introduce(&id).await?;
        Ok(id)
    }

    /// Say who we are in the compartment we are cleared at.
    async fn introduce(&self, net: &[u8; 16]) -> Result<(), AppError> {
        let k = self.keys_of(net)?;
        self.send_item(net, k.clearance.at, Body::Member(k.my_name.clone()))
            .await
            .map(|_| ())
    }

    /// A compartment under `parent`.
    pub async fn add_compartment(
        &self,
        net: &[u8; 16],
        parent: CompartmentId,
        name: &str,
    ) -> Result<CompartmentId, AppError> {
        let id = CompartmentId::random();
        {
            let mut g = self.lock();
            let i = g.network(net).ok_or(AppError::NoNetwork)?.0;
            let keys = &mut g.state.networks[i];
            if !keys.cleared_for(&parent) {
                return Err(AppError::Refused("not cleared for that compartment".into()));
            }
            keys.tree.add(parent, id, name)?;
            self.save(&g)?;
        }
        self.send_item(
            net,
            parent,
            Body::Compartment(NewCompartment {
                id,
                epoch: 0,
                name: name.to_string(),
            }),
        )
        .await?;
        Ok(id)
    }

    /// A pseudonym to join a network with: its public string goes to whoever invites us.
    pub fn start_join(&self, my_name: &str) -> Result<PublicId, AppError> {
        check_display(my_name, "your name")?;
        let me = Identity::generate();
        let public = me.public();
        let mut g = self.lock();
        g.state.pending.push(Pending {
            me,
            my_name: my_name.to_string(),
            created: now() as u64,
        });
        self.save(&g)?;
        drop(g);
        self.bump();
        Ok(public)
    }

    /// Invite the holder of pseudonym `to` at compartment `at`: the invite string (also sent
    /// to its inbox over the bus).
    pub async fn invite(
        &self,
        net: &[u8; 16],
        to: &str,
        name: &str,
        at: CompartmentId,
    ) -> Result<String, AppError> {
        check_display(name, "the member's name")?;
        let to = PublicId::parse(to.trim())
            .map_err(|e| AppError::Refused(format!("not a pseudonym string: {e}")))?;
        let (env, ck) = {
            let mut g = self.lock();
            let i = g.network(net).ok_or(AppError::NoNetwork)?.0;
            let keys = &g.state.networks[i];
            if !keys.cleared_for(&at) {
                return Err(AppError::Refused(
                    "you can invite only at or below your own clearance".into(),
                ));
            }
            let gr = Grant::of(
                keys.network,
                &keys.name,
                name,
                &keys.tree,
                &keys.clearance,
                &at,
            )?;
            let sealed = gr.seal(&to, &keys.me, now())?;
            g.forums[i].members.entry(to).or_insert(forum::MemberView {
                name: name.to_string(),
                at,
                removed: false,
            });
            sealed
        };
        self.send_direct(&to, &env, &ck, &self.opts).await?;
        self.bump();
        Ok(grant::to_string(&env))
    }

    async fn send_direct(
        &self,
        to: &PublicId,
        env: &[u8],
        ck: &[u8; 32],
        opts: &SendOpts,
    ) -> Result<SendResult, AppError> {
        let tag = tags::inbox_tag(tags::bucket(to), tags::slot(now()));
        let s = SealedSend::direct(ck, tag, env).map_err(|e| AppError::Refused(e.to_string()))?;
        self.send_sealed(s, opts).await
    }

    /// Join with an invite string, opened by one of the pending pseudonyms.
    pub async fn join(&self, invite: &str) -> Result<[u8; 16], AppError> {
        let env = grant::from_string(invite)?;
        let net = {
            let mut g = self.lock();
            let mut last = grant::GrantError::NotInvite;
            let mut found = None;
            for (i, p) in g.state.pending.iter().enumerate() {
                match Grant::open(&env, &p.me) {
                    Ok((gr, _)) => {
                        found = Some((i, gr));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let Some((i, gr)) = found else {
                // Already taken (an invite also arrives over the bus by itself)?
                for k in &g.state.networks {
                    if let Ok((gr, _)) = Grant::open(&env, &k.me) {
                        if gr.network == k.network {
                            return Ok(k.network);
                        }
                    }
                }
                if g.state.pending.is_empty() {
                    return Err(AppError::Refused(
                        "no pseudonym is waiting for an invite here: make one on the Join page and give its string to whoever invites you".into(),
                    ));
                }
                return Err(last.into());
            };
            let net = gr.network;
            self.accept_grant(&mut g, i, gr)?;
            net
        };
        self.bump();
        self.introduce(&net).await?;
        Ok(net)
    }

    /// A pending pseudonym `i` takes grant `gr`: a new network (or new keys for one held).
    fn accept_grant(&self, g: &mut Inner, i: usize, gr: Grant) -> Result<(), AppError> {
        if let Some((n, _, _)) = g.network(&gr.network) {
            g.state.networks[n].apply_grant(&gr);
            self.save(g)?;
            return Ok(());
        }
        let p = g.state.pending.remove(i);
        g.state.networks.push(Keys {
            network: gr.network,
            name: gr.network_name.clone(),
            me: p.me,
            my_name: p.my_name,
            tree: gr.tree,
            clearance: gr.clearance,
            past: vec![],
        });
        g.forums.push(Forum::default());
        self.save(g)?;
        Ok(())
    }

    /// Remove a member: its compartment moves to a new epoch (announced under the parent's
    /// key), and every other member at or below it is sent its new keys.
    pub async fn remove(&self, net: &[u8; 16], who: &PublicId) -> Result<usize, AppError> {
        let (c, parent, epoch, grants) = {
            let mut g = self.lock();
            let i = g.network(net).ok_or(AppError::NoNetwork)?.0;
            let member = g.forums[i]
                .members
                .get(who)
                .cloned()
                .ok_or_else(|| AppError::Refused("no such member".into()))?;
            let c = member.at;
            let keys = &mut g.state.networks[i];
            if c == keys.clearance.at || !keys.cleared_for(&c) || *who == keys.me.public() {
                return Err(AppError::Refused(
                    "only a member cleared above a compartment can remove its members".into(),
                ));
            }
            let parent = keys
                .tree
                .get(&c)?
                .parent
                .ok_or_else(|| AppError::Refused("the root cannot be re-keyed here".into()))?;
            // Keep reading what was posted under the old keys.
            for (pc, e, k) in keys.read_keys() {
                if keys.tree.within(&pc, &c)
                    && !keys.past.iter().any(|(x, y, _)| *x == pc && *y == e)
                {
                    keys.past.push((pc, e, k.0));
                }
            }
            let epoch = keys.tree.next_epoch(&c)?;
            let keys = keys.clone();
            let mut grants = vec![];
            for (id, m) in g.forums[i].members.iter_mut() {
                if *id == *who {
                    m.removed = true;
                    continue;
                }
                if m.removed || *id == keys.me.public() || !keys.tree.within(&m.at, &c) {
                    continue;
                }
                let gr = Grant::of(
                    keys.network,
                    &keys.name,
                    &m.name,
                    &keys.tree,
                    &keys.clearance,
                    &m.at,
                )?;
                grants.push((*id, gr.seal(id, &keys.me, now())?));
            }
            self.save(&g)?;
            (c, parent, epoch, grants)
        };
        self.send_item(
            net,
            parent,
            Body::Rekey(Rekey {
                compartment: c,
                epoch,
                removed: vec![who.to_bytes()],
            }),
        )
        .await?;
        let n = grants.len();
        for (to, (env, ck)) in grants {
            self.send_direct(&to, &env, &ck, &self.opts).await?;
        }
        self.bump();
        Ok(n)
    }

    // ----- reading -----

    /// The tags to read now, with what reads them.
    fn wanted(&self, g: &mut Inner) -> Vec<Tag> {
        let slots: Vec<u32> = tags::read_slots(now(), DEFAULT_MAX_TTL).collect();
        let mut want: Vec<(Tag, Reading)> = vec![];
        for k in &g.state.networks {
            for (_, _, key) in k.read_keys() {
                for s in &slots {
                    want.push((
                        tags::group_tag(&key, *s),
                        Reading::Group(k.network, key.clone()),
                    ));
                }
            }
        }
        let ids: Vec<Identity> = g
            .state
            .networks
            .iter()
            .map(|k| k.me.clone())
            .chain(g.state.pending.iter().map(|p| p.me.clone()))
            .collect();
        for me in ids {
            let b = tags::bucket(&me.public());
            for s in &slots {
                want.push((tags::inbox_tag(b, *s), Reading::Inbox(me.clone())));
            }
        }
        let mut tags = vec![];
        for (tag, reading) in want {
            tags.push(tag);
            g.readers.entry(tag).or_insert_with(|| Reader {
                parts: match &reading {
                    Reading::Group(_, k) => PartReader::group(k),
                    Reading::Inbox(me) => PartReader::identity(me),
                },
                reading,
            });
        }
        tags
    }

    /// One packet of a tag we read. Returns the networks newly joined (to introduce us in).
    fn on_packet(&self, tag: &Tag, ev: &PacketEvent) -> Vec<[u8; 16]> {
        let Ok(packet) = Packet::from_json(&ev.packet) else {
            return vec![];
        };
        let mut g = self.lock();
        let g = &mut *g;
        let Some(r) = g.readers.get_mut(tag) else {
            return vec![];
        };
        let envs = r.parts.push(ev.seq, &packet);
        let reading = r.reading.clone();
        let mut joined = vec![];
        let mut changed = false;
        for env in envs {
            match &reading {
                Reading::Group(net, key) => match open_item(key, &env) {
                    Ok(o) => {
                        let Some(i) = g.state.networks.iter().position(|k| k.network == *net)
                        else {
                            continue;
                        };
                        let (id, mine) = (o.item.id, o.author == g.state.networks[i].me.public());
                        if mine && matches!(o.item.body, Body::Member(_)) {
                            g.introduced.insert((*net, o.item.place.compartment));
                        }
                        let before = g.state.networks[i].tree.clone();
                        let r = g.forums[i].ingest(&mut g.state.networks[i], o);
                        if r == Ingested::New {
                            changed = true;
                            if before != g.state.networks[i].tree {
                                let _ = g.state.save(&self.dir);
                            }
                        }
                        if mine {
                            if let Some(s) = g.sent.get_mut(&id) {
                                changed |= !s.published;
                                s.published = true;
                                s.packet.get_or_insert_with(|| packet.id());
                            } else if g.returned.len() < 65_536 {
                                g.returned.insert(id, packet.id());
                            }
                        }
                    }
                    Err(e) => *g.skipped.entry(e.to_string()).or_default() += 1,
                },
                Reading::Inbox(me) => {
                    let opened = match envelope::open(&env, &envelope::Opener::Identity(me)) {
                        Ok(o) => o,
                        Err(e) => {
                            *g.skipped.entry(e.to_string()).or_default() += 1;
                            continue;
                        }
                    };
                    let mine = me.public();
                    if opened.plain.content_type == super::post::CONTENT_TYPE {
                        // A private message.
                        match opened_item(opened) {
                            Ok(o) => {
                                if let Some(i) =
                                    g.state.networks.iter().position(|k| k.me.public() == mine)
                                {
                                    let (keys, forum) = (&g.state.networks[i], &mut g.forums[i]);
                                    changed |= forum.ingest_direct(keys, o) == Ingested::New;
                                }
                            }
                            Err(e) => *g.skipped.entry(e.to_string()).or_default() += 1,
                        }
                        continue;
                    }
                    let gr = match grant::opened_grant(opened) {
                        Ok((gr, _by)) => gr,
                        Err(e) => {
                            *g.skipped.entry(e.to_string()).or_default() += 1;
                            continue;
                        }
                    };
                    if let Some(i) = g.state.networks.iter().position(|k| k.me.public() == mine) {
                        if g.state.networks[i].apply_grant(&gr) {
                            let _ = g.state.save(&self.dir);
                            changed = true;
                        }
                    } else if let Some(i) =
                        g.state.pending.iter().position(|p| p.me.public() == mine)
                    {
                        let net = gr.network;
                        if self.accept_grant(g, i, gr).is_ok() {
                            joined.push(net);
                            changed = true;
                        }
                    }
                }
            }
        }
        if changed {
            self.bump();
        }
        joined
    }
}

fn check_display(s: &str, what: &str) -> Result<(), AppError> {
    let t = s.trim();
    if t.is_empty() || t.len() > super::post::MAX_DISPLAY || t.chars().any(|c| c.is_control()) {
        return Err(AppError::Refused(format!(
            "{what}: 1 to {} bytes, no control characters",
            super::post::MAX_DISPLAY
        )));
    }
    Ok(())
}

/// Read the bus for as long as the process runs: subscribe to every wanted tag (again after
/// the node restarts), feed packets to the forums, poll the node's status.
pub async fn run_reader(app: Arc<App>) {
    use futures::StreamExt;
    use jsonrpsee::core::client::SubscriptionClientT;
    loop {
        let ws = match app.target.ws(MAX_BODY).await {
            Ok(ws) => ws,
            Err(e) => {
                app.lock().node_error = Some(format!("cannot reach the node: {e}"));
                app.bump();
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                continue;
            }
        };
        app.lock().node_error = None;
        let mut subs = futures::stream::SelectAll::new();
        let mut have: HashSet<Tag> = HashSet::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        let mut status_at = std::time::Instant::now() - std::time::Duration::from_secs(60);
        let failed = loop {
            tokio::select! {
                _ = tick.tick() => {
                    let want = { let mut g = app.lock(); app.wanted(&mut g) };
                    for tag in want {
                        if have.contains(&tag) {
                            continue;
                        }
                        match ws
                            .subscribe::<PacketEvent, _>(
                                "bump_subscribepackets",
                                jsonrpsee::rpc_params![tag.to_hex()],
                                "bump_unsubscribepackets",
                            )
                            .await
                        {
                            Ok(s) => {
                                have.insert(tag);
                                subs.push(s.map(move |ev| (tag, ev)));
                            }
                            Err(e) => break_on(&app, format!("subscribing failed: {e}")),
                        }
                    }
                    app.lock().subscribed = have.len();
                    if status_at.elapsed() > std::time::Duration::from_secs(5) {
                        status_at = std::time::Instant::now();
                        let st = ws.status().await;
                        let ours: Vec<(ItemId, crate::packet::PacketId)> = app
                            .lock()
                            .sent
                            .iter()
                            .filter_map(|(i, s)| s.packet.map(|p| (*i, p)))
                            .take(4096)
                            .collect();
                        let held = if ours.is_empty() {
                            Ok(vec![])
                        } else {
                            ws.packet_holders(ours.iter().map(|(_, p)| p.to_hex()).collect()).await
                        };
                        let mut g = app.lock();
                        match st {
                            Ok(s) => g.node_status = Some(s),
                            Err(e) => g.node_error = Some(format!("status: {e}")),
                        }
                        if let Ok(held) = held {
                            let mut moved = false;
                            for ((i, _), n) in ours.iter().zip(held) {
                                if let Some(s) = g.sent.get_mut(i) {
                                    moved |= s.holders != Some(n);
                                    s.holders = Some(n);
                                }
                            }
                            drop(g);
                            if moved {
                                app.bump();
                            }
                        }
                    }
                    if !ws.is_connected() {
                        break "the node closed the connection".to_string();
                    }
                }
                Some((tag, ev)) = subs.next(), if !subs.is_empty() => {
                    match ev {
                        Ok(ev) => {
                            for net in app.on_packet(&tag, &ev) {
                                let a = app.clone();
                                tokio::spawn(async move {
                                    if let Err(e) = a.introduce(&net).await {
                                        tracing::warn!("introducing ourselves failed: {e}");
                                    }
                                });
                            }
                        }
                        Err(e) => break format!("subscription error: {e}"),
                    }
                }
            }
        };
        tracing::warn!("{failed}; reconnecting");
        app.lock().node_error = Some(failed);
        app.bump();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn break_on(app: &App, e: String) {
    tracing::warn!("{e}");
    app.lock().node_error = Some(e);
}
