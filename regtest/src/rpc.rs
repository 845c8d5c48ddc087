//! The stand-in's JSON-RPC server: namecoind's HTTP dialects and the method subset BuMP uses.
//!
//! - HTTP Basic auth against the cookie (`<datadir>/regtest/.cookie`, `__cookie__:<64 hex>`)
//!   and an optional rpcuser/rpcpassword; anything else gets 401 with an empty body.
//! - JSON-RPC 1.0 (or no version): `{"result","error","id"}`, errors with HTTP 500 (404 for an
//!   unknown method). JSON-RPC 2.0: errors with HTTP 200 and no `result`. Batches: an array.
//! - `/` uses the only loaded wallet; with several, wallet calls need `/wallet/<name>`.
//!
//! Methods: getblockchaininfo, getnetworkinfo, getblockcount, getbestblockhash, getblockhash,
//! getblockheader, createwallet, listwallets, getnewaddress, getbalance, generatetoaddress,
//! name_show, name_scan, name_new, name_firstupdate, name_update, name_pending, name_list,
//! name_history (disabled, as without -namehistory), sendtoaddress, gettxout,
//! getrawtransaction, validateaddress.

use crate::chain::{
    block_hash_hex, fail, Chain, Fail, NameData, COIN, P2PKH_PREFIX, P2SH_PREFIX, REGTEST_BITS,
};
use crate::script::{self, parse_name_script, NameOp};
use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Script, Transaction, Txid};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

pub struct RpcState {
    pub chain: Arc<Mutex<Chain>>,
    /// Accepted `user:password` strings (the cookie's and rpcuser's).
    pub credentials: Vec<String>,
    /// Set by tests to make the server answer as if namecoind were down (connection reset).
    pub down: std::sync::atomic::AtomicBool,
}

fn amount(sat: u64) -> Value {
    // namecoind prints amounts as JSON numbers with up to 8 decimals.
    json!((sat as f64) / COIN as f64)
}

fn parse_amount(v: &Value) -> Result<u64, Fail> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(fail(-3, "Amount is not a number or string")),
    };
    let f: f64 = s.parse().map_err(|_| fail(-3, "Invalid amount"))?;
    namecoin::rpc::amount_to_sat(f).ok_or_else(|| fail(-3, "Amount out of range"))
}

fn param(p: &[Value], i: usize) -> Option<&Value> {
    p.get(i).filter(|v| !v.is_null())
}

