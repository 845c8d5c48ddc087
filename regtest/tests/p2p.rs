//! The stand-in's P2P handshake against the recorded namecoind session (`p2p.json`): the same
//! messages in the same order, then AuxPoW headers that chain to the RPC tip, each with a
//! parent block that meets the regtest target.

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use futures::{SinkExt, StreamExt};
use namecoin::auxpow::{decode_block, decode_headers, hash_hex};
use namecoin::wire::{Command, Frame, MessageCodec, Outgoing};
use regtest::{Regtest, RegtestConfig};
use tokio_util::codec::Framed;

fn recorded_inbound_handshake() -> Vec<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/namecoind/p2p.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["dir"] == "in")
        .map(|m| m["command"].as_str().unwrap().to_string())
        .take_while(|c| c != "headers")
        .collect()
}

#[tokio::test]
async fn handshake_and_headers_like_namecoind() {
    let dir = std::env::temp_dir().join(format!("bump-regtest-p2p-{}", std::process::id()));
    let rt = Regtest::start(RegtestConfig::new(&dir)).await.unwrap();
    rt.mine_to_wallet("w", 5);
    let tip = rt.chain.lock().unwrap().tip().hash();
    let stream = tokio::net::TcpStream::connect(rt.p2p_addr.unwrap())
        .await
        .unwrap();
    let local = stream.local_addr().unwrap();
    let codec = MessageCodec::new(regtest::NETWORK.magic(), |_: &Command| Some(8 << 20));
    let mut f = Framed::new(stream, codec);
    let send = |cmd: &str, payload: Vec<u8>| Outgoing::new(Command::new(cmd), payload.into());
    let v = VersionMessage {
        version: namecoin::PROTOCOL_VERSION,
        services: ServiceFlags::from(1 << 24),
        timestamp: 0,
        receiver: Address::new(&local, ServiceFlags::NONE),
        sender: Address::new(&local, ServiceFlags::NONE),
        nonce: 7,
        user_agent: "/test/".into(),
        start_height: 0,
        relay: false,
    };
    f.send(send("version", serialize(&v))).await.unwrap();
    // BIP 434 feature before verack: ignored, like namecoind.
    f.send(send("feature", {
        let mut p = vec![6u8];
        p.extend(b"bump/1");
        p.extend([1u8, 1]);
        p
    }))
    .await
    .unwrap();
    f.send(send("verack", vec![])).await.unwrap();
    let mut seen = Vec::new();
    let want = recorded_inbound_handshake();
    while seen.len() < want.len() {
        let Frame::Message { command, .. } = f.next().await.unwrap().unwrap() else {
            panic!("bad checksum")
        };
        seen.push(command.name());
    }
    assert_eq!(seen, want, "same handshake as the recorded namecoind");
    // Unknown commands and inv types are ignored; ping still answered.
    f.send(send("bumpzzz", vec![1, 2, 3])).await.unwrap();
    f.send(send("ping", 42u64.to_le_bytes().to_vec()))
        .await
        .unwrap();
    loop {
        let Frame::Message {
            command, payload, ..
        } = f.next().await.unwrap().unwrap()
        else {
            panic!()
        };
        if command.name() == "pong" {
            assert_eq!(&payload[..], &42u64.to_le_bytes());
            break;
        }
    }
    let genesis =
        bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest).block_hash();
    let gh = GetHeadersMessage {
        version: namecoin::PROTOCOL_VERSION,
        locator_hashes: vec![genesis],
        stop_hash: bitcoin::BlockHash::all_zeros(),
    };
    f.send(send("getheaders", serialize(&gh))).await.unwrap();
    let headers = loop {
        let Frame::Message {
            command, payload, ..
        } = f.next().await.unwrap().unwrap()
        else {
            panic!()
        };
        if command.name() == "headers" {
            break decode_headers(&payload).unwrap();
        }
    };
    assert_eq!(headers.len(), 5);
    let mut prev = genesis;
    for h in &headers {
        assert_eq!(h.header.prev_blockhash, prev);
        assert_eq!(h.header.version.to_consensus(), 0x0001_0104);
        let aux = h.auxpow.as_ref().expect("AuxPoW like real regtest blocks");
        let target = bitcoin::Target::from_compact(h.header.bits);
        assert!(
            target.is_met_by(aux.parent_block_hash()),
            "parent PoW meets the target"
        );
        // The parent coinbase commits to this block's hash.
        let mut disp = h.block_hash().to_byte_array();
        disp.reverse();
        assert_eq!(
            &aux.coinbase_tx.input[0].script_sig.as_bytes()[1..33],
            &disp
        );
        prev = h.block_hash();
    }
    assert_eq!(hash_hex(&prev), hash_hex(&tip));
    // getdata for the tip block → a block that decodes and holds its coinbase.
    let inv = vec![bitcoin::p2p::message_blockdata::Inventory::Block(tip)];
    f.send(send("getdata", serialize(&inv))).await.unwrap();
    loop {
        let Frame::Message {
            command, payload, ..
        } = f.next().await.unwrap().unwrap()
        else {
            panic!()
        };
        if command.name() == "block" {
            let (h, txs) = decode_block(&payload).unwrap();
            assert_eq!(h.block_hash(), tip);
            assert_eq!(txs.len(), 1);
            break;
        }
    }
    rt.stop();
    let _ = std::fs::remove_dir_all(dir);
}
