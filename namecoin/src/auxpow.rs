//! Namecoin block headers with AuxPoW (merge-mining proof), as carried in `headers` and
//! `block` messages (namecoin-core `primitives/pureheader.h`, `auxpow.h`).
//!
//! A header is the 80-byte Bitcoin-style header; when `version & 0x100` (the AuxPoW flag) is
//! set, a `CAuxPow` follows it:
//!
//! 1. the parent chain's coinbase transaction (with witness data if flagged),
//! 2. hashBlock (32 bytes, unused),
//! 3. merkle branch: compact size + 32-byte hashes, then nIndex (i32 LE),
//! 4. chain merkle branch: compact size (≤ 30) + 32-byte hashes, then nChainIndex (i32 LE),
//! 5. the parent block's 80-byte header.
//!
//! The block hash covers the 80-byte header only. The chain id is `version >> 16`.

use bitcoin::block::Header;
use bitcoin::consensus::{encode, Decodable};
use bitcoin::hashes::Hash;
use bitcoin::io::{Cursor, Read};
use bitcoin::{BlockHash, Transaction, VarInt};

/// Version bit that says an AuxPoW follows the header.
pub const AUXPOW_FLAG: i32 = 0x100;
/// Namecoin's chain id (in version bits 16 and up).
pub const NAMECOIN_CHAIN_ID: i32 = 0x0001;
/// Most entries in a chain merkle branch.
pub const MAX_CHAIN_BRANCH: u64 = 30;
/// Most headers in one `headers` message.
pub const MAX_HEADERS: u64 = 2000;
/// Longest merkle branch accepted when decoding (a tree of 2^32 leaves).
const MAX_BRANCH: u64 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxPow {
    pub coinbase_tx: Transaction,
    pub parent_hash: [u8; 32],
    pub merkle_branch: Vec<[u8; 32]>,
    pub index: i32,
    pub chain_merkle_branch: Vec<[u8; 32]>,
    pub chain_index: i32,
    pub parent_header: Header,
}

/// A Namecoin block header and its AuxPoW, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub header: Header,
    pub auxpow: Option<AuxPow>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuxPowError {
    #[error("truncated or malformed: {0}")]
    Decode(#[from] encode::Error),
    #[error("{what} has {n} entries, more than {max}")]
    TooMany {
        what: &'static str,
        n: u64,
        max: u64,
    },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

impl BlockHeader {
    /// The block hash: double SHA-256 of the 80-byte header.
    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    pub fn chain_id(&self) -> i32 {
        self.header.version.to_consensus() >> 16
    }

    /// Read one header (and its AuxPoW when flagged).
    pub fn decode<R: Read + ?Sized>(r: &mut R) -> Result<BlockHeader, AuxPowError> {
        let header = Header::consensus_decode(r)?;
        let auxpow = if header.version.to_consensus() & AUXPOW_FLAG != 0 {
            Some(AuxPow::decode(r)?)
        } else {
            None
        };
        Ok(BlockHeader { header, auxpow })
    }

    /// Append the header (and its AuxPoW) in wire form; the inverse of [`BlockHeader::decode`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend(encode::serialize(&self.header));
        if let Some(a) = &self.auxpow {
            a.encode(out);
        }
    }
}

fn write_branch(out: &mut Vec<u8>, branch: &[[u8; 32]]) {
    out.extend(encode::serialize(&VarInt(branch.len() as u64)));
    for h in branch {
        out.extend_from_slice(h);
    }
}

fn read_branch<R: Read + ?Sized>(
    r: &mut R,
    what: &'static str,
    max: u64,
) -> Result<Vec<[u8; 32]>, AuxPowError> {
    let n = VarInt::consensus_decode(r)?.0;
    if n > max {
        return Err(AuxPowError::TooMany { what, n, max });
    }
    (0..n)
        .map(|_| Ok(<[u8; 32]>::consensus_decode(r)?))
        .collect()
}

impl AuxPow {
    pub fn decode<R: Read + ?Sized>(r: &mut R) -> Result<AuxPow, AuxPowError> {
        let coinbase_tx = Transaction::consensus_decode(r)?;
        let parent_hash = <[u8; 32]>::consensus_decode(r)?;
        let merkle_branch = read_branch(r, "merkle branch", MAX_BRANCH)?;
        let index = i32::consensus_decode(r)?;
        let chain_merkle_branch = read_branch(r, "chain merkle branch", MAX_CHAIN_BRANCH)?;
        let chain_index = i32::consensus_decode(r)?;
        let parent_header = Header::consensus_decode(r)?;
        Ok(AuxPow {
            coinbase_tx,
            parent_hash,
            merkle_branch,
            index,
            chain_merkle_branch,
            chain_index,
            parent_header,
        })
    }

    /// Append in wire form; the inverse of [`AuxPow::decode`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend(encode::serialize(&self.coinbase_tx));
        out.extend_from_slice(&self.parent_hash);
        write_branch(out, &self.merkle_branch);
        out.extend(self.index.to_le_bytes());
        write_branch(out, &self.chain_merkle_branch);
        out.extend(self.chain_index.to_le_bytes());
        out.extend(encode::serialize(&self.parent_header));
    }

    /// Hash of the parent block (whose proof of work secures this block).
    pub fn parent_block_hash(&self) -> BlockHash {
        self.parent_header.block_hash()
    }
}

/// Decode a `headers` payload: count, then per entry a header (+ AuxPoW) and a zero tx count.
pub fn decode_headers(payload: &[u8]) -> Result<Vec<BlockHeader>, AuxPowError> {
    let mut r = Cursor::new(payload);
    let n = VarInt::consensus_decode(&mut r)?.0;
    if n > MAX_HEADERS {
        return Err(AuxPowError::TooMany {
            what: "headers",
            n,
            max: MAX_HEADERS,
        });
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(BlockHeader::decode(&mut r)?);
        let _txs = VarInt::consensus_decode(&mut r)?;
    }
    trailing(&r, payload.len())?;
    Ok(out)
}

/// Encode a `headers` payload; the inverse of [`decode_headers`].
pub fn encode_headers(headers: &[BlockHeader]) -> Vec<u8> {
    let mut out = encode::serialize(&VarInt(headers.len() as u64));
    for h in headers {
        h.encode(&mut out);
        out.push(0);
    }
    out
}

/// Encode a `block` payload; the inverse of [`decode_block`].
pub fn encode_block(header: &BlockHeader, txs: &[Transaction]) -> Vec<u8> {
    let mut out = Vec::new();
    header.encode(&mut out);
    out.extend(encode::serialize(&VarInt(txs.len() as u64)));
    for tx in txs {
        out.extend(encode::serialize(tx));
    }
    out
}

/// Decode a `block` payload: header (+ AuxPoW) and transactions.
pub fn decode_block(payload: &[u8]) -> Result<(BlockHeader, Vec<Transaction>), AuxPowError> {
    let mut r = Cursor::new(payload);
    let header = BlockHeader::decode(&mut r)?;
    let txs = Vec::<Transaction>::consensus_decode(&mut r)?;
    trailing(&r, payload.len())?;
    Ok((header, txs))
}

fn trailing(r: &Cursor<&[u8]>, len: usize) -> Result<(), AuxPowError> {
    let pos = r.position() as usize;
    if pos != len {
        return Err(AuxPowError::Trailing(len - pos));
    }
    Ok(())
}

/// Display form of a block hash (byte-reversed hex, as RPC prints it).
pub fn hash_hex(h: &BlockHash) -> String {
    let mut b = h.to_byte_array();
    b.reverse();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
