//! Mix records: how a mix publishes itself as a Namecoin name (docs/protocol.md §7).
//!
//! Name: `bump/<label>`. Value: compact JSON in printable ASCII, at most 520 bytes (namecoind's
//! wallet limit; other bytes make name_show answer `value_error`):
//!
//! `{"v":1,"key":"<66 hex>","tag":"<40 hex>","fee":<sat>,"pay":"<address>","exp":<height>,"p2p":"<host:port>"}`
//!
//! `v` format version (1), `key` the mix public key, `tag` its mix tag (must equal
//! HASH160("bump/mix/1" ‖ key)), `fee` satoshis per packet (0 = free), `pay` the postage
//! address (required when fee > 0), `exp` the block height after which the key must not be
//! used, `p2p` an optional contact (host:port or .onion:port). Unknown fields are ignored.

use crate::onion::layer::{mix_tag, parse_mix_key};
use namecoin::rpc::NameInfo;
use namecoin::Network;
use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

/// Namespace of mix records.
pub const NAMESPACE: &str = "bump/";
/// namecoind's wallet limit on values.
pub const MAX_VALUE_LEN: usize = 520;
pub const FORMAT_VERSION: u64 = 1;
/// Highest fee a record may ask (1 NMC per packet): anything above is a typo or a trap.
pub const MAX_FEE: u64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixRecord {
    pub v: u64,
    pub key: String,
    pub tag: String,
    #[serde(default)]
    pub fee: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not in the {NAMESPACE} namespace")]
    Namespace,
    #[error("label must be 1-64 characters of a-z 0-9 - _ .")]
    Label,
    #[error("name expired")]
    NameExpired,
    #[error("value is not printable ASCII (namecoind: {0})")]
    NotAscii(String),
    #[error("value is {0} bytes, over the {MAX_VALUE_LEN}-byte limit")]
    TooLong(usize),
    #[error("value is not a mix record: {0}")]
    Json(String),
    #[error("unsupported record version {0}")]
    Version(u64),
    #[error("key is not a compressed secp256k1 public key")]
    BadKey,
    #[error("tag does not match the key")]
    BadTag,
    #[error("fee {0} is over the {MAX_FEE} sat limit")]
    FeeTooHigh(u64),
    #[error("fee without a valid postage address for this network")]
    BadPay,
    #[error("key expired at height {exp} (chain is at {height})")]
    KeyExpired { exp: u64, height: u64 },
    #[error("p2p contact is not host:port")]
    BadContact,
}

/// Whether `label` is a valid mix label (the part after `bump/`).
pub fn check_label(label: &str) -> Result<(), RecordError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RecordError::Label)
    }
}

/// Whether `address` is a base58 P2PKH/P2SH address of `network`.
pub fn valid_address(address: &str, network: Network) -> bool {
    match bitcoin::base58::decode_check(address) {
        Ok(d) => d.len() == 21 && (d[0] == network.p2pkh_prefix() || d[0] == network.p2sh_prefix()),
        Err(_) => false,
    }
}

