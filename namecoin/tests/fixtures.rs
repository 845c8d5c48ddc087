//! The recorded real-namecoind P2P session (`tests/fixtures/namecoind/p2p.json`) decoded with
//! this crate: framing, checksums, AuxPoW headers and blocks. The fixture is the truth.

use namecoin::auxpow::{
    decode_block, decode_headers, encode_block, encode_headers, hash_hex, NAMECOIN_CHAIN_ID,
};
use namecoin::wire::{Frame, MessageCodec, MAX_MESSAGE_LEN};
use namecoin::Network;
use tokio_util::codec::Decoder;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/namecoind")
}

fn load(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {} missing: {e}", p.display()))
}

struct Msg {
    dir: String,
    command: String,
    payload: Vec<u8>,
}

fn messages() -> Vec<Msg> {
    let v: serde_json::Value = serde_json::from_str(&load("p2p.json")).unwrap();
    let mut out = Vec::new();
    for m in v["messages"].as_array().unwrap() {
        let Some(h) = m["hex"].as_str() else { continue };
        let bytes = hex::decode(h).unwrap();
        let mut codec =
            MessageCodec::new(Network::Regtest.magic(), |_: &namecoin::wire::Command| {
                Some(MAX_MESSAGE_LEN)
            });
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let frame = codec.decode(&mut buf).unwrap().expect("one whole message");
        assert!(buf.is_empty(), "one message per entry");
        let Frame::Message {
            command, payload, ..
        } = frame
        else {
            panic!("checksum failed for {}", m["command"])
        };
        assert_eq!(command.name(), m["command"].as_str().unwrap());
        out.push(Msg {
            dir: m["dir"].as_str().unwrap().into(),
            command: command.name(),
            payload: payload.to_vec(),
        });
    }
    out
}

fn rpc_result(label: &str) -> serde_json::Value {
    for line in load("rpc.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["label"] == label {
            return v["response"]["result"].clone();
        }
    }
    panic!("no {label} in rpc.jsonl")
}

#[test]
fn every_recorded_message_frames_and_checksums() {
    let msgs = messages();
    assert!(msgs.len() >= 20);
    assert!(msgs.iter().any(|m| m.dir == "in" && m.command == "headers"));
}

#[test]
fn headers_carry_auxpow_and_chain_to_the_rpc_tip() {
    let msgs = messages();
    let h = msgs.iter().find(|m| m.command == "headers").unwrap();
    let headers = decode_headers(&h.payload).unwrap();
    assert_eq!(headers.len(), 116);
    assert_eq!(
        encode_headers(&headers),
        h.payload,
        "one encode, one decode: same bytes"
    );
    let genesis = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";
    let mut prev = genesis.to_string();
    for bh in &headers {
        assert_eq!(bh.header.version.to_consensus(), 0x0001_0104);
        assert_eq!(bh.chain_id(), NAMECOIN_CHAIN_ID);
        let aux = bh.auxpow.as_ref().expect("regtest blocks carry AuxPoW");
        assert!(aux.chain_merkle_branch.len() <= 30);
        assert_eq!(hash_hex(&bh.header.prev_blockhash), prev, "headers chain");
        prev = hash_hex(&bh.block_hash());
    }
    assert_eq!(prev, rpc_result("getblockhash_tip").as_str().unwrap());
}

#[test]
fn blocks_decode_with_their_transactions() {
    let msgs = messages();
    let blocks: Vec<&Msg> = msgs.iter().filter(|m| m.command == "block").collect();
    assert_eq!(blocks.len(), 2);
    let (tip, txs) = decode_block(&blocks[0].payload).unwrap();
    assert_eq!(
        encode_block(&tip, &txs),
        blocks[0].payload,
        "re-encodes byte for byte"
    );

    assert_eq!(
        hash_hex(&tip.block_hash()),
        rpc_result("getblockhash_tip").as_str().unwrap()
    );
    let payment = rpc_result("sendtoaddress");
    let txids: Vec<String> = txs.iter().map(|t| t.compute_txid().to_string()).collect();
    assert!(
        txids.contains(&payment.as_str().unwrap().to_string()),
        "payment tx in the tip block"
    );
    let (_, txs) = decode_block(&blocks[1].payload).unwrap();
    // A name transaction has Namecoin's tx version 0x7100.
    assert!(
        txs.iter().any(|t| t.version.0 == 0x7100),
        "name_firstupdate block holds a name tx"
    );
    // A truncated block is an error, not a panic.
    assert!(decode_block(&blocks[1].payload[..blocks[1].payload.len() - 1]).is_err());
}
