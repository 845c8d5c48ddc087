//! Misbehaviour points (docs/protocol.md §5.6): what each broken rule costs a peer. At
//! [`BAN_SCORE`] the peer is disconnected and its IP banned for the ban time. One message
//! that breaks several rules is charged once, for the first rule it breaks in the order the
//! reader checks them: framing, checksum, rate, decoding, then the message's own rules.

/// Score at which a peer is disconnected and banned.
pub const BAN_SCORE: u32 = 100;
/// A frame that cannot be parsed (bad magic, oversize length, garbage): the stream is lost.
pub const BAD_FRAME: u32 = 100;
/// A frame whose checksum does not match.
pub const BAD_CHECKSUM: u32 = 20;
/// Each message beyond the per-peer rate limit.
pub const FLOOD: u32 = 1;
/// A message with more entries than its cap (inv/getdata/notfound > 50,000, addr > 1,000).
pub const TOO_MANY_ENTRIES: u32 = 100;
/// A message whose payload does not decode.
pub const MALFORMED: u32 = 20;
/// `version` twice, `verack` before `version`, or a handshake message after it.
pub const HANDSHAKE_ORDER: u32 = 10;
/// `getdata` for BuMP packets from a peer that did not negotiate BuMP.
pub const GETDATA_FROM_COIN_PEER: u32 = 10;
/// `getdata` beyond the bound of packets a peer may have asked for and not yet received.
pub const GETDATA_OVER_BOUND: u32 = 50;
/// A `bump` packet we did not ask this peer for.
pub const UNREQUESTED_PACKET: u32 = 10;
/// A packet that is invalid (not merely expired in transit).
pub const INVALID_PACKET: u32 = 10;
/// An `inv` announcing ids whose work is under half the floor we told the peer more than
/// [`super::peer::FLOOR_GRACE`] ago (once per `inv` slice; such ids are never fetched).
pub const IGNORED_FLOOR: u32 = 1;
