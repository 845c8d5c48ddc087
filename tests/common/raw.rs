//! A raw TCP peer for hostile-peer tests: speaks the wire format by hand from its own
//! loopback address (so a ban hits only it), and reads the node's messages back.

use bump::p2p::message::{Message, FEATURE_ID, NODE_BUMP};
use bump::packet::{Packet, BODY_LEN};
use bump::tag::Tag;
use namecoin::wire::{encode_message, Command};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];

/// A raw TCP peer bound to its own loopback address (so a ban hits only it).
pub struct RawPeer {
    pub s: TcpStream,
}

impl RawPeer {
    /// A peer whose receive buffer is tiny: what the node writes to it backs up at once.
    pub fn connect_slow(to: &str, from_ip: [u8; 4]) -> std::io::Result<RawPeer> {
        let to: SocketAddr = to.parse().unwrap();
        let sock = socket_bind_rcvbuf(from_ip, to, Some(2048))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(RawPeer { s: sock })
    }

    pub fn connect(to: &str, from_ip: [u8; 4]) -> std::io::Result<RawPeer> {
        let to: SocketAddr = to.parse().unwrap();
        let sock = socket2_bind(from_ip, to)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(RawPeer { s: sock })
    }

    pub fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn send(&mut self, m: &Message) -> std::io::Result<()> {
        let out = m.encode();
        self.send_cmd(out.command, &out.payload)
    }

    pub fn send_cmd(&mut self, c: Command, payload: &[u8]) -> std::io::Result<()> {
        let mut b = bytes::BytesMut::new();
        encode_message(MAGIC, c, payload, &mut b);
        self.s.write_all(&b)
    }

    /// Complete a coin-only handshake (version and verack, no BuMP feature).
    pub fn coin_handshake(&mut self) -> std::io::Result<()> {
        self.handshake_with(false)
    }

    /// Complete a BuMP handshake (as the dialling side).
    pub fn handshake(&mut self) -> std::io::Result<()> {
        self.handshake_with(true)
    }

    /// A BuMP handshake announcing feature version `v`.
    pub fn handshake_version(&mut self, v: u8) -> std::io::Result<()> {
        self.handshake_as(true, v)
    }

    fn handshake_with(&mut self, bump: bool) -> std::io::Result<()> {
        self.handshake_as(bump, bump::p2p::message::BUMP_PROTOCOL_VERSION)
    }

    fn handshake_as(&mut self, bump: bool, version: u8) -> std::io::Result<()> {
        let v = bitcoin::p2p::message_network::VersionMessage {
            version: namecoin::PROTOCOL_VERSION,
            services: bitcoin::p2p::ServiceFlags::from(NODE_BUMP),
            timestamp: 0,
            receiver: bitcoin::p2p::Address::new(
                &"127.0.0.1:1".parse().unwrap(),
                bitcoin::p2p::ServiceFlags::NONE,
            ),
            sender: bitcoin::p2p::Address::new(
                &"127.0.0.1:1".parse().unwrap(),
                bitcoin::p2p::ServiceFlags::NONE,
            ),
            nonce: 42,
            user_agent: "/raw-test/".into(),
            start_height: 0,
            relay: false,
        };
        self.send(&Message::Version(v))?;
        if bump {
            self.send(&Message::Feature {
                id: FEATURE_ID.into(),
                data: vec![version],
            })?;
        }
        self.send(&Message::Verack)?;
        Ok(())
    }

    /// Read one message (waiting at most the read timeout); `None` on timeout, EOF or a
    /// frame that does not decode.
    pub fn read_msg(&mut self) -> Option<Message> {
        let mut hdr = [0u8; 24];
        self.s.read_exact(&mut hdr).ok()?;
        let len = u32::from_le_bytes(hdr[16..20].try_into().ok()?) as usize;
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).ok()?;
        let name = std::str::from_utf8(&hdr[4..16])
            .ok()?
            .trim_end_matches('\0')
            .to_string();
        if name.len() > 12 {
            return None;
        }
        Message::decode(Command::new(&name), &payload).ok()
    }

    /// Read messages until one matches (or `secs` pass).
    pub fn wait_for_msg(&mut self, secs: u64, want: impl Fn(&Message) -> bool) -> Option<Message> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Some(m) = self.read_msg() {
                if want(&m) {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Read until EOF or error; true if the node closed the connection within `secs`.
    pub fn closed_within(&mut self, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 65536];
        while std::time::Instant::now() < deadline {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(_) => return true,
            }
        }
        false
    }
}

pub fn socket2_bind(from_ip: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    socket_bind_rcvbuf(from_ip, to, None)
}

/// Connect from `from_ip`, optionally with a small receive buffer (a peer that reads slowly).
pub fn socket_bind_rcvbuf(
    from_ip: [u8; 4],
    to: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    // std has no bind-before-connect; use a tokio socket in a tiny runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        sock.bind(SocketAddr::from((from_ip, 0)))?;
        let s = sock.connect(to).await?;
        s.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

pub fn good_packet(fill: u8) -> Packet {
    solved(Packet {
        tag: Tag([fill; 20]),
        expires: bump::unix_now() + 3600,
        nonce: 0,
        body: Box::new([fill; BODY_LEN]),
    })
}

/// The packet with the proof of work a regtest node asks for it (its TTL plus clock skew).
pub fn solved(mut p: Packet) -> Packet {
    let ttl = p.expires.saturating_sub(bump::unix_now()) + bump::packet::CLOCK_SKEW;
    let work = bump::pow::required_work(bump::pow::REGTEST_BASE_WORK, ttl);
    bump::pow::solve(&mut p, work);
    p
}
