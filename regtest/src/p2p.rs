//! The stand-in's P2P side: namecoind's handshake as recorded (`p2p.json`) and the few requests
//! a BuMP node or a header-syncing peer makes.
//!
//! Inbound only. After the peer's `version`: our `version` (protocol 110017, services
//! NETWORK|WITNESS, relay), `wtxidrelay`, `sendaddrv2`, `verack`. After its `verack`:
//! `sendcmpct`, `ping`, `feefilter`. Then `ping` → `pong`, `getheaders` → `headers` (AuxPoW
//! headers, ≤ 2000), `getdata` of blocks → `block`. Unknown commands, inv types and getdata
//! types are ignored without penalty, and a `feature` after the handshake disconnects — as
//! namecoind does.

use crate::chain::Chain;
use bitcoin::consensus::{deserialize_partial, serialize};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use namecoin::auxpow::{encode_block, encode_headers};
use namecoin::wire::{Command, Frame, MessageCodec, Outgoing};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const MAX_PAYLOAD: usize = 4 << 20;

fn out(cmd: &str, payload: Vec<u8>) -> Outgoing {
    Outgoing::new(Command::new(cmd), Bytes::from(payload))
}

pub async fn serve(listener: TcpListener, chain: Arc<Mutex<Chain>>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let chain = chain.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = peer(stream, chain) => if let Err(e) = r { tracing::debug!("regtest p2p peer: {e}") },
            }
        });
    }
}

async fn peer(stream: TcpStream, chain: Arc<Mutex<Chain>>) -> Result<(), String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let remote = stream.peer_addr().map_err(|e| e.to_string())?;
    let codec = MessageCodec::new(namecoin::Network::Regtest.magic(), |_: &Command| {
        Some(MAX_PAYLOAD)
    });
    let mut framed = Framed::new(stream, codec);
    let mut got_verack = false;
    let mut got_version = false;
    while let Some(frame) = framed.next().await {
        let Frame::Message {
            command, payload, ..
        } = frame.map_err(|e| e.to_string())?
        else {
            continue;
        };
        let name = command.name();
        match name.as_str() {
            "version" if !got_version => {
                deserialize_partial::<VersionMessage>(&payload).map_err(|e| e.to_string())?;
                got_version = true;
                let height = chain.lock().unwrap_or_else(|e| e.into_inner()).height();
                let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
                let v = VersionMessage {
                    version: namecoin::PROTOCOL_VERSION,
                    services,
                    timestamp: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0),
                    receiver: Address::new(&remote, ServiceFlags::NONE),
                    sender: Address::new(&local, services),
                    nonce: rand::random(),
                    user_agent: "/bump-regtest:0.1.0/".into(),
                    start_height: height as i32,
                    relay: true,
                };
                framed
                    .send(out("version", serialize(&v)))
                    .await
                    .map_err(|e| e.to_string())?;
                framed
                    .send(out("wtxidrelay", vec![]))
                    .await
                    .map_err(|e| e.to_string())?;
                framed
                    .send(out("sendaddrv2", vec![]))
                    .await
                    .map_err(|e| e.to_string())?;
                framed
                    .send(out("verack", vec![]))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "verack" if got_version && !got_verack => {
                got_verack = true;
                let mut cmpct = vec![0u8];
                cmpct.extend(2u64.to_le_bytes());
                framed
                    .send(out("sendcmpct", cmpct))
                    .await
                    .map_err(|e| e.to_string())?;
                framed
                    .send(out("ping", rand::random::<u64>().to_le_bytes().to_vec()))
                    .await
                    .map_err(|e| e.to_string())?;
                framed
                    .send(out("feefilter", 1000u64.to_le_bytes().to_vec()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "feature" if got_verack => return Err("feature after verack".into()),
            "ping" if payload.len() == 8 => {
                framed
                    .send(out("pong", payload.to_vec()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "getheaders" if got_verack => {
                let (gh, _) = deserialize_partial::<GetHeadersMessage>(&payload)
                    .map_err(|e| e.to_string())?;
                let payload = {
                    let c = chain.lock().unwrap_or_else(|e| e.into_inner());
                    // Start after the first locator hash we know (genesis at worst).
                    let start = gh
                        .locator_hashes
                        .iter()
                        .find_map(|h| c.block_by_hash(h).map(|b| b.height))
                        .unwrap_or(0);
                    let headers: Vec<_> = c
                        .blocks
                        .iter()
                        .skip(start as usize + 1)
                        .take(2000)
                        .take_while(|b| {
                            let stop = gh.stop_hash;
                            stop == bitcoin::BlockHash::from_raw_hash(
                                bitcoin::hashes::Hash::all_zeros(),
                            ) || b.height
                                <= c.block_by_hash(&stop).map(|s| s.height).unwrap_or(u32::MAX)
                        })
                        .map(|b| b.header.clone())
                        .collect();
                    encode_headers(&headers)
                };
                framed
                    .send(out("headers", payload))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "getdata" if got_verack => {
                let Ok((inv, _)) = deserialize_partial::<Vec<Inventory>>(&payload) else {
                    continue;
                };
                for item in inv {
                    let hash = match item {
                        Inventory::Block(h) | Inventory::WitnessBlock(h) => h,
                        _ => continue, // unknown types: ignored, no notfound
                    };
                    let payload = {
                        let c = chain.lock().unwrap_or_else(|e| e.into_inner());
                        c.block_by_hash(&hash)
                            .map(|b| encode_block(&b.header, &b.txs))
                    };
                    if let Some(p) = payload {
                        framed
                            .send(out("block", p))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            _ => {} // unknown or out-of-order: ignored
        }
    }
    Ok(())
}
