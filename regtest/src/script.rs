//! Namecoin name scripts (names/main.h `CNameScript`): a name operation prefixed to an ordinary
//! address script.
//!
//! - name_new:         `OP_1 <hash160(rand ‖ name)> OP_2DROP <address script>`
//! - name_firstupdate: `OP_2 <name> <rand> <value> OP_2DROP OP_2DROP <address script>`
//! - name_update:      `OP_3 <name> <value> OP_2DROP OP_DROP <address script>`
//!
//! Plus the address forms the stand-in's wallet uses (base58 P2PKH, prefix 111 on regtest).

use bitcoin::blockdata::opcodes::all::{
    OP_2DROP, OP_DROP, OP_PUSHNUM_1, OP_PUSHNUM_2, OP_PUSHNUM_3,
};
use bitcoin::hashes::{hash160, Hash};
use bitcoin::script::{Builder, Instruction, PushBytesBuf, Script, ScriptBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOp {
    New {
        hash: [u8; 20],
    },
    FirstUpdate {
        name: Vec<u8>,
        rand: Vec<u8>,
        value: Vec<u8>,
    },
    Update {
        name: Vec<u8>,
        value: Vec<u8>,
    },
}

impl NameOp {
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            NameOp::New { .. } => None,
            NameOp::FirstUpdate { name, .. } | NameOp::Update { name, .. } => Some(name),
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        match self {
            NameOp::New { .. } => None,
            NameOp::FirstUpdate { value, .. } | NameOp::Update { value, .. } => Some(value),
        }
    }

    pub fn op_name(&self) -> &'static str {
        match self {
            NameOp::New { .. } => "name_new",
            NameOp::FirstUpdate { .. } => "name_firstupdate",
            NameOp::Update { .. } => "name_update",
        }
    }
}

/// The name_new commitment: HASH160(rand ‖ name).
pub fn commitment(rand: &[u8], name: &[u8]) -> [u8; 20] {
    let mut v = rand.to_vec();
    v.extend_from_slice(name);
    hash160::Hash::hash(&v).to_byte_array()
}

fn push(b: Builder, data: &[u8]) -> Builder {
    b.push_slice(PushBytesBuf::try_from(data.to_vec()).expect("name data ≤ 1023 bytes"))
}

/// The full script of a name output paying to `address`.
pub fn name_script(op: &NameOp, address: &Script) -> ScriptBuf {
    let b = match op {
        NameOp::New { hash } => {
            push(Builder::new().push_opcode(OP_PUSHNUM_1), hash).push_opcode(OP_2DROP)
        }
        NameOp::FirstUpdate { name, rand, value } => push(
            push(push(Builder::new().push_opcode(OP_PUSHNUM_2), name), rand),
            value,
        )
        .push_opcode(OP_2DROP)
        .push_opcode(OP_2DROP),
        NameOp::Update { name, value } => {
            push(push(Builder::new().push_opcode(OP_PUSHNUM_3), name), value)
                .push_opcode(OP_2DROP)
                .push_opcode(OP_DROP)
        }
    };
    let mut bytes = b.into_script().into_bytes();
    bytes.extend_from_slice(address.as_bytes());
    ScriptBuf::from_bytes(bytes)
}

/// Split a script into its name operation and address script; `None` for ordinary scripts.
pub fn parse_name_script(script: &Script) -> Option<(NameOp, ScriptBuf)> {
    let mut it = script.instruction_indices();
    let (_, first) = it.next()?.ok()?;
    let kind = match first {
        Instruction::Op(op) if op == OP_PUSHNUM_1 => 1,
        Instruction::Op(op) if op == OP_PUSHNUM_2 => 2,
        Instruction::Op(op) if op == OP_PUSHNUM_3 => 3,
        _ => return None,
    };
    let mut pushes: Vec<Vec<u8>> = Vec::new();
    let rest_at;
    loop {
        let (pos, ins) = it.next()?.ok()?;
        match ins {
            Instruction::PushBytes(p) => pushes.push(p.as_bytes().to_vec()),
            Instruction::Op(op) if op == OP_2DROP || op == OP_DROP => {
                // Skip the remaining drops.
                let mut end = pos + 1;
                let bytes = script.as_bytes();
                while end < bytes.len()
                    && (bytes[end] == OP_2DROP.to_u8() || bytes[end] == OP_DROP.to_u8())
                {
                    end += 1;
                }
                rest_at = end;
                break;
            }
            _ => return None,
        }
    }
    let op = match (kind, pushes.len()) {
        (1, 1) if pushes[0].len() == 20 => NameOp::New {
            hash: pushes[0].clone().try_into().ok()?,
        },
        (2, 3) => NameOp::FirstUpdate {
            name: pushes[0].clone(),
            rand: pushes[1].clone(),
            value: pushes[2].clone(),
        },
        (3, 2) => NameOp::Update {
            name: pushes[0].clone(),
            value: pushes[1].clone(),
        },
        _ => return None,
    };
    Some((
        op,
        ScriptBuf::from_bytes(script.as_bytes()[rest_at..].to_vec()),
    ))
}

/// The address script of any output (the part after a name prefix, or the whole script).
pub fn address_script(script: &Script) -> ScriptBuf {
    parse_name_script(script)
        .map(|(_, a)| a)
        .unwrap_or_else(|| script.to_owned())
}