fn str_param(p: &[Value], i: usize, what: &str) -> Result<String, Fail> {
    match param(p, i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(fail(
            -3,
            format!(
                "JSON value of type {} is not of expected type string",
                kind(other)
            ),
        )),
        None => Err(fail(-1, format!("missing required argument {what}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_txid(s: &str) -> Result<Txid, Fail> {
    if s.len() != 64 {
        return Err(fail(
            -8,
            format!("txid must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    Txid::from_str(s).map_err(|_| fail(-8, format!("txid must be hexadecimal string (not '{s}')")))
}

/// ASCII (0x20–0x7e) names and values, namecoind's default encoding.
fn ascii(bytes: &[u8]) -> Option<String> {
    bytes
        .iter()
        .all(|b| (0x20..=0x7e).contains(b))
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

fn decode_ascii(s: &str) -> Result<Vec<u8>, Fail> {
    if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(s.as_bytes().to_vec())
    } else {
        Err(fail(-1000, "Name/value is invalid for encoding ascii"))
    }
}

fn script_json(chain: &Chain, s: &Script) -> Value {
    let addr_script = script::address_script(s);
    let address = script::script_address(&addr_script, P2PKH_PREFIX, P2SH_PREFIX);
    let mut m = Map::new();
    if let Some((op, _)) = parse_name_script(s) {
        let mut n = Map::new();
        n.insert("op".into(), json!(op.op_name()));
        match &op {
            NameOp::New { hash } => {
                n.insert("hash".into(), json!(hex::encode(hash)));
            }
            NameOp::FirstUpdate { name, value, rand } => {
                n.insert("name".into(), json!(ascii(name)));
                n.insert("name_encoding".into(), json!("ascii"));
                n.insert("value".into(), json!(ascii(value)));
                n.insert("value_encoding".into(), json!("ascii"));
                n.insert("rand".into(), json!(hex::encode(rand)));
            }
            NameOp::Update { name, value } => {
                n.insert("name".into(), json!(ascii(name)));
                n.insert("name_encoding".into(), json!("ascii"));
                n.insert("value".into(), json!(ascii(value)));
                n.insert("value_encoding".into(), json!("ascii"));
            }
        }
        m.insert("nameOp".into(), Value::Object(n));
    }
    m.insert("asm".into(), json!(script::asm(s)));
    if let Some(a) = &address {
        let d = format!("addr({a})");
        let sum = script::descriptor_checksum(&d).unwrap_or_default();
        m.insert("desc".into(), json!(format!("{d}#{sum}")));
    }
    m.insert("hex".into(), json!(hex::encode(s.as_bytes())));
    if let Some(a) = address {
        m.insert("address".into(), json!(a));
    }
    let kind = if addr_script.is_p2pkh() {
        "pubkeyhash"
    } else if addr_script.is_p2sh() {
        "scripthash"
    } else {
        "nonstandard"
    };
    m.insert("type".into(), json!(kind));
    let _ = chain;
    Value::Object(m)
}

fn name_json(chain: &Chain, name: &[u8], d: &NameData, wallet: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert(
        "name".into(),
        json!(ascii(name).unwrap_or_else(|| hex::encode(name))),
    );
    m.insert("name_encoding".into(), json!("ascii"));
    match ascii(&d.value) {
        Some(v) => m.insert("value".into(), json!(v)),
        None => m.insert("value_error".into(), json!("invalid data for ascii")),
    };
    m.insert("value_encoding".into(), json!("ascii"));
    m.insert("txid".into(), json!(d.outpoint.txid.to_string()));
    m.insert("vout".into(), json!(d.outpoint.vout));
    let addr = script::script_address(
        &script::address_script(&d.script),
        P2PKH_PREFIX,
        P2SH_PREFIX,
    );
    m.insert("address".into(), json!(addr));
    m.insert("height".into(), json!(d.height));
    m.insert("expires_in".into(), json!(chain.expires_in(d)));
    m.insert("expired".into(), json!(chain.is_expired(d)));
    if let Some(w) = wallet.and_then(|w| chain.wallets.get(w)) {
        m.insert("ismine".into(), json!(w.is_mine(&d.script)));
    }
    Value::Object(m)
}

fn pending_json(chain: &Chain, wallet: Option<&str>) -> Value {
    let mut out = Vec::new();
    for (tx, vout, op) in chain.pending_names() {
        let Some(name) = op.name() else { continue };
        let o = &tx.output[vout as usize];
        let mut m = Map::new();
        m.insert("name".into(), json!(ascii(name)));
        m.insert("name_encoding".into(), json!("ascii"));
        m.insert("value".into(), json!(op.value().and_then(ascii)));
        m.insert("value_encoding".into(), json!("ascii"));
        m.insert("txid".into(), json!(tx.compute_txid().to_string()));
        m.insert("vout".into(), json!(vout));
        m.insert(
            "address".into(),
            json!(script::script_address(
                &script::address_script(&o.script_pubkey),
                P2PKH_PREFIX,
                P2SH_PREFIX
            )),
        );
        if let Some(w) = wallet.and_then(|w| chain.wallets.get(w)) {
            m.insert("ismine".into(), json!(w.is_mine(&o.script_pubkey)));
        }
        m.insert("op".into(), json!(op.op_name()));
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

fn raw_tx_json(chain: &Chain, tx: &Transaction, height: Option<u32>) -> Value {
    let bytes = bitcoin::consensus::encode::serialize(tx);
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|i| {
            if i.previous_output.is_null() {
                json!({"coinbase": hex::encode(i.script_sig.as_bytes()), "sequence": i.sequence.0})
            } else {
                json!({
                    "txid": i.previous_output.txid.to_string(),
                    "vout": i.previous_output.vout,
                    "scriptSig": {"asm": script::asm(&i.script_sig), "hex": hex::encode(i.script_sig.as_bytes())},
                    "sequence": i.sequence.0,
                })
            }
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| json!({"value": amount(o.value.to_sat()), "n": n, "scriptPubKey": script_json(chain, &o.script_pubkey)}))
        .collect();
    let mut m = json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": bytes.len(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
        "hex": hex::encode(&bytes),
    });
    if let Some(h) = height {
        let b = &chain.blocks[h as usize];
        m["blockhash"] = json!(block_hash_hex(&b.hash()));
        m["confirmations"] = json!(chain.confirmations(Some(h)));
        m["time"] = json!(b.header.header.time);
        m["blocktime"] = json!(b.header.header.time);
    }
    m
}

/// Which wallet a call uses: the path's, or the only loaded one.
fn pick_wallet(chain: &Chain, path_wallet: Option<&str>) -> Result<String, Fail> {
    match path_wallet {
        Some(w) => {
            if chain.wallets.contains_key(w) {
                Ok(w.to_string())
            } else {
                Err(fail(-18, "Requested wallet does not exist or is not loaded"))
            }
        }
        None => match chain.wallets.len() {
            0 => Err(fail(-18, "No wallet is loaded. Load a wallet using loadwallet or create a new one with createwallet. (Note: A default wallet is no longer automatically created)")),
            1 => Ok(chain.wallets.keys().next().expect("one").clone()),
            _ => Err(fail(-19, "Wallet file not specified (must request wallet RPC through /wallet/<filename> uri-path).")),
        },
    }
}

/// Run one method.
pub fn dispatch(
    chain: &mut Chain,
    path_wallet: Option<&str>,
    method: &str,
    p: &[Value],
) -> Result<Value, Fail> {
    let soft_wallet = pick_wallet(chain, path_wallet).ok();
    let soft_wallet = soft_wallet.as_deref();
    match method {
        "getblockchaininfo" => {
            let tip = chain.tip();
            let h = &tip.header.header;
            Ok(json!({
                "chain": "regtest",
                "blocks": chain.height(),
                "headers": chain.height(),
                "bestblockhash": block_hash_hex(&tip.hash()),
                "bits": format!("{REGTEST_BITS:08x}"),
                "difficulty": 4.656542373906925e-10,
                "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
                "time": h.time,
                "mediantime": h.time,
                "verificationprogress": 1.0,
                "initialblockdownload": chain.in_ibd(),
                "chainwork": format!("{:064x}", 2 * (chain.height() as u64 + 1)),
                "size_on_disk": 293,
                "pruned": false,
                "warnings": ["This is BuMP's embedded regtest stand-in, not namecoind"],
            }))
        }
        "getnetworkinfo" => Ok(json!({
            "version": 319900, "subversion": "/bump-regtest:0.1.0/", "protocolversion": namecoin::PROTOCOL_VERSION,
            "localservices": "0000000000000409", "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED"],
            "localrelay": true, "timeoffset": 0, "networkactive": true, "connections": 0,
            "connections_in": 0, "connections_out": 0, "networks": [], "relayfee": 0.001,
            "incrementalfee": 1e-06, "localaddresses": [], "warnings": [],
        })),
        "getblockcount" => Ok(json!(chain.height())),
        "getbestblockhash" => Ok(json!(block_hash_hex(&chain.tip().hash()))),
        "getblockhash" => {
            let h = param(p, 0)
                .and_then(Value::as_u64)
                .ok_or_else(|| fail(-3, "Expected type number for height"))?;
            chain
                .blocks
                .get(h as usize)
                .map(|b| json!(block_hash_hex(&b.hash())))
                .ok_or_else(|| fail(-8, "Block height out of range"))
        }
        "getblockheader" => {
            let hs = str_param(p, 0, "blockhash")?;
            let hash = bitcoin::BlockHash::from_str(&hs)
                .map_err(|_| fail(-8, "blockhash must be hexadecimal string"))?;
            let b = chain
                .block_by_hash(&hash)
                .ok_or_else(|| fail(-5, "Block not found"))?;
            let h = &b.header.header;
            let mut m = json!({
                "hash": hs, "confirmations": chain.confirmations(Some(b.height)), "height": b.height,
                "version": h.version.to_consensus(), "versionHex": format!("{:08x}", h.version.to_consensus()),
                "merkleroot": h.merkle_root.to_string(), "time": h.time, "mediantime": h.time,
                "nonce": h.nonce, "bits": format!("{:08x}", h.bits.to_consensus()),
                "difficulty": 4.656542373906925e-10, "nTx": b.txs.len(),
                "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
                "chainwork": format!("{:064x}", 2 * (b.height as u64 + 1)),
            });
            if let Some(a) = &b.header.auxpow {
                let mut tx = raw_tx_json(chain, &a.coinbase_tx, None);
                tx["blockhash"] = json!(block_hash_hex(&a.parent_block_hash()));
                let ph = &a.parent_header;
                let hexes = |v: &[[u8; 32]]| {
                    v.iter()
                        .map(|h| {
                            let mut h = *h;
                            h.reverse();
                            hex::encode(h)
                        })
                        .collect::<Vec<_>>()
                };
                m["auxpow"] = json!({
                    "tx": tx,
                    "chainindex": a.chain_index,
                    "merklebranch": hexes(&a.merkle_branch),
                    "chainmerklebranch": hexes(&a.chain_merkle_branch),
                    "parentblock": {
                        "hash": block_hash_hex(&a.parent_block_hash()),
                        "version": ph.version.to_consensus(),
                        "versionHex": format!("{:08x}", ph.version.to_consensus()),
                        "merkleroot": ph.merkle_root.to_string(),
                        "time": ph.time, "nonce": ph.nonce,
                        "bits": format!("{:08x}", ph.bits.to_consensus()),
                        "difficulty": 0,
                    },
                });
            }
            if b.height > 0 {
                m["previousblockhash"] = json!(block_hash_hex(&h.prev_blockhash));
            }
            if let Some(n) = chain.blocks.get(b.height as usize + 1) {
                m["nextblockhash"] = json!(block_hash_hex(&n.hash()));
            }
            Ok(m)
        }
        "createwallet" => {
            let name = str_param(p, 0, "wallet_name")?;
            chain.create_wallet(&name)?;
            Ok(json!({ "name": name }))
        }
        "listwallets" => Ok(json!(chain.wallets.keys().collect::<Vec<_>>())),
        "getnewaddress" => {
            let w = pick_wallet(chain, path_wallet)?;
            Ok(json!(chain.new_address(&w)?))
        }
        "getbalance" => {
            let w = pick_wallet(chain, path_wallet)?;
            Ok(amount(chain.balance(&w)?))
        }
        "generatetoaddress" => {
            let n = param(p, 0)
                .and_then(Value::as_u64)
                .ok_or_else(|| fail(-3, "Expected type number for nblocks"))?;
            let a = str_param(p, 1, "address")?;
            let s = script::address_to_script(&a, P2PKH_PREFIX, P2SH_PREFIX)
                .ok_or_else(|| fail(-5, "Error: Invalid address"))?;
            let hashes = chain.mine(n.min(10_000) as u32, &s);
            Ok(json!(hashes.iter().map(block_hash_hex).collect::<Vec<_>>()))
        }
        "name_show" => {
            if chain.in_ibd() {
                return Err(fail(-10, "Namecoin is downloading blocks..."));
            }
            let name = decode_ascii(&str_param(p, 0, "name")?)?;
            let quoted = format!("'{}'", String::from_utf8_lossy(&name));
            let d = chain
                .name(&name)
                .ok_or_else(|| fail(-4, format!("name never existed: {quoted}")))?;
            let allow_expired = param(p, 1)
                .and_then(|o| o.get("allowExpired"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if chain.is_expired(d) && !allow_expired {
                return Err(fail(-4, format!("name expired: {quoted}")));
            }
            Ok(name_json(chain, &name, d, soft_wallet))
        }
        "name_scan" => {
            if chain.in_ibd() {
                return Err(fail(-10, "Namecoin is downloading blocks..."));
            }
            let start = match param(p, 0) {
                Some(Value::String(s)) => decode_ascii(s)?,
                None => vec![],
                Some(o) => {
                    return Err(fail(
                        -3,
                        format!(
                            "JSON value of type {} is not of expected type string",
                            kind(o)
                        ),
                    ))
                }
            };
            let count = param(p, 1)
                .map(|v| v.as_u64().ok_or_else(|| fail(-3, "count must be a number")))
                .transpose()?
                .unwrap_or(500);
            let prefix = param(p, 2)
                .and_then(|o| o.get("prefix"))
                .and_then(Value::as_str)
                .map(|s| s.as_bytes().to_vec());
            let list: Vec<Value> = chain
                .names_from(&start)
                .filter(|(n, _)| prefix.as_ref().is_none_or(|pre| n.starts_with(pre)))
                .take(count as usize)
                .map(|(n, d)| name_json(chain, n, d, soft_wallet))
                .collect();
            Ok(Value::Array(list))
        }
        "name_pending" => Ok(pending_json(chain, soft_wallet)),
        "name_list" => {
            let w = pick_wallet(chain, path_wallet)?;
            let wallet = &chain.wallets[&w];
            let list: Vec<Value> = chain
                .names_from(&[])
                .filter(|(_, d)| wallet.is_mine(&d.script))
                .map(|(n, d)| name_json(chain, n, d, Some(&w)))
                .collect();
            Ok(Value::Array(list))
        }
        "name_history" => Err(fail(-1, "-namehistory is not enabled")),
        "name_new" => {
            let w = pick_wallet(chain, path_wallet)?;
            let name = decode_ascii(&str_param(p, 0, "name")?)?;
            let (txid, rand) = chain.name_new(&w, &name)?;
            Ok(json!([txid.to_string(), hex::encode(rand)]))
        }
        "name_firstupdate" => {
            let w = pick_wallet(chain, path_wallet)?;
            let name = decode_ascii(&str_param(p, 0, "name")?)?;
            let rand =
                hex::decode(str_param(p, 1, "rand")?).map_err(|_| fail(-22, "rand must be hex"))?;
            if rand.len() > 20 {
                return Err(fail(-8, "invalid rand value"));
            }
            let txid = parse_txid(&str_param(p, 2, "tx")?)?;
            let value = decode_ascii(&str_param(p, 3, "value")?)?;
            Ok(json!(chain
                .name_firstupdate(&w, &name, &rand, &txid, &value)?
                .to_string()))
        }
        "name_update" => {
            let w = pick_wallet(chain, path_wallet)?;
            let name = decode_ascii(&str_param(p, 0, "name")?)?;
            let value = decode_ascii(&str_param(p, 1, "value")?)?;
            Ok(json!(chain.name_update(&w, &name, &value)?.to_string()))
        }
        "sendtoaddress" => {
            let w = pick_wallet(chain, path_wallet)?;
            let a = str_param(p, 0, "address")?;
            let s = script::address_to_script(&a, P2PKH_PREFIX, P2SH_PREFIX)
                .ok_or_else(|| fail(-5, format!("Invalid address: {a}")))?;
            let sat = parse_amount(
                param(p, 1).ok_or_else(|| fail(-1, "missing required argument amount"))?,
            )?;
            Ok(json!(chain.send_to_address(&w, s, sat)?.to_string()))
        }
        "gettxout" => {
            let txid = parse_txid(&str_param(p, 0, "txid")?)?;
            let n = param(p, 1)
                .and_then(Value::as_u64)
                .ok_or_else(|| fail(-3, "Expected type number for n"))?;
            let mempool = param(p, 2).and_then(Value::as_bool).unwrap_or(true);
            let Some(c) = chain.coin(&OutPoint::new(txid, n as u32), mempool) else {
                return Ok(Value::Null);
            };
            Ok(json!({
                "bestblock": block_hash_hex(&chain.tip().hash()),
                "confirmations": chain.confirmations(c.height),
                "value": amount(c.txout.value.to_sat()),
                "scriptPubKey": script_json(chain, &c.txout.script_pubkey),
                "coinbase": c.coinbase,
            }))
        }
        "getrawtransaction" => {
            let txid = parse_txid(&str_param(p, 0, "txid")?)?;
            let verbose = match param(p, 1) {
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
                _ => false,
            };
            let (tx, h) = chain.tx(&txid).cloned().ok_or_else(|| {
                fail(-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
            })?;
            if verbose {
                Ok(raw_tx_json(chain, &tx, h))
            } else {
                Ok(json!(Chain::tx_hex(&tx)))
            }
        }
        "validateaddress" => {
            let a = str_param(p, 0, "address")?;
            match script::address_to_script(&a, P2PKH_PREFIX, P2SH_PREFIX) {
                Some(s) => Ok(json!({
                    "isvalid": true, "address": a, "scriptPubKey": hex::encode(s.as_bytes()),
                    "isscript": s.is_p2sh(), "iswitness": false,
                })),
                None => Ok(
                    json!({"isvalid": false, "error_locations": [], "error": "Invalid or unsupported Base58-encoded address."}),
                ),
            }
        }
        _ => Err(fail(-32601, "Method not found")),
    }
}

/// Answer one request object; returns (HTTP status for a lone request, body).
fn answer(state: &RpcState, path_wallet: Option<&str>, req: &Value) -> (StatusCode, Value) {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let v2 = req.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let result = match (req.get("method").and_then(Value::as_str), req.get("params")) {
        (None, _) => Err(fail(-32600, "Method must be a string")),
        (Some(m), params) => {
            let params: Vec<Value> = match params {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(a)) => a.clone(),
                Some(Value::Object(_)) => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        error_body(
                            v2,
                            &id,
                            &fail(-32600, "named parameters are not supported by the stand-in"),
                        ),
                    )
                }
                Some(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        error_body(v2, &id, &fail(-32600, "Params must be an array or object")),
                    )
                }
            };
            let mut chain = state.chain.lock().unwrap_or_else(|e| e.into_inner());
            dispatch(&mut chain, path_wallet, m, &params)
        }
    };
    match result {
        Ok(v) if v2 => (
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "result": v, "id": id}),
        ),
        Ok(v) => (
            StatusCode::OK,
            json!({"result": v, "error": null, "id": id}),
        ),
        Err(f) => {
            let status = if v2 {
                StatusCode::OK
            } else if f.code == -32601 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, error_body(v2, &id, &f))
        }
    }
}

fn error_body(v2: bool, id: &Value, f: &Fail) -> Value {
    let err = json!({"code": f.code, "message": f.message});
    if v2 {
        json!({"jsonrpc": "2.0", "error": err, "id": id})
    } else {
        json!({"result": null, "error": err, "id": id})
    }
}

fn reply(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    let bytes = match body {
        Some(v) => {
            r = r.header("content-type", "application/json");
            let mut s = serde_json::to_vec(&v).unwrap_or_default();
            s.push(b'\n');
            Bytes::from(s)
        }
        None => {
            r = r.header("www-authenticate", "Basic realm=\"jsonrpc\"");
            Bytes::new()
        }
    };
    r.body(Full::new(bytes)).expect("valid response")
}

fn authorized(state: &RpcState, req: &Request<Incoming>) -> bool {
    use base64::Engine;
    let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = h.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let given = String::from_utf8_lossy(&raw);
    state
        .credentials
        .iter()
        .any(|c| c.as_bytes() == given.as_bytes())
}

/// Handle one HTTP request.
pub async fn handle(
    state: Arc<RpcState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if !authorized(&state, &req) {
        return Ok(reply(StatusCode::UNAUTHORIZED, None));
    }
    let path = req.uri().path().to_string();
    let path_wallet = match path.as_str() {
        "/" | "" => None,
        p => match p.strip_prefix("/wallet/") {
            Some(w) => Some(w.to_string()),
            None => {
                return Ok(reply(
                    StatusCode::NOT_FOUND,
                    Some(
                        json!({"result": null, "error": {"code": -32601, "message": "Method not found"}, "id": null}),
                    ),
                ))
            }
        },
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                Some(
                    json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null}),
                ),
            ))
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(
                    json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null}),
                ),
            ))
        }
    };
    let w = path_wallet.as_deref();
    Ok(match parsed {
        Value::Array(reqs) => {
            let out: Vec<Value> = reqs.iter().map(|r| answer(&state, w, r).1).collect();
            reply(StatusCode::OK, Some(Value::Array(out)))
        }
        obj => {
            let (status, body) = answer(&state, w, &obj);
            reply(status, Some(body))
        }
    })
}

/// `Txid` of a hex string, for callers outside.
pub fn txid(s: &str) -> Option<Txid> {
    Txid::from_str(s)
        .ok()
        .filter(|t| t.to_byte_array() != [0; 32])
}