fn valid_contact(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.len() <= 255
                && host.bytes().all(|b| b.is_ascii_graphic())
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

impl MixRecord {
    pub fn new(
        key: &PublicKey,
        fee: u64,
        pay: Option<String>,
        exp: u64,
        p2p: Option<String>,
    ) -> MixRecord {
        MixRecord {
            v: FORMAT_VERSION,
            key: hex::encode(key.serialize()),
            tag: mix_tag(key).to_hex(),
            fee,
            pay,
            exp,
            p2p,
        }
    }

    /// The name value: compact JSON, ASCII only.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain struct")
    }

    /// Parse and check a value (not the chain-dependent expiry: see [`MixRecord::validate`]).
    pub fn decode(value: &str, network: Network) -> Result<MixRecord, RecordError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(RecordError::TooLong(value.len()));
        }
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(RecordError::NotAscii("non-ASCII bytes".into()));
        }
        let r: MixRecord =
            serde_json::from_str(value).map_err(|e| RecordError::Json(e.to_string()))?;
        if r.v != FORMAT_VERSION {
            return Err(RecordError::Version(r.v));
        }
        let key = parse_mix_key(&r.key)
            .filter(|_| r.key.len() == 66)
            .ok_or(RecordError::BadKey)?;
        if mix_tag(&key).to_hex() != r.tag.to_ascii_lowercase() {
            return Err(RecordError::BadTag);
        }
        if r.fee > MAX_FEE {
            return Err(RecordError::FeeTooHigh(r.fee));
        }
        match &r.pay {
            Some(a) if !valid_address(a, network) => return Err(RecordError::BadPay),
            None if r.fee > 0 => return Err(RecordError::BadPay),
            _ => {}
        }
        if r.p2p.as_deref().is_some_and(|c| !valid_contact(c)) {
            return Err(RecordError::BadContact);
        }
        Ok(r)
    }

    /// Check a name as namecoind returned it, at chain height `height`.
    pub fn validate(
        info: &NameInfo,
        network: Network,
        height: u64,
    ) -> Result<MixRecord, RecordError> {
        let label = info
            .name
            .strip_prefix(NAMESPACE)
            .ok_or(RecordError::Namespace)?;
        check_label(label)?;
        if info.expired == Some(true) {
            return Err(RecordError::NameExpired);
        }
        let value = match (&info.value, &info.value_error) {
            (Some(v), _) => v,
            (None, Some(e)) => return Err(RecordError::NotAscii(e.clone())),
            (None, None) => return Err(RecordError::NotAscii("no value".into())),
        };
        let r = MixRecord::decode(value, network)?;
        if r.exp <= height {
            return Err(RecordError::KeyExpired { exp: r.exp, height });
        }
        Ok(r)
    }

    pub fn public_key(&self) -> PublicKey {
        parse_mix_key(&self.key).expect("checked when decoded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, value: &str) -> NameInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "value": value, "txid": "00", "vout": 0, "height": 10,
            "expires_in": 20, "expired": false,
        }))
        .unwrap()
    }

    #[test]
    fn records_round_trip_and_fit() {
        let (_, pk) = crate::onion::layer::test_mixes(1);
        let r = MixRecord::new(
            &pk[0],
            1000,
            Some("mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS".into()),
            500,
            Some("mixhost.example.onion:18447".into()),
        );
        let v = r.encode();
        assert!(v.len() <= MAX_VALUE_LEN, "{} bytes", v.len());
        assert!(v.is_ascii());
        assert_eq!(MixRecord::decode(&v, Network::Regtest).unwrap(), r);
        assert_eq!(
            MixRecord::validate(&info("bump/a", &v), Network::Regtest, 10).unwrap(),
            r
        );
    }

    #[test]
    fn bad_records_are_rejected_with_reasons() {
        let (_, pk) = crate::onion::layer::test_mixes(2);
        let good = MixRecord::new(&pk[0], 0, None, 500, None);
        let net = Network::Regtest;
        let check = |name: &str, value: String| MixRecord::validate(&info(name, &value), net, 10);
        assert_eq!(check("d/a", good.encode()), Err(RecordError::Namespace));
        assert_eq!(check("bump/A!", good.encode()), Err(RecordError::Label));
        let mut bad_key = good.clone();
        bad_key.key = "02".to_string() + &"11".repeat(32);
        // 0x02‖0x11.. may or may not be on the curve; a truncated key never is.
        bad_key.key.truncate(64);
        assert_eq!(check("bump/a", bad_key.encode()), Err(RecordError::BadKey));
        let mut wrong_tag = good.clone();
        wrong_tag.tag = MixRecord::new(&pk[1], 0, None, 1, None).tag;
        assert_eq!(
            check("bump/a", wrong_tag.encode()),
            Err(RecordError::BadTag)
        );
        let enc = good.encode();
        let long = format!("{},\"x\":\"{}\"}}", &enc[..enc.len() - 1], "y".repeat(600));
        assert!(matches!(
            check("bump/a", long),
            Err(RecordError::TooLong(_))
        ));
        let mut unpaid = good.clone();
        unpaid.fee = 5;
        assert_eq!(check("bump/a", unpaid.encode()), Err(RecordError::BadPay));
        let mut mainnet_pay = unpaid.clone();
        mainnet_pay.pay = Some("NAMvBQaVJ1Q8iTRW1wMTX2Wf4Si3X6ziPM".into());
        assert_eq!(
            check("bump/a", mainnet_pay.encode()),
            Err(RecordError::BadPay)
        );
        let mut old = good.clone();
        old.exp = 10;
        assert!(matches!(
            check("bump/a", old.encode()),
            Err(RecordError::KeyExpired { .. })
        ));
        assert!(matches!(
            check("bump/a", "{\"v\":1".into()),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(check("bump/a", "{\"v\":1,\"key\":\"021111111111111111111111111111111111111111111111111111111111111111\",\"fee\":1000}".into()), Err(RecordError::Json(_))), "the recorded test value lacks tag and exp");
        let mut v2 = good.clone();
        v2.v = 2;
        assert_eq!(check("bump/a", v2.encode()), Err(RecordError::Version(2)));
        let mut contact = good.clone();
        contact.p2p = Some("nohost".into());
        assert_eq!(
            check("bump/a", contact.encode()),
            Err(RecordError::BadContact)
        );
        let mut i = info("bump/a", &good.encode());
        i.value = None;
        i.value_error = Some("invalid data for ascii".into());
        assert!(matches!(
            MixRecord::validate(&i, net, 10),
            Err(RecordError::NotAscii(_))
        ));
        let mut e = info("bump/a", &good.encode());
        e.expired = Some(true);
        assert_eq!(
            MixRecord::validate(&e, net, 10),
            Err(RecordError::NameExpired)
        );
    }
}
