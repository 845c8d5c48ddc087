//! The embedded regtest chain: blocks (with AuxPoW, as namecoind mines them on regtest), the
//! UTXO set, the mempool, the name database, and wallets. Everything is in memory and lives as
//! long as the process: a fresh chain per demo or test, like `namecoind -regtest` on a new
//! datadir.
//!
//! Rules kept from namecoin-core (regtest): coinbase maturity 100; subsidy 50 NMC halving every
//! 150 blocks; a name locks 0.01 NMC; `name_firstupdate` is mined only once its `name_new` has 12
//! confirmations; names expire 30 blocks after their last update; the wallet refuses values
//! over 520 bytes and names over 255; a name in the mempool blocks a second registration.
//! Fees are a flat 100 sat/vB of the signed transaction (what the recorded wallet paid).

use crate::script::{self, commitment, name_script, parse_name_script, NameOp};
use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness,
};
use namecoin::auxpow::{AuxPow, BlockHeader};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const COIN: u64 = 100_000_000;
pub const NAME_LOCKED: u64 = COIN / 100;
pub const MIN_FIRSTUPDATE_DEPTH: u32 = 12;
pub const NAME_EXPIRATION: u32 = 30;
pub const COINBASE_MATURITY: u32 = 100;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_VALUE_LEN: usize = 520;
pub const FEE_RATE: u64 = 100;
pub const HALVING_INTERVAL: u32 = 150;
pub const DUST: u64 = 546;
/// Namecoin's transaction version for name operations.
pub const NAME_TX_VERSION: i32 = 0x7100;
pub const BLOCK_VERSION: i32 = 0x0001_0104;
pub const REGTEST_BITS: u32 = 0x207f_ffff;
pub const P2PKH_PREFIX: u8 = 111;
pub const P2SH_PREFIX: u8 = 196;

/// An RPC-level failure: namecoind's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Fail {
    pub code: i64,
    pub message: String,
}

pub fn fail(code: i64, message: impl Into<String>) -> Fail {
    Fail {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Coin {
    pub txout: TxOut,
    /// `None` while in the mempool.
    pub height: Option<u32>,
    pub coinbase: bool,
}

#[derive(Debug, Clone)]
pub struct NameData {
    pub value: Vec<u8>,
    pub outpoint: OutPoint,
    pub script: ScriptBuf,
    pub height: u32,
}

pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    pub height: u32,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.block_hash()
    }
}

#[derive(Default)]
pub struct Wallet {
    /// P2PKH script → key.
    keys: HashMap<ScriptBuf, (SecretKey, PublicKey)>,
    /// Rands of our name_new outputs, by name.
    rands: HashMap<Vec<u8>, Vec<u8>>,
}

impl Wallet {
    pub fn is_mine(&self, script: &bitcoin::Script) -> bool {
        self.keys.contains_key(&script::address_script(script))
    }
}

