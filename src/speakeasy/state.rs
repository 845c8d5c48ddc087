//! What `bump speakeasy` keeps on disk (docs/speakeasy.md §5): `state.json` in its directory,
//! mode 0600, written whole to a temporary file, flushed and renamed over the old one, so a
//! crash leaves the old or the new state, never half of one. It holds secrets (pseudonyms,
//! clearance keys) and nothing read from the bus: posts are opened again from the node's
//! store at every start. With a passphrase ([`PASSPHRASE_ENV`]) the whole state is sealed
//! (argon2id → XChaCha20-Poly1305, as the node's keyring): `{"encrypted": {...}}`.

use super::forum::Keys;
use super::tree::{Clearance, Compartment, CompartmentId, Tree};
use crate::sealed::keys::Identity;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "state.json";
/// The passphrase that seals the state at rest, when set.
pub const PASSPHRASE_ENV: &str = "BUMP_SE_PASSPHRASE";
const AAD: &[u8] = b"bump/speakeasy-state/1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Encrypted {
    encrypted: crate::sealed::keyring::SealedBody,
}
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("{path} is not a Speak Easy state file: {why}")]
    Bad { path: PathBuf, why: String },
}

/// A pseudonym made for joining a network, waiting for its invite.
#[derive(Clone, Debug)]
pub struct Pending {
    pub me: Identity,
    pub my_name: String,
    pub created: u64,
}

#[derive(Default, Clone, Debug)]
pub struct State {
    pub networks: Vec<Keys>,
    pub pending: Vec<Pending>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    networks: Vec<NetV1>,
    pending: Vec<PendingV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetV1 {
    id: String,
    name: String,
    me: String,
    my_name: String,
    tree: Vec<NodeV1>,
    at: String,
    epoch: u32,
    key: String,
    past: Vec<(String, u32, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeV1 {
    id: String,
    parent: Option<String>,
    epoch: u32,
    name: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingV1 {
    me: String,
    my_name: String,
    created: u64,
}

fn bytes<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("{what} is not {} hex digits", 2 * N))
}

fn identity(s: &str) -> Result<Identity, String> {
    Identity::from_secret_bytes(&bytes::<32>(s, "a pseudonym")?).map_err(|e| e.to_string())
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The state in `dir`, or an empty one when there is none yet. A sealed state opens
    /// with the passphrase `pass` (normally from [`PASSPHRASE_ENV`]).
    pub fn load_with(dir: &Path, pass: Option<&str>) -> Result<State, StateError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(err) => return Err(StateError::Read { path, err }),
        };
        let bad = |why: String| StateError::Bad {
            path: path.clone(),
            why,
        };
        if let Ok(e) = serde_json::from_str::<Encrypted>(&text) {
            let pass = pass.ok_or_else(|| bad(format!("it is encrypted: set {PASSPHRASE_ENV}")))?;
            let plain = crate::sealed::keyring::unseal_with_passphrase(&e.encrypted, pass, AAD)
                .ok_or_else(|| bad("the passphrase does not open it (or it was altered)".into()))?;
            let text = String::from_utf8(plain).map_err(|_| bad("not UTF-8 inside".into()))?;
            return Self::parse(&text).map_err(bad);
        }
        Self::parse(&text).map_err(bad)
    }

