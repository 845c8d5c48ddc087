//! The handshake (docs/protocol.md §5.2) as a state machine with no I/O: it is fed each
//! message that arrives before the handshake completes and says what to answer, what to
//! charge, and when the peer is connected.
//!
//! Order: the dialing side sends `version`; each side answers a `version` with its own (if it
//! has not sent one), then `feature("bump/1", [1])` when the peer's protocol version is at
//! least Namecoin's 110017, then `verack`. A `feature` counts only after the peer's `version`.
//! The handshake is complete when the peer's `verack` arrives after its `version`. A `version`
//! carrying one of our own nonces means we dialed ourselves.

use super::message::{
    Message, BUMP_PROTOCOL_VERSION, FEATURE_ID, MIN_BUMP_PROTOCOL_VERSION, NODE_BUMP,
};
use super::penalty;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::sync::Locked;

/// What we say about ourselves in every `version`.
#[derive(Debug, Clone)]
pub struct VersionTemplate {
    /// Address we advertise (`None`: 0.0.0.0:0).
    pub advertised: Option<SocketAddr>,
    pub user_agent: String,
}

impl VersionTemplate {
    pub fn new(advertised: Option<SocketAddr>) -> VersionTemplate {
        VersionTemplate {
            advertised,
            user_agent: format!("/bump:{}/", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Our `version`: Namecoin's protocol version, BuMP's service bit, start height 0,
    /// relay=false (we take no coin transactions).
    pub fn message(&self, to: SocketAddr, nonce: u64) -> VersionMessage {
        let services = ServiceFlags::from(NODE_BUMP);
        let from = self
            .advertised
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        VersionMessage {
            version: namecoin::PROTOCOL_VERSION,
            services,
            timestamp: crate::clock::unix_secs() as i64,
            receiver: Address::new(&to, ServiceFlags::NONE),
            sender: Address::new(&from, services),
            nonce,
            user_agent: self.user_agent.clone(),
            start_height: 0,
            relay: false,
        }
    }
}

/// The nonces of our own `version` messages still in flight (self-connection detection).
#[derive(Default)]
pub struct Nonces(Mutex<HashSet<u64>>);

impl Nonces {
    pub fn add(&self, n: u64) {
        self.0.locked().insert(n);
    }
    pub fn remove(&self, n: u64) {
        self.0.locked().remove(&n);
    }
    pub fn contains(&self, n: u64) -> bool {
        self.0.locked().contains(&n)
    }
}

/// What the peer said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    pub user_agent: String,
    pub version: u32,
    pub services: u64,
    pub start_height: i32,
}

/// The outcome of one message.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Messages to send, in order.
    pub replies: Vec<Message>,
    /// Points to charge and why.
    pub penalty: Option<(u32, &'static str)>,
    /// The peer's `version` arrived (its fields).
    pub remote: Option<Remote>,
    /// The peer speaks BuMP (a valid `feature` arrived).
    pub bump: bool,
    /// The BuMP version in its `feature` (when `bump`).
    pub bump_version: u8,
    /// The handshake is complete.
    pub done: bool,
    /// The peer's nonce is ours: we are connected to ourselves.
    pub self_connection: bool,
}

pub struct Handshake {
    outbound: bool,
    our_nonce: u64,
    got_version: bool,
}

impl Handshake {
    /// A new handshake; for an outbound connection the first reply is our `version`.
    pub fn start(
        outbound: bool,
        our_nonce: u64,
        template: &VersionTemplate,
        to: SocketAddr,
    ) -> (Handshake, Vec<Message>) {
        let first = if outbound {
            vec![Message::Version(template.message(to, our_nonce))]
        } else {
            vec![]
        };
        (
            Handshake {
                outbound,
                our_nonce,
                got_version: false,
            },
            first,
        )
    }

    /// Feed a message that arrived before the handshake completed.
    pub fn on_message(
        &mut self,
        msg: Message,
        nonces: &Nonces,
        template: &VersionTemplate,
        to: SocketAddr,
    ) -> Step {
        let mut step = Step::default();
        match msg {
            Message::Version(v) => {
                if self.got_version {
                    step.penalty = Some((penalty::HANDSHAKE_ORDER, "duplicate version"));
                    return step;
                }
                if nonces.contains(v.nonce) {
                    step.self_connection = true;
                    return step;
                }
                self.got_version = true;
                step.remote = Some(Remote {
                    user_agent: v.user_agent.chars().take(256).collect(),
                    version: v.version,
                    services: v.services.to_u64(),
                    start_height: v.start_height,
                });
                if !self.outbound {
                    step.replies
                        .push(Message::Version(template.message(to, self.our_nonce)));
                }
                if v.version >= namecoin::PROTOCOL_VERSION {
                    step.replies.push(Message::Feature {
                        id: FEATURE_ID.into(),
                        data: vec![BUMP_PROTOCOL_VERSION],
                    });
                }
                step.replies.push(Message::Verack);
            }
            Message::Feature { id, data }
                if self.got_version
                    && id == FEATURE_ID
                    && data.first().copied().unwrap_or(0) >= MIN_BUMP_PROTOCOL_VERSION =>
            {
                step.bump = true;
                step.bump_version = data[0];
            }
            Message::Verack => {
                if !self.got_version {
                    step.penalty = Some((penalty::HANDSHAKE_ORDER, "verack before version"));
                } else {
                    step.done = true;
                }
            }
            // sendaddrv2, other features and the like before verack: nothing to do.
            _ => {}
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn their_version(nonce: u64, version: u32) -> Message {
        let mut v = VersionTemplate::new(None).message("127.0.0.1:1".parse().unwrap(), nonce);
        v.version = version;
        v.user_agent = "/Namecoin:28.0.0/".into();
        Message::Version(v)
    }

    #[test]
    fn inbound_answers_version_feature_verack_and_completes_on_verack() {
        let t = VersionTemplate::new(None);
        let to = "127.0.0.1:9".parse().unwrap();
        let nonces = Nonces::default();
        let (mut h, first) = Handshake::start(false, 7, &t, to);
        assert!(first.is_empty(), "inbound waits for their version");
        let s = h.on_message(Message::Verack, &nonces, &t, to);
        assert_eq!(s.penalty.map(|p| p.0), Some(penalty::HANDSHAKE_ORDER));
        let s = h.on_message(
            their_version(1, namecoin::PROTOCOL_VERSION),
            &nonces,
            &t,
            to,
        );
        assert_eq!(s.replies.len(), 3);
        assert!(matches!(&s.replies[0], Message::Version(v) if v.nonce == 7 && !v.relay));
        assert!(matches!(&s.replies[1], Message::Feature { id, .. } if id == FEATURE_ID));
        assert_eq!(s.replies[2], Message::Verack);
        assert_eq!(s.remote.unwrap().user_agent, "/Namecoin:28.0.0/");
        let s = h.on_message(
            Message::Feature {
                id: FEATURE_ID.into(),
                data: vec![BUMP_PROTOCOL_VERSION],
            },
            &nonces,
            &t,
            to,
        );
        assert!(s.bump && !s.done);
        let s = h.on_message(
            their_version(2, namecoin::PROTOCOL_VERSION),
            &nonces,
            &t,
            to,
        );
        assert_eq!(s.penalty.map(|p| p.1), Some("duplicate version"));
        assert!(h.on_message(Message::Verack, &nonces, &t, to).done);
    }

    #[test]
    fn old_peers_get_no_feature_and_our_own_nonce_is_a_self_connection() {
        let t = VersionTemplate::new(None);
        let to = "127.0.0.1:9".parse().unwrap();
        let nonces = Nonces::default();
        let (mut h, first) = Handshake::start(true, 5, &t, to);
        assert!(matches!(&first[..], [Message::Version(v)] if v.nonce == 5));
        let s = h.on_message(their_version(1, 70015), &nonces, &t, to);
        assert_eq!(
            s.replies,
            vec![Message::Verack],
            "outbound sent its version already"
        );
        nonces.add(99);
        let (mut h, _) = Handshake::start(false, 99, &t, to);
        assert!(
            h.on_message(
                their_version(99, namecoin::PROTOCOL_VERSION),
                &nonces,
                &t,
                to
            )
            .self_connection
        );
    }

    /// The step a handshake takes on a `feature` with `data`, after a version-3 `version`.
    fn feature_step(data: u8) -> Step {
        let t = VersionTemplate::new(None);
        let to = "127.0.0.1:9".parse().unwrap();
        let nonces = Nonces::default();
        let (mut h, _) = Handshake::start(false, 1, &t, to);
        h.on_message(
            their_version(3, namecoin::PROTOCOL_VERSION),
            &nonces,
            &t,
            to,
        );
        h.on_message(
            Message::Feature {
                id: FEATURE_ID.into(),
                data: vec![data],
            },
            &nonces,
            &t,
            to,
        )
    }

    #[test]
    fn a_peer_of_the_layout_before_proof_of_work_is_coin_only() {
        assert!(!feature_step(1).bump, "feature data 1 = packet layout 1");
        let s = feature_step(2);
        assert!(
            s.bump && s.bump_version == 2,
            "version 2: BuMP without reconciliation"
        );
        let s = feature_step(3);
        assert!(s.bump && s.bump_version == 3);
    }

    #[test]
    fn a_feature_before_version_does_not_count() {
        let t = VersionTemplate::new(None);
        let to = "127.0.0.1:9".parse().unwrap();
        let (mut h, _) = Handshake::start(false, 1, &t, to);
        let s = h.on_message(
            Message::Feature {
                id: FEATURE_ID.into(),
                data: vec![BUMP_PROTOCOL_VERSION],
            },
            &Nonces::default(),
            &t,
            to,
        );
        assert!(!s.bump);
    }
}