/// Base58check address of a P2PKH or P2SH script with the given version bytes.
pub fn script_address(script: &Script, p2pkh: u8, p2sh: u8) -> Option<String> {
    let (version, hash) = if script.is_p2pkh() {
        (p2pkh, &script.as_bytes()[3..23])
    } else if script.is_p2sh() {
        (p2sh, &script.as_bytes()[2..22])
    } else {
        return None;
    };
    let mut data = vec![version];
    data.extend_from_slice(hash);
    Some(bitcoin::base58::encode_check(&data))
}

/// The script an address pays to; `None` when it is not a base58 address of this network.
pub fn address_to_script(address: &str, p2pkh: u8, p2sh: u8) -> Option<ScriptBuf> {
    let data = bitcoin::base58::decode_check(address).ok()?;
    if data.len() != 21 {
        return None;
    }
    let hash: [u8; 20] = data[1..].try_into().ok()?;
    if data[0] == p2pkh {
        Some(ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(
            hash,
        )))
    } else if data[0] == p2sh {
        Some(ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array(
            hash,
        )))
    } else {
        None
    }
}

/// Script assembly as namecoind prints it (`OP_DUP OP_HASH160 <hex> ...`).
pub fn asm(script: &Script) -> String {
    let mut out = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(p)) if p.is_empty() => out.push("0".to_string()),
            Ok(Instruction::PushBytes(p)) => out.push(hex::encode(p.as_bytes())),
            Ok(Instruction::Op(op)) => {
                let s = op.to_string();
                out.push(match s.as_str() {
                    "OP_PUSHNUM_1" => "1".into(),
                    "OP_PUSHNUM_2" => "2".into(),
                    "OP_PUSHNUM_3" => "3".into(),
                    _ => s,
                })
            }
            Err(_) => {
                out.push("[error]".into());
                break;
            }
        }
    }
    out.join(" ")
}

/// Output descriptor checksum (BIP 380), as in `addr(...)#checksum`.
pub fn descriptor_checksum(desc: &str) -> Option<String> {
    const INPUT: &str = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    fn polymod(c: u64, val: u64) -> u64 {
        let c0 = c >> 35;
        let mut c = ((c & 0x7ffffffff) << 5) ^ val;
        if c0 & 1 != 0 {
            c ^= 0xf5dee51989;
        }
        if c0 & 2 != 0 {
            c ^= 0xa9fdca3312;
        }
        if c0 & 4 != 0 {
            c ^= 0x1bab10e32d;
        }
        if c0 & 8 != 0 {
            c ^= 0x3706b1677a;
        }
        if c0 & 16 != 0 {
            c ^= 0x644d626ffd;
        }
        c
    }
    let mut c = 1u64;
    let mut cls = 0u64;
    let mut clscount = 0;
    for ch in desc.chars() {
        let pos = INPUT.find(ch)? as u64;
        c = polymod(c, pos & 31);
        cls = cls * 3 + (pos >> 5);
        clscount += 1;
        if clscount == 3 {
            c = polymod(c, cls);
            cls = 0;
            clscount = 0;
        }
    }
    if clscount > 0 {
        c = polymod(c, cls);
    }
    for _ in 0..8 {
        c = polymod(c, 0);
    }
    c ^= 1;
    Some(
        (0..8)
            .map(|j| CHARSET[((c >> (5 * (7 - j))) & 31) as usize] as char)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_checksum_matches_namecoind() {
        // From the recorded gettxout answers.
        assert_eq!(
            descriptor_checksum("addr(mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS)").unwrap(),
            "vj0txzzh"
        );
        assert_eq!(
            descriptor_checksum("addr(mox8UKWKPHfbuqrL3hS6dVM1DUdpuMG1io)").unwrap(),
            "x8hr3tl9"
        );
    }

    #[test]
    fn addresses_and_asm_match_namecoind() {
        let spk = address_to_script("mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS", 111, 196).unwrap();
        assert_eq!(
            hex::encode(spk.as_bytes()),
            "76a9149fa3ed5b1bbd95ba65bd41fb3686ec094773d41088ac"
        );
        assert_eq!(
            asm(&spk),
            "OP_DUP OP_HASH160 9fa3ed5b1bbd95ba65bd41fb3686ec094773d410 OP_EQUALVERIFY OP_CHECKSIG"
        );
        assert_eq!(
            script_address(&spk, 111, 196).unwrap(),
            "mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS"
        );
        assert!(address_to_script("mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAT", 111, 196).is_none());
        assert!(address_to_script("NAMvBQaVJ1Q8iTRW1wMTX2Wf4Si3X6ziPM", 111, 196).is_none());
    }

    #[test]
    fn name_scripts_round_trip() {
        let addr = address_to_script("mv547QzzemA4p1eUqvnhqnWcXdsVeFUtAS", 111, 196).unwrap();
        let ops = [
            NameOp::New {
                hash: commitment(&[1; 20], b"bump/a"),
            },
            NameOp::FirstUpdate {
                name: b"bump/a".to_vec(),
                rand: vec![1; 20],
                value: vec![b'v'; 520],
            },
            NameOp::Update {
                name: b"bump/a".to_vec(),
                value: b"{}".to_vec(),
            },
            NameOp::Update {
                name: b"d/x".to_vec(),
                value: vec![],
            },
        ];
        for op in ops {
            let s = name_script(&op, &addr);
            assert_eq!(parse_name_script(&s), Some((op, addr.clone())));
            assert_eq!(address_script(&s), addr);
        }
        assert_eq!(parse_name_script(&addr), None);
    }
}
