//! Grants (docs/speakeasy.md §4): the message that hands a member its clearance — an invite,
//! or the new keys after a removal. A grant is the body of a direct envelope (protocol.md
//! §8.2, content type [`CONTENT_TYPE`]) sealed to the member's pseudonym and signed by the
//! granting member; it travels over the bus to the member's inbox and, as an invite, also as
//! a string (`bumpse1:` + base64url of the envelope) given out of band. One encode
//! ([`Grant::encode`]) and one decode ([`Grant::decode`]).
//!
//! ```text
//! grant = version 1 (u8) ‖ network id (16) ‖ network name (u8 length ‖ UTF-8, 1..=64)
//!         ‖ member name (u8 length ‖ UTF-8, 1..=64)
//!         ‖ n (u8, 1..=255) ‖ n × compartment ‖ at (16) ‖ epoch (u32 BE) ‖ key (32)
//! compartment = id (16) ‖ has parent (u8 0/1) ‖ [parent (16)] ‖ epoch (u32 BE)
//!               ‖ name (u8 length ‖ name)
//! ```
//! The compartments are the path from the root down to `at`, then `at`'s subtree, every
//! parent before its children: what the member may know of the tree, nothing beside it.

use super::tree::{Clearance, Compartment, CompartmentId, Tree, TreeError, MAX_NAME};
use crate::sealed::envelope::{self, OpenError, Opener, Plain, Seal, SealError};
use crate::sealed::keys::{Identity, PublicId};
use base64::Engine as _;