pub struct Chain {
    pub blocks: Vec<Block>,
    coins: HashMap<OutPoint, Coin>,
    mempool: Vec<Transaction>,
    mempool_spent: HashSet<OutPoint>,
    txs: HashMap<Txid, (Transaction, Option<u32>)>,
    names: BTreeMap<Vec<u8>, NameData>,
    pub wallets: BTreeMap<String, Wallet>,
    secp: Secp256k1<bitcoin::secp256k1::All>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

pub fn block_hash_hex(h: &BlockHash) -> String {
    namecoin::auxpow::hash_hex(h)
}

/// Make an AuxPoW for `hash` the way namecoind's regtest miner does: a parent coinbase whose
/// script is `hash ‖ merkle size 1 ‖ nonce 0`, no branches, and a parent header ground until
/// its hash meets `bits`.
pub fn regtest_auxpow(hash: &BlockHash, bits: CompactTarget) -> AuxPow {
    let mut display = hash.to_byte_array();
    display.reverse();
    let mut sig = display.to_vec();
    sig.extend_from_slice(&1u32.to_le_bytes());
    sig.extend_from_slice(&0u32.to_le_bytes());
    let coinbase_tx = Transaction {
        version: TxVersion::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes({
                let mut s = vec![sig.len() as u8];
                s.extend(sig);
                s
            }),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![],
    };
    let target = bitcoin::Target::from_compact(bits);
    let mut parent = Header {
        version: Version::ONE,
        prev_blockhash: BlockHash::all_zeros(),
        merkle_root: TxMerkleNode::from_byte_array(coinbase_tx.compute_txid().to_byte_array()),
        time: 0,
        bits: CompactTarget::from_consensus(0),
        nonce: 0,
    };
    while !target.is_met_by(parent.block_hash()) {
        parent.nonce += 1;
    }
    AuxPow {
        coinbase_tx,
        parent_hash: [0; 32],
        merkle_branch: vec![],
        index: 0,
        chain_merkle_branch: vec![],
        chain_index: 0,
        parent_header: parent,
    }
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Chain {
    /// A chain holding only the regtest genesis block (the same as namecoind's).
    pub fn new() -> Chain {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        let block = Block {
            header: BlockHeader {
                header: genesis.header,
                auxpow: None,
            },
            txs: genesis.txdata.clone(),
            height: 0,
        };
        let mut txs = HashMap::new();
        for tx in &genesis.txdata {
            txs.insert(tx.compute_txid(), (tx.clone(), Some(0)));
        }
        Chain {
            blocks: vec![block],
            coins: HashMap::new(), // the genesis output is unspendable
            mempool: vec![],
            mempool_spent: HashSet::new(),
            txs,
            names: BTreeMap::new(),
            wallets: BTreeMap::new(),
            secp: Secp256k1::new(),
        }
    }

    pub fn height(&self) -> u32 {
        self.blocks.len() as u32 - 1
    }

    pub fn tip(&self) -> &Block {
        self.blocks.last().expect("genesis")
    }

    /// namecoind stays in initial block download until it has a recent tip; a fresh regtest
    /// chain (genesis from 2011) leaves it when the first block is mined.
    pub fn in_ibd(&self) -> bool {
        self.tip().header.header.time < unix_now().saturating_sub(24 * 3600)
    }

    pub fn block_by_hash(&self, hash: &BlockHash) -> Option<&Block> {
        self.blocks.iter().rev().find(|b| &b.hash() == hash)
    }

    pub fn mempool(&self) -> &[Transaction] {
        &self.mempool
    }

    pub fn tx(&self, txid: &Txid) -> Option<&(Transaction, Option<u32>)> {
        self.txs.get(txid)
    }

    pub fn coin(&self, outpoint: &OutPoint, include_mempool: bool) -> Option<&Coin> {
        let c = self.coins.get(outpoint)?;
        if include_mempool {
            (!self.mempool_spent.contains(outpoint)).then_some(c)
        } else {
            c.height.is_some().then_some(c)
        }
    }

    pub fn confirmations(&self, height: Option<u32>) -> u32 {
        height.map(|h| self.height() - h + 1).unwrap_or(0)
    }

    pub fn name(&self, name: &[u8]) -> Option<&NameData> {
        self.names.get(name)
    }

    pub fn names_from(&self, start: &[u8]) -> impl Iterator<Item = (&Vec<u8>, &NameData)> {
        self.names.range(start.to_vec()..)
    }

    pub fn expires_in(&self, data: &NameData) -> i64 {
        data.height as i64 + NAME_EXPIRATION as i64 - self.height() as i64
    }

    pub fn is_expired(&self, data: &NameData) -> bool {
        self.expires_in(data) <= 0
    }

    /// Pending name operations in the mempool, in order: (tx, vout, op).
    pub fn pending_names(&self) -> Vec<(&Transaction, u32, NameOp)> {
        let mut out = Vec::new();
        for tx in &self.mempool {
            for (i, o) in tx.output.iter().enumerate() {
                if let Some((op, _)) = parse_name_script(&o.script_pubkey) {
                    out.push((tx, i as u32, op));
                }
            }
        }
        out
    }

    fn subsidy(&self, height: u32) -> u64 {
        let halvings = height / HALVING_INTERVAL;
        if halvings >= 64 {
            0
        } else {
            (50 * COIN) >> halvings
        }
    }

    /// A mempool transaction can go in the block at `height` when its inputs are confirmed or
    /// made earlier in the same block, and a name_firstupdate's name_new is 12 blocks deep.
    fn includable(&self, tx: &Transaction, height: u32, made: &HashSet<Txid>) -> bool {
        for input in &tx.input {
            if made.contains(&input.previous_output.txid) {
                continue;
            }
            let Some(c) = self.coins.get(&input.previous_output) else {
                return false;
            };
            let Some(h) = c.height else { return false };
            if parse_name_script(&c.txout.script_pubkey)
                .is_some_and(|(op, _)| matches!(op, NameOp::New { .. }))
                && tx.output.iter().any(|o| {
                    matches!(
                        parse_name_script(&o.script_pubkey),
                        Some((NameOp::FirstUpdate { .. }, _))
                    )
                })
                && height - h < MIN_FIRSTUPDATE_DEPTH
            {
                return false;
            }
        }
        true
    }

    /// Mine `n` blocks paying `script`; returns their hashes.
    pub fn mine(&mut self, n: u32, script: &ScriptBuf) -> Vec<BlockHash> {
        (0..n).map(|_| self.mine_one(script)).collect()
    }

    fn mine_one(&mut self, pay_to: &ScriptBuf) -> BlockHash {
        let height = self.height() + 1;
        let mut made = HashSet::new();
        let mut chosen = Vec::new();
        let mut rest = Vec::new();
        for tx in std::mem::take(&mut self.mempool) {
            if self.includable(&tx, height, &made) {
                made.insert(tx.compute_txid());
                chosen.push(tx);
            } else {
                rest.push(tx);
            }
        }
        self.mempool = rest;
        let fees: u64 = chosen.iter().map(|t| self.fee_of(t)).sum();
        let mut bip34 = bitcoin::script::Builder::new()
            .push_int(height as i64)
            .push_int(0)
            .into_bytes();
        bip34.truncate(100);
        let coinbase = Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::from_bytes(bip34),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(self.subsidy(height) + fees),
                script_pubkey: pay_to.clone(),
            }],
        };
        let mut txs = vec![coinbase];
        txs.extend(chosen);
        let merkle = bitcoin::merkle_tree::calculate_root(txs.iter().map(|t| t.compute_txid()))
            .map(|h: Txid| TxMerkleNode::from_byte_array(h.to_byte_array()))
            .expect("a block has a coinbase");
        let prev = &self.tip().header.header;
        let header = Header {
            version: Version::from_consensus(BLOCK_VERSION),
            prev_blockhash: prev.block_hash(),
            merkle_root: merkle,
            time: unix_now().max(prev.time + 1),
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            nonce: 0,
        };
        let auxpow = regtest_auxpow(&header.block_hash(), header.bits);
        // Apply: spend inputs, confirm outputs, update names.
        for (i, tx) in txs.iter().enumerate() {
            let txid = tx.compute_txid();
            if i > 0 {
                for input in &tx.input {
                    self.coins.remove(&input.previous_output);
                    self.mempool_spent.remove(&input.previous_output);
                }
            }
            for (n, o) in tx.output.iter().enumerate() {
                self.coins.insert(
                    OutPoint::new(txid, n as u32),
                    Coin {
                        txout: o.clone(),
                        height: Some(height),
                        coinbase: i == 0,
                    },
                );
                if let Some((op, _)) = parse_name_script(&o.script_pubkey) {
                    if let (Some(name), Some(value)) = (op.name(), op.value()) {
                        self.names.insert(
                            name.to_vec(),
                            NameData {
                                value: value.to_vec(),
                                outpoint: OutPoint::new(txid, n as u32),
                                script: o.script_pubkey.clone(),
                                height,
                            },
                        );
                    }
                }
            }
            self.txs.insert(txid, (tx.clone(), Some(height)));
        }
        let block = Block {
            header: BlockHeader {
                header,
                auxpow: Some(auxpow),
            },
            txs,
            height,
        };
        let hash = block.hash();
        self.blocks.push(block);
        hash
    }

    fn fee_of(&self, tx: &Transaction) -> u64 {
        let inputs: u64 = tx
            .input
            .iter()
            .filter_map(|i| self.txs.get(&i.previous_output.txid))
            .zip(tx.input.iter())
            .filter_map(|((t, _), i)| t.output.get(i.previous_output.vout as usize))
            .map(|o| o.value.to_sat())
            .sum();
        let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        inputs.saturating_sub(outputs)
    }

    /// Put a transaction in the mempool (inputs must be unspent).
    fn accept(&mut self, tx: Transaction) -> Result<Txid, Fail> {
        for i in &tx.input {
            if !self.coins.contains_key(&i.previous_output)
                || self.mempool_spent.contains(&i.previous_output)
            {
                return Err(fail(-25, "bad-txns-inputs-missingorspent"));
            }
        }
        let txid = tx.compute_txid();
        for i in &tx.input {
            self.mempool_spent.insert(i.previous_output);
        }
        for (n, o) in tx.output.iter().enumerate() {
            self.coins.insert(
                OutPoint::new(txid, n as u32),
                Coin {
                    txout: o.clone(),
                    height: None,
                    coinbase: false,
                },
            );
        }
        self.txs.insert(txid, (tx.clone(), None));
        self.mempool.push(tx);
        Ok(txid)
    }

    // ---- wallets ----

    pub fn create_wallet(&mut self, name: &str) -> Result<(), Fail> {
        if self.wallets.contains_key(name) {
            return Err(fail(
                -4,
                format!("Wallet file verification failed. Failed to create database path '{name}'. Database already exists."),
            ));
        }
        self.wallets.insert(name.to_string(), Wallet::default());
        Ok(())
    }

    fn wallet(&self, name: &str) -> Result<&Wallet, Fail> {
        self.wallets
            .get(name)
            .ok_or_else(|| fail(-18, "Requested wallet does not exist or is not loaded"))
    }

    /// A fresh P2PKH address of wallet `name`.
    pub fn new_address(&mut self, wallet: &str) -> Result<String, Fail> {
        let secret = SecretKey::new(&mut rand::thread_rng());
        let public = PublicKey::from_secret_key(&self.secp, &secret);
        let spk = ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(public).pubkey_hash());
        let address = script::script_address(&spk, P2PKH_PREFIX, P2SH_PREFIX).expect("p2pkh");
        self.wallets
            .get_mut(wallet)
            .ok_or_else(|| fail(-18, "Requested wallet does not exist or is not loaded"))?
            .keys
            .insert(spk, (secret, public));
        Ok(address)
    }

    /// Spendable plain coins of a wallet: confirmed (coinbases mature) or our own unconfirmed
    /// change; never name outputs.
    fn spendable(&self, wallet: &Wallet) -> Vec<(OutPoint, Coin)> {
        let tip = self.height();
        let mut v: Vec<(OutPoint, Coin)> = self
            .coins
            .iter()
            .filter(|(op, c)| {
                !self.mempool_spent.contains(op)
                    && wallet.keys.contains_key(&c.txout.script_pubkey)
                    && match c.height {
                        Some(h) => !c.coinbase || tip + 1 - h > COINBASE_MATURITY,
                        None => true,
                    }
            })
            .map(|(o, c)| (*o, c.clone()))
            .collect();
        // Largest first, then by outpoint, so selection is deterministic.
        v.sort_by(|a, b| {
            b.1.txout
                .value
                .cmp(&a.1.txout.value)
                .then(a.0.txid.cmp(&b.0.txid))
                .then(a.0.vout.cmp(&b.0.vout))
        });
        v
    }

    /// Confirmed balance (what `getbalance` prints).
    pub fn balance(&self, wallet: &str) -> Result<u64, Fail> {
        let w = self.wallet(wallet)?;
        Ok(self
            .spendable(w)
            .iter()
            .filter(|(_, c)| c.height.is_some())
            .map(|(_, c)| c.txout.value.to_sat())
            .sum())
    }

    /// Add wallet inputs (and change) to pay for `outputs` beyond `fixed_inputs`, sign, and
    /// put the transaction in the mempool.
    fn fund_sign_send(
        &mut self,
        wallet: &str,
        fixed_inputs: Vec<OutPoint>,
        outputs: Vec<TxOut>,
        version: i32,
    ) -> Result<Txid, Fail> {
        let w = self.wallet(wallet)?;
        let fixed_value: u64 = fixed_inputs
            .iter()
            .filter_map(|o| self.coins.get(o))
            .map(|c| c.txout.value.to_sat())
            .sum();
        let out_value: u64 = outputs.iter().map(|o| o.value.to_sat()).sum();
        let extra: usize = outputs.iter().map(|o| o.script_pubkey.len()).sum();
        let mut inputs = fixed_inputs.clone();
        let mut have = fixed_value;
        let size = |nin: usize, nout: usize| (10 + 148 * nin + 34 * nout + extra) as u64;
        let mut fee = FEE_RATE * size(inputs.len(), outputs.len() + 1);
        for (op, c) in self.spendable(w) {
            if have >= out_value + fee {
                break;
            }
            inputs.push(op);
            have += c.txout.value.to_sat();
            fee = FEE_RATE * size(inputs.len(), outputs.len() + 1);
        }
        if have < out_value + fee {
            return Err(fail(-6, "Insufficient funds"));
        }
        let change = have - out_value - fee;
        let mut outputs = outputs;
        let change_addr;
        if change >= DUST {
            let secret = SecretKey::new(&mut rand::thread_rng());
            let public = PublicKey::from_secret_key(&self.secp, &secret);
            let spk = ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(public).pubkey_hash());
            change_addr = Some((spk.clone(), secret, public));
            // Change first, like the recorded wallet's payment; position is not a rule.
            outputs.insert(
                0,
                TxOut {
                    value: Amount::from_sat(change),
                    script_pubkey: spk,
                },
            );
        } else {
            change_addr = None;
        }
        let mut tx = Transaction {
            version: TxVersion(version),
            lock_time: LockTime::from_height(self.height()).unwrap_or(LockTime::ZERO),
            input: inputs
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence(0xffff_fffd),
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        // Sign every input (P2PKH; name inputs sign their whole name script).
        let prevs: Vec<ScriptBuf> = inputs
            .iter()
            .map(|o| self.coins[o].txout.script_pubkey.clone())
            .collect();
        let mut sigs = Vec::new();
        {
            let w = self.wallet(wallet)?;
            let cache = SighashCache::new(&tx);
            for (i, prev) in prevs.iter().enumerate() {
                let addr = script::address_script(prev);
                let Some((sk, pk)) = w.keys.get(&addr) else {
                    return Err(fail(-4, "Input not found or already spent"));
                };
                let h = cache
                    .legacy_signature_hash(i, prev, EcdsaSighashType::All.to_u32())
                    .map_err(|e| fail(-4, e.to_string()))?;
                let sig = self
                    .secp
                    .sign_ecdsa(&Message::from_digest(h.to_byte_array()), sk);
                let mut der = sig.serialize_der().to_vec();
                der.push(EcdsaSighashType::All as u8);
                let script_sig = bitcoin::script::Builder::new()
                    .push_slice(bitcoin::script::PushBytesBuf::try_from(der).expect("≤ 73"))
                    .push_slice(pk.serialize())
                    .into_script();
                sigs.push(script_sig);
            }
        }
        for (input, s) in tx.input.iter_mut().zip(sigs) {
            input.script_sig = s;
        }
        if let Some((spk, sk, pk)) = change_addr {
            self.wallets
                .get_mut(wallet)
                .expect("checked")
                .keys
                .insert(spk, (sk, pk));
        }
        self.accept(tx)
    }

    pub fn send_to_address(
        &mut self,
        wallet: &str,
        script: ScriptBuf,
        sat: u64,
    ) -> Result<Txid, Fail> {
        if sat == 0 {
            return Err(fail(-3, "Invalid amount for send"));
        }
        if sat < DUST {
            return Err(fail(-6, "Transaction amount too small"));
        }
        self.fund_sign_send(
            wallet,
            vec![],
            vec![TxOut {
                value: Amount::from_sat(sat),
                script_pubkey: script,
            }],
            1,
        )
    }

    fn fresh_script(&mut self, wallet: &str) -> Result<ScriptBuf, Fail> {
        let a = self.new_address(wallet)?;
        Ok(script::address_to_script(&a, P2PKH_PREFIX, P2SH_PREFIX).expect("ours"))
    }

    fn pending_op_on(&self, name: &[u8]) -> Option<(OutPoint, NameOp)> {
        let mut last = None;
        for (tx, vout, op) in self.pending_names() {
            if op.name() == Some(name) {
                last = Some((OutPoint::new(tx.compute_txid(), vout), op));
            }
        }
        last
    }

    fn active(&self, name: &[u8]) -> bool {
        self.names.get(name).is_some_and(|d| !self.is_expired(d))
    }

    /// name_new → (txid, rand).
    pub fn name_new(&mut self, wallet: &str, name: &[u8]) -> Result<(Txid, [u8; 20]), Fail> {
        self.wallet(wallet)?;
        if name.len() > MAX_NAME_LEN {
            return Err(fail(-8, "the name is too long"));
        }
        if self.active(name) {
            return Err(fail(-25, "this name exists already"));
        }
        let rand: [u8; 20] = rand::random();
        let addr = self.fresh_script(wallet)?;
        let out = TxOut {
            value: Amount::from_sat(NAME_LOCKED),
            script_pubkey: name_script(
                &NameOp::New {
                    hash: commitment(&rand, name),
                },
                &addr,
            ),
        };
        let txid = self.fund_sign_send(wallet, vec![], vec![out], NAME_TX_VERSION)?;
        self.wallets
            .get_mut(wallet)
            .expect("checked")
            .rands
            .insert(name.to_vec(), rand.to_vec());
        Ok((txid, rand))
    }

    pub fn name_firstupdate(
        &mut self,
        wallet: &str,
        name: &[u8],
        rand: &[u8],
        prev: &Txid,
        value: &[u8],
    ) -> Result<Txid, Fail> {
        self.wallet(wallet)?;
        if name.len() > MAX_NAME_LEN {
            return Err(fail(-8, "the name is too long"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(fail(-8, "the value is too long"));
        }
        if self
            .pending_names()
            .iter()
            .any(|(_, _, op)| matches!(op, NameOp::FirstUpdate { name: n, .. } if n == name))
        {
            return Err(fail(-25, "this name is already being registered"));
        }
        if self.active(name) {
            return Err(fail(-25, "this name is already active"));
        }
        // The name_new must be in the confirmed UTXO set (namecoind's getNamePrevout).
        let Some((tx, Some(_))) = self.txs.get(prev).cloned() else {
            return Err(fail(-25, "previous txid not found"));
        };
        let Some((vout, hash)) = tx.output.iter().enumerate().find_map(|(i, o)| {
            match parse_name_script(&o.script_pubkey) {
                Some((NameOp::New { hash }, _)) => Some((i as u32, hash)),
                _ => None,
            }
        }) else {
            return Err(fail(-25, "previous tx is not name_new"));
        };
        let outpoint = OutPoint::new(*prev, vout);
        if self.coin(&outpoint, true).is_none() {
            return Err(fail(-25, "previous txid not found"));
        }
        if commitment(rand, name) != hash {
            return Err(fail(-25, "rand value is wrong"));
        }
        let addr = self.fresh_script(wallet)?;
        let op = NameOp::FirstUpdate {
            name: name.to_vec(),
            rand: rand.to_vec(),
            value: value.to_vec(),
        };
        let out = TxOut {
            value: Amount::from_sat(NAME_LOCKED),
            script_pubkey: name_script(&op, &addr),
        };
        self.fund_sign_send(wallet, vec![outpoint], vec![out], NAME_TX_VERSION)
    }

    pub fn name_update(&mut self, wallet: &str, name: &[u8], value: &[u8]) -> Result<Txid, Fail> {
        self.wallet(wallet)?;
        if name.len() > MAX_NAME_LEN {
            return Err(fail(-8, "the name is too long"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(fail(-8, "the value is too long"));
        }
        let outpoint = match self.pending_op_on(name) {
            Some((op, NameOp::FirstUpdate { .. } | NameOp::Update { .. })) => op,
            _ => {
                if !self.active(name) {
                    return Err(fail(-25, "this name can not be updated"));
                }
                self.names[name].outpoint
            }
        };
        let owned = self.coins.get(&outpoint).is_some_and(|c| {
            self.wallet(wallet)
                .is_ok_and(|w| w.is_mine(&c.txout.script_pubkey))
        });
        if !owned {
            return Err(fail(-4, "Input tx not found in wallet"));
        }
        let addr = self.fresh_script(wallet)?;
        let op = NameOp::Update {
            name: name.to_vec(),
            value: value.to_vec(),
        };
        let out = TxOut {
            value: Amount::from_sat(NAME_LOCKED),
            script_pubkey: name_script(&op, &addr),
        };
        self.fund_sign_send(wallet, vec![outpoint], vec![out], NAME_TX_VERSION)
    }

    /// Raw bytes of a transaction.
    pub fn tx_hex(tx: &Transaction) -> String {
        hex::encode(encode::serialize(tx))
    }
}
