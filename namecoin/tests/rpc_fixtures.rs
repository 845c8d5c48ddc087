//! Every recorded real-namecoind JSON-RPC answer (`tests/fixtures/namecoind/rpc.jsonl`) goes
//! through the client's decoder into its typed form, and every recorded error maps to the
//! right [`RpcError`]. The fixture is the truth.

use namecoin::rpc::{
    decode_result, decode_value, BlockchainInfo, NameInfo, RawTransaction, RpcError, TxOutInfo,
};
use serde_json::Value;

fn lines() -> Vec<Value> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/namecoind/rpc.jsonl");
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{} missing: {e}", p.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Decode one reply with the type the client uses for its method; `Ok(())` or the error.
fn decode(method: &str, body: &Value) -> Result<(), RpcError> {
    match method {
        "getblockchaininfo" => decode_result::<BlockchainInfo>(method, body).map(drop),
        "name_show" => decode_result::<NameInfo>(method, body).map(|n| {
            assert!(n.value.is_some() && n.height.is_some() && n.expires_in.is_some());
        }),
        "name_scan" | "name_pending" | "name_list" => {
            decode_result::<Vec<NameInfo>>(method, body).map(|v| assert!(!v.is_empty()))
        }
        "name_new" => decode_result::<Vec<String>>(method, body).map(|v| {
            assert_eq!(v.len(), 2);
            assert_eq!(v[0].len(), 64);
            assert_eq!(v[1].len(), 40, "rand is 20 bytes");
        }),
        "gettxout" => decode_result::<Option<TxOutInfo>>(method, body).map(drop),
        "getrawtransaction" => decode_result::<RawTransaction>(method, body).map(|t| {
            assert_eq!(t.txid.len(), 64);
            assert!(!t.vout.is_empty());
        }),
        "getnewaddress" | "sendtoaddress" | "name_firstupdate" | "name_update"
        | "getbestblockhash" | "getblockhash" => {
            decode_result::<String>(method, body).map(|s| assert!(!s.is_empty()))
        }
        "generatetoaddress" => decode_result::<Vec<String>>(method, body).map(drop),
        "getblockcount" => decode_result::<u64>(method, body).map(drop),
        _ => decode_result::<Value>(method, body).map(drop),
    }
}

#[test]
fn every_recorded_answer_decodes_or_maps_to_its_error() {
    let lines = lines();
    assert!(lines.len() >= 40, "the whole transcript is there");
    let mut seen_errors = Vec::new();
    for line in &lines {
        let label = line["label"].as_str().unwrap();
        let status = line["http_status"].as_u64().unwrap();
        let response = &line["response"];
        if label == "batch" {
            let items = response.as_array().expect("a batch answer is an array");
            assert_eq!(items.len(), 2);
            decode("getblockcount", &items[0]).unwrap();
            decode("name_show", &items[1]).unwrap();
            continue;
        }
        if status == 401 {
            assert!(response.is_null(), "401 has an empty body");
            continue;
        }
        let method = line["request"]["method"].as_str().unwrap();
        let v2 = line["request"]["jsonrpc"] == "2.0";
        match decode(method, response) {
            Ok(()) => assert_eq!(status, 200, "{label}: success is HTTP 200"),
            Err(e) => {
                // 2.0 errors come with HTTP 200, 1.0 errors with 500 (404 for an unknown method).
                let want = if v2 {
                    200
                } else if e == RpcError::MethodNotFound("Method not found".into()) {
                    404
                } else {
                    500
                };
                assert_eq!(status, want, "{label}: HTTP status of an error");
                assert_eq!(
                    e.code(),
                    response["error"]["code"].as_i64(),
                    "{label}: code kept"
                );
                seen_errors.push((label.to_string(), e));
            }
        }
    }
    let find = |l: &str| {
        seen_errors
            .iter()
            .find(|(x, _)| x == l)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{l} should be an error"))
    };
    assert_eq!(
        find("name_show_missing"),
        RpcError::NameNotFound("bump/nosuchmix".into())
    );
    assert_eq!(
        find("name_show_jsonrpc2_missing"),
        RpcError::NameNotFound("bump/nosuchmix".into())
    );
    assert_eq!(
        find("name_show_pending_only"),
        RpcError::NameNotFound("bump/alice".into())
    );
    assert_eq!(
        find("name_update_value_too_long"),
        RpcError::InvalidParameter("the value is too long".into())
    );
    assert!(
        matches!(find("name_firstupdate_too_early"), RpcError::Verify(m) if m == "previous txid not found")
    );
    assert!(matches!(
        find("gettxout_bad_txid"),
        RpcError::InvalidParameter(_)
    ));
    assert!(matches!(
        find("name_history_alice"),
        RpcError::Other { code: -1, .. }
    ));
    assert!(matches!(
        find("method_not_found"),
        RpcError::MethodNotFound(_)
    ));
}

#[test]
fn recorded_values_come_out_typed() {
    let lines = lines();
    let get = |label: &str| {
        lines
            .iter()
            .find(|l| l["label"] == label)
            .unwrap_or_else(|| panic!("{label}"))["response"]
            .clone()
    };
    let info: BlockchainInfo =
        decode_result("getblockchaininfo", &get("getblockchaininfo")).unwrap();
    assert_eq!(info.chain, "regtest");
    assert!(info.initialblockdownload, "a fresh chain is in IBD");
    let alice: NameInfo = decode_result("name_show", &get("name_show_alice")).unwrap();
    assert_eq!(alice.height, Some(114));
    assert_eq!(alice.expires_in, Some(30), "regtest names live 30 blocks");
    let out: Option<TxOutInfo> = decode_result("gettxout", &get("gettxout_mempool_1")).unwrap();
    let out = out.unwrap();
    assert_eq!(out.value, 25_000_000, "0.25 NMC in satoshis");
    assert_eq!(out.confirmations, 0);
    assert_eq!(
        out.script_pub_key.address.as_deref(),
        Some("mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS")
    );
    let missing: Option<TxOutInfo> =
        decode_result("gettxout", &get("gettxout_missing_vout")).unwrap();
    assert!(missing.is_none());
    let raw: RawTransaction = decode_result(
        "getrawtransaction",
        &get("getrawtransaction_verbose_confirmed"),
    )
    .unwrap();
    assert!(raw.vout.iter().any(|o| o.value == 25_000_000));
    assert!(raw.blockhash.is_some());
    let v: Vec<String> = decode_value("x", serde_json::json!(["a", "b"])).unwrap();
    assert_eq!(v.len(), 2);
}