    /// [`State::load_with`] the passphrase of the environment.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        Self::load_with(dir, passphrase().as_deref())
    }

    fn parse(text: &str) -> Result<State, String> {
        let f: FileV1 = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if f.version != VERSION {
            return Err(format!(
                "version {} (this program reads {VERSION})",
                f.version
            ));
        }
        let mut st = State::default();
        for n in f.networks {
            let mut nodes = vec![];
            for c in &n.tree {
                nodes.push(Compartment {
                    id: CompartmentId(bytes(&c.id, "a compartment id")?),
                    parent: c
                        .parent
                        .as_deref()
                        .map(|p| bytes(p, "a compartment id").map(CompartmentId))
                        .transpose()?,
                    epoch: c.epoch,
                    name: c.name.clone(),
                });
            }
            let mut past = vec![];
            for (c, e, k) in &n.past {
                past.push((
                    CompartmentId(bytes(c, "a compartment id")?),
                    *e,
                    bytes(k, "a key")?,
                ));
            }
            st.networks.push(Keys {
                network: bytes(&n.id, "a network id")?,
                name: n.name,
                me: identity(&n.me)?,
                my_name: n.my_name,
                tree: Tree::from_nodes(&nodes).map_err(|e| e.to_string())?,
                clearance: Clearance {
                    at: CompartmentId(bytes(&n.at, "a compartment id")?),
                    epoch: n.epoch,
                    key: bytes(&n.key, "a key")?,
                },
                past,
            });
        }
        for p in f.pending {
            st.pending.push(Pending {
                me: identity(&p.me)?,
                my_name: p.my_name,
                created: p.created,
            });
        }
        Ok(st)
    }

    fn to_file(&self) -> FileV1 {
        FileV1 {
            version: VERSION,
            networks: self
                .networks
                .iter()
                .map(|k| NetV1 {
                    id: hex::encode(k.network),
                    name: k.name.clone(),
                    me: hex::encode(k.me.secret_bytes()),
                    my_name: k.my_name.clone(),
                    tree: k
                        .tree
                        .in_order()
                        .into_iter()
                        .map(|c| NodeV1 {
                            id: c.id.to_hex(),
                            parent: c.parent.map(|p| p.to_hex()),
                            epoch: c.epoch,
                            name: c.name.clone(),
                        })
                        .collect(),
                    at: k.clearance.at.to_hex(),
                    epoch: k.clearance.epoch,
                    key: hex::encode(k.clearance.key),
                    past: k
                        .past
                        .iter()
                        .map(|(c, e, key)| (c.to_hex(), *e, hex::encode(key)))
                        .collect(),
                })
                .collect(),
            pending: self
                .pending
                .iter()
                .map(|p| PendingV1 {
                    me: hex::encode(p.me.secret_bytes()),
                    my_name: p.my_name.clone(),
                    created: p.created,
                })
                .collect(),
        }
    }

    /// Write the state into `dir`, sealed when the environment has a passphrase.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        self.save_with(dir, passphrase().as_deref())
    }

    /// Write the state into `dir` (created 0700 if missing), durably; sealed under `pass`.
    pub fn save_with(&self, dir: &Path, pass: Option<&str>) -> Result<(), StateError> {
        let path = Self::path(dir);
        let werr = |err| StateError::Write {
            path: path.clone(),
            err,
        };
        create_private_dir(dir).map_err(werr)?;
        let mut text = serde_json::to_vec_pretty(&self.to_file())
            .map_err(|e| werr(std::io::Error::other(e)))?;
        if let Some(pass) = pass {
            let sealed = crate::sealed::keyring::seal_with_passphrase(&text, pass, AAD)
                .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
            text = serde_json::to_vec_pretty(&Encrypted { encrypted: sealed })
                .map_err(|e| werr(std::io::Error::other(e)))?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
        set_private(tmp.path()).map_err(werr)?;
        tmp.write_all(&text).map_err(werr)?;
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&path).map_err(|e| werr(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn passphrase() -> Option<String> {
    std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn set_private(p: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::load(dir.path()).unwrap().networks.is_empty());
        let root = CompartmentId([1; 16]);
        let mut tree = Tree::new(root, "all").unwrap();
        tree.add(root, CompartmentId([2; 16]), "ops").unwrap();
        tree.next_epoch(&CompartmentId([2; 16])).unwrap();
        let st = State {
            networks: vec![Keys {
                network: [3; 16],
                name: "net".into(),
                me: Identity::generate(),
                my_name: "Alice".into(),
                tree: tree.clone(),
                clearance: Clearance {
                    at: root,
                    epoch: 0,
                    key: [4; 32],
                },
                past: vec![(root, 0, [5; 32])],
            }],
            pending: vec![Pending {
                me: Identity::generate(),
                my_name: "Bob".into(),
                created: 7,
            }],
        };
        let sub = dir.path().join("se");
        st.save(&sub).unwrap();
        let back = State::load(&sub).unwrap();
        let (a, b) = (&st.networks[0], &back.networks[0]);
        assert_eq!(
            (a.network, &a.tree, &a.clearance, &a.past, a.me.public()),
            (b.network, &b.tree, &b.clearance, &b.past, b.me.public())
        );
        assert_eq!(back.pending[0].me.public(), st.pending[0].me.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(State::path(&sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Sealed under a passphrase: no secret in the clear, opens only with it.
        let locked = dir.path().join("locked");
        st.save_with(&locked, Some("correct horse")).unwrap();
        let raw = std::fs::read_to_string(State::path(&locked)).unwrap();
        assert!(raw.contains("encrypted") && !raw.contains(&hex::encode(a.clearance.key)));
        assert!(!raw.contains("Alice"));
        let e = State::load_with(&locked, None).unwrap_err().to_string();
        assert!(e.contains(PASSPHRASE_ENV), "{e}");
        assert!(State::load_with(&locked, Some("wrong")).is_err());
        let open = State::load_with(&locked, Some("correct horse")).unwrap();
        assert_eq!(open.networks[0].clearance, a.clearance);
        std::fs::write(State::path(&sub), "{\"version\": 1}").unwrap();
        let e = State::load(&sub).unwrap_err().to_string();
        assert!(
            e.contains("state.json") && e.contains("missing field"),
            "{e}"
        );
    }
}
