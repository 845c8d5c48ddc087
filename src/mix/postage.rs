//! Postage: a coin output paying a mix for relaying packets (docs/protocol.md §7.3).
//!
//! A layer's postage field (TLV 10) names an outpoint: txid (32 bytes, internal byte order) ‖
//! vout (u32 LE). The first time a mix sees an outpoint it asks namecoind (`gettxout`, mempool
//! included when the policy accepts 0 confirmations): the output must pay one of the mix's
//! postage addresses, have the required confirmations and be worth at least the fee. Its value
//! becomes a credit in sled (`postage` tree: outpoint → remaining satoshis); every packet
//! charges the fee. The credit is written before the packet is accepted and never refilled,
//! so an output never pays for more than its value, across all packets and restarts.

use namecoin::rpc::{Client, RpcError};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct PostagePolicy {
    /// Satoshis per packet (the fee in our record).
    pub fee: u64,
    /// Drop packets that carry no postage.
    pub require: bool,
    /// Confirmations a postage output needs; 0 accepts the mempool.
    pub min_conf: u64,
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Paid {
        remaining: u64,
    },
    /// Drop, with the counted reason.
    Rejected(&'static str),
    /// Cannot tell now (namecoind unreachable, too few confirmations yet): try again later.
    Retry(String),
}

/// Postage credit (`ext/postage`): outpoint field (36) → satoshis left.
pub struct CreditTable;
impl crate::store::TableSpec for CreditTable {
    const NAME: &'static str = "postage";
    type Key = [u8; 36];
    type Value = u64;
}

pub struct Postage {
    client: Arc<Client>,
    ledger: crate::store::Table<CreditTable>,
    policy: PostagePolicy,
    addresses: Box<dyn Fn() -> HashSet<String> + Send + Sync>,
    lock: tokio::sync::Mutex<()>,
}

impl Postage {
    pub fn open(
        client: Arc<Client>,
        store: &crate::store::Store,
        policy: PostagePolicy,
        addresses: Box<dyn Fn() -> HashSet<String> + Send + Sync>,
    ) -> Result<Postage, crate::store::StoreError> {
        Ok(Postage {
            client,
            ledger: store.table::<CreditTable>()?,
            policy,
            addresses,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn policy(&self) -> &PostagePolicy {
        &self.policy
    }

    /// The txid (display hex) and vout of a postage field.
    pub fn outpoint(field: &[u8; 36]) -> (String, u32) {
        let mut txid = [0u8; 32];
        txid.copy_from_slice(&field[..32]);
        txid.reverse();
        let vout = u32::from_le_bytes([field[32], field[33], field[34], field[35]]);
        (hex::encode(txid), vout)
    }

    /// The postage field for a txid in display hex and a vout.
    pub fn field(txid_hex: &str, vout: u32) -> Option<[u8; 36]> {
        let mut b = hex::decode(txid_hex).ok()?;
        if b.len() != 32 {
            return None;
        }
        b.reverse();
        let mut out = [0u8; 36];
        out[..32].copy_from_slice(&b);
        out[32..].copy_from_slice(&vout.to_le_bytes());
        Some(out)
    }

    /// Charge one packet's fee to `field`.
    pub async fn charge(&self, field: &[u8; 36]) -> Result<Verdict, crate::store::StoreError> {
        let fee = self.policy.fee;
        let _g = self.lock.lock().await;
        if let Some(remaining) = self.ledger.get(field)? {
            if remaining < fee || (fee == 0 && remaining == 0) {
                return Ok(Verdict::Rejected("postage used up"));
            }
            let left = remaining - fee;
            self.ledger.insert(field, &left)?;
            return Ok(Verdict::Paid { remaining: left });
        }
        let (txid, vout) = Self::outpoint(field);
        let out = match self
            .client
            .gettxout(&txid, vout, self.policy.min_conf == 0)
            .await
        {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(Verdict::Rejected("postage output unknown or spent")),
            Err(e @ RpcError::InvalidParameter(_)) => {
                tracing::debug!("postage {txid}:{vout}: {e}");
                return Ok(Verdict::Rejected("postage output unknown or spent"));
            }
            Err(e) => return Ok(Verdict::Retry(e.to_string())),
        };
        let ours = (self.addresses)();
        if !out
            .script_pub_key
            .address
            .as_ref()
            .is_some_and(|a| ours.contains(a))
        {
            return Ok(Verdict::Rejected("postage pays someone else"));
        }
        if out.confirmations < self.policy.min_conf {
            return Ok(Verdict::Retry(format!(
                "postage has {} of {} confirmations",
                out.confirmations, self.policy.min_conf
            )));
        }
        if out.value < fee.max(1) {
            return Ok(Verdict::Rejected("too little postage"));
        }
        let left = out.value - fee;
        // Record the credit before anything is accepted against it.
        self.ledger.insert(field, &left)?;
        Ok(Verdict::Paid { remaining: left })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpoint_field_round_trips() {
        let txid = "53d27382a50395bb27b169f327163a2bad56aa3be56b115653fb07f6528648c4";
        let f = Postage::field(txid, 7).unwrap();
        assert_eq!(Postage::outpoint(&f), (txid.to_string(), 7));
        assert_eq!(f[0], 0xc4, "internal byte order");
        assert!(Postage::field("zz", 0).is_none());
    }
}