pub const CONTENT_TYPE: u8 = 0x54;
pub const VERSION: u8 = 1;
pub const PREFIX: &str = "bumpse1:";
/// Longest invite string accepted.
pub const MAX_STRING: usize = 64 * 1024;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("grant truncated")]
    Truncated,
    #[error("unknown grant version {0}")]
    Version(u8),
    #[error("{0} in the grant is missing, not UTF-8 or too long")]
    Field(&'static str),
    #[error("bytes after the grant")]
    Trailing,
    #[error("the grant's tree is not a tree: {0}")]
    Tree(#[from] TreeError),
    #[error("not an invite string (it starts with {PREFIX:?} followed by base64url)")]
    NotInvite,
    #[error("the invite does not open with any of this member's pseudonyms: {0}")]
    Open(#[from] OpenError),
    #[error("an unsigned grant: grants are signed by the member who gives them")]
    Unsigned,
    #[error("not a grant (content type {0})")]
    ContentType(u8),
    #[error(transparent)]
    Seal(#[from] SealError),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub network: [u8; 16],
    pub network_name: String,
    /// The name the granting member gave this member (shown until it introduces itself).
    pub member_name: String,
    pub tree: Tree,
    pub clearance: Clearance,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("network", &hex::encode(self.network))
            .field("clearance", &self.clearance)
            .finish()
    }
}

fn put_name(v: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), GrantError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(GrantError::Field(what));
    }
    v.push(s.len() as u8);
    v.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GrantError> {
        if self.0.len() < n {
            return Err(GrantError::Truncated);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GrantError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn name(&mut self, what: &'static str) -> Result<String, GrantError> {
        let [n] = self.array::<1>()?;
        if n == 0 || n as usize > MAX_NAME {
            return Err(GrantError::Field(what));
        }
        String::from_utf8(self.take(n as usize)?.to_vec()).map_err(|_| GrantError::Field(what))
    }
}

impl Grant {
    /// The grant of clearance `c` (at or below `from`'s) in `tree`.
    pub fn of(
        network: [u8; 16],
        network_name: &str,
        member_name: &str,
        tree: &Tree,
        from: &Clearance,
        c: &CompartmentId,
    ) -> Result<Grant, GrantError> {
        let clearance = from.narrow(tree, c)?;
        Ok(Grant {
            network,
            network_name: network_name.to_string(),
            member_name: member_name.to_string(),
            tree: tree.visible_from(c)?,
            clearance,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, GrantError> {
        let mut v = vec![VERSION];
        v.extend_from_slice(&self.network);
        put_name(&mut v, &self.network_name, "network name")?;
        put_name(&mut v, &self.member_name, "member name")?;
        let nodes = self.tree.in_order();
        if nodes.is_empty() || nodes.len() > 255 {
            return Err(GrantError::Field("compartments"));
        }
        v.push(nodes.len() as u8);
        for c in nodes {
            v.extend_from_slice(&c.id.0);
            match c.parent {
                Some(p) => {
                    v.push(1);
                    v.extend_from_slice(&p.0);
                }
                None => v.push(0),
            }
            v.extend_from_slice(&c.epoch.to_be_bytes());
            put_name(&mut v, &c.name, "compartment name")?;
        }
        v.extend_from_slice(&self.clearance.at.0);
        v.extend_from_slice(&self.clearance.epoch.to_be_bytes());
        v.extend_from_slice(&self.clearance.key);
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<Grant, GrantError> {
        let mut r = Reader(b);
        let [version] = r.array::<1>()?;
        if version != VERSION {
            return Err(GrantError::Version(version));
        }
        let network = r.array()?;
        let network_name = r.name("network name")?;
        let member_name = r.name("member name")?;
        let [n] = r.array::<1>()?;
        if n == 0 {
            return Err(GrantError::Field("compartments"));
        }
        let mut nodes = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let id = CompartmentId(r.array()?);
            let parent = match r.array::<1>()? {
                [0] => None,
                [1] => Some(CompartmentId(r.array()?)),
                _ => return Err(GrantError::Field("compartment parent")),
            };
            let epoch = u32::from_be_bytes(r.array()?);
            let name = r.name("compartment name")?;
            nodes.push(Compartment {
                id,
                name,
                parent,
                epoch,
            });
        }
        let clearance = Clearance {
            at: CompartmentId(r.array()?),
            epoch: u32::from_be_bytes(r.array()?),
            key: r.array()?,
        };
        if !r.0.is_empty() {
            return Err(GrantError::Trailing);
        }
        let tree = Tree::from_nodes(&nodes)?;
        tree.get(&clearance.at)?;
        Ok(Grant {
            network,
            network_name,
            member_name,
            tree,
            clearance,
        })
    }

    /// The grant sealed to `to`, signed by `by`: a direct envelope.
    pub fn seal(
        &self,
        to: &PublicId,
        by: &Identity,
        now: u32,
    ) -> Result<(Vec<u8>, [u8; 32]), GrantError> {
        let plain = Plain {
            timestamp: now as u64,
            content_type: CONTENT_TYPE,
            body: self.encode()?,
        };
        let r = envelope::SealRandom::fresh();
        let env = envelope::seal_with(
            &Seal::Direct(std::slice::from_ref(to)),
            &plain,
            Some(by),
            &r,
        )?;
        Ok((env, r.content_key))
    }

    /// Open a direct envelope as a grant for `me`: the grant and who signed it.
    pub fn open(env: &[u8], me: &Identity) -> Result<(Grant, PublicId), GrantError> {
        opened_grant(envelope::open(env, &Opener::Identity(me))?)
    }
}

/// An opened envelope as a grant, and who signed it.
pub fn opened_grant(o: envelope::Opened) -> Result<(Grant, PublicId), GrantError> {
    if o.plain.content_type != CONTENT_TYPE {
        return Err(GrantError::ContentType(o.plain.content_type));
    }
    let by = o.signer.ok_or(GrantError::Unsigned)?;
    Ok((Grant::decode(&o.plain.body)?, by))
}

/// An envelope as an invite string.
pub fn to_string(env: &[u8]) -> String {
    format!("{PREFIX}{}", B64URL.encode(env))
}

/// The envelope of an invite string (surrounding white space ignored).
pub fn from_string(s: &str) -> Result<Vec<u8>, GrantError> {
    let s = s.trim();
    if s.len() > MAX_STRING {
        return Err(GrantError::NotInvite);
    }
    let body = s.strip_prefix(PREFIX).ok_or(GrantError::NotInvite)?;
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    B64URL.decode(body).map_err(|_| GrantError::NotInvite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Tree, Clearance, [CompartmentId; 4]) {
        let ids = [
            CompartmentId([1; 16]),
            CompartmentId([2; 16]),
            CompartmentId([3; 16]),
            CompartmentId([4; 16]),
        ];
        let mut t = Tree::new(ids[0], "all").unwrap();
        t.add(ids[0], ids[1], "ops").unwrap();
        t.add(ids[1], ids[2], "cell-a").unwrap();
        t.add(ids[1], ids[3], "cell-b").unwrap();
        t.next_epoch(&ids[2]).unwrap();
        let admin = Clearance {
            at: ids[0],
            epoch: 0,
            key: [7; 32],
        };
        (t, admin, ids)
    }

    #[test]
    fn an_invite_round_trips_and_shows_only_the_path_and_subtree() {
        let (t, admin, [all, ops, a, b]) = setup();
        let g = Grant::of([5; 16], "net", "Carol", &t, &admin, &a).unwrap();
        assert_eq!(Grant::decode(&g.encode().unwrap()).unwrap(), g);
        // Carol sees all > ops > cell-a, not cell-b.
        assert!(g.tree.get(&all).is_ok() && g.tree.get(&ops).is_ok());
        assert_eq!(g.tree.get(&a).unwrap().epoch, 1);
        assert!(g.tree.get(&b).is_err());
        // Her key is the admin's key for cell-a.
        assert_eq!(
            g.clearance.key_for(&g.tree, &a).unwrap(),
            admin.key_for(&t, &a).unwrap()
        );
        // Sealed to her pseudonym, signed by the admin; opens for her only.
        let (carol, admin_id, eve) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let (env, _) = g.seal(&carol.public(), &admin_id, 1).unwrap();
        let s = to_string(&env);
        let (got, by) = Grant::open(&from_string(&s).unwrap(), &carol).unwrap();
        assert_eq!((got, by), (g.clone(), admin_id.public()));
        assert!(Grant::open(&env, &eve).is_err());
        assert_eq!(from_string("hello"), Err(GrantError::NotInvite));
        // Bob at ops sees both cells.
        let gb = Grant::of([5; 16], "net", "Bob", &t, &admin, &ops).unwrap();
        assert!(gb.tree.get(&b).is_ok());
    }

    #[test]
    fn hostile_grants_are_refused() {
        let (t, admin, [_, ops, ..]) = setup();
        let b = Grant::of([5; 16], "net", "Bob", &t, &admin, &ops)
            .unwrap()
            .encode()
            .unwrap();
        for n in 0..b.len() {
            assert!(Grant::decode(&b[..n]).is_err(), "truncated at {n}");
        }
        let mut extra = b.clone();
        extra.push(1);
        assert_eq!(Grant::decode(&extra), Err(GrantError::Trailing));
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(Grant::decode(&v), Err(GrantError::Version(9)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Grant::decode(&b);
        }
    }
}
