//! The keyring: this user's identities and groups, in `DATADIR/<net>/keyring.json` (mode
//! 0600, written atomically). Secrets are kept in their printable forms (`bumpsec1…`,
//! `bumpgrp1…`). It is read by the `bump id`, `bump group`, sealed `send`/`get` and `inbox`
//! commands, and by the node's `bump_sealed*`, `bump_id*` and `bump_group*` RPC methods.
//! Changes go through [`Keyring::edit`], which holds an exclusive lock on `keyring.lock`, so a
//! command line and a node that change it at the same moment lose nothing.

use super::keys::{GroupKey, Identity, KeyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const KEYRING_FILE: &str = "keyring.json";
/// Held (flock, exclusive) while the keyring is loaded, changed and saved.
pub const KEYRING_LOCK: &str = "keyring.lock";
/// Where the passphrase of an encrypted keyring is read from.
pub const PASSPHRASE_ENV: &str = "BUMP_KEYRING_PASSPHRASE";
const KEYRING_AAD: &[u8] = b"bump/keyring/1";

/// The file form of an encrypted keyring.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    encrypted: SealedBody,
}

/// Bytes sealed under a passphrase (argon2id → XChaCha20-Poly1305), as stored in JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedBody {
    version: u8,
    salt: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read or write the keyring {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the keyring {path} is not valid JSON: {err}")]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("no identity named {0:?} (see `bump id list`)")]
    NoIdentity(String),
    #[error("no group named {0:?} (see `bump group list`)")]
    NoGroup(String),
    #[error("{kind} {name:?} exists already")]
    Exists { kind: &'static str, name: String },
    #[error("names are 1 to 64 characters of letters, digits, '-', '_' and '.'")]
    BadName,
    #[error("the keyring {0} is encrypted: set {PASSPHRASE_ENV} to its passphrase")]
    Locked(PathBuf),
    #[error("the keyring {0} does not open with this passphrase (or it is damaged)")]
    BadPassphrase(PathBuf),
    #[error("join a group with either a passphrase or an invite string, not both or neither")]
    JoinHow,
    #[error("the keyring passphrase is empty")]
    EmptyPassphrase,
    #[error("keyring entry {name:?}: {err}")]
    Key { name: String, err: KeyError },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupEntry {
    /// `bumpgrp1…`
    pub invite: String,
    /// "random" or "passphrase".
    pub kind: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Keyring {
    #[serde(default)]
    pub identities: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupEntry>,
    #[serde(skip)]
    path: PathBuf,
    /// Set when the keyring is encrypted at rest.
    #[serde(skip)]
    passphrase: Option<String>,
}

fn check_name(name: &str) -> Result<(), KeyringError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(KeyringError::BadName)
    }
}

impl Keyring {
    /// Load the keyring of `netdir` (an absent file is an empty keyring).
    pub fn load(netdir: &Path) -> Result<Keyring, KeyringError> {
        let path = netdir.join(KEYRING_FILE);
        let json = |err| KeyringError::Json {
            path: path.clone(),
            err,
        };
        let mut k = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Sealed>(&bytes) {
                Ok(sealed) => {
                    let pass = std::env::var(PASSPHRASE_ENV)
                        .ok()
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| KeyringError::Locked(path.clone()))?;
                    let plain = unseal(&sealed.encrypted, &pass)
                        .ok_or_else(|| KeyringError::BadPassphrase(path.clone()))?;
                    let mut k = serde_json::from_slice::<Keyring>(&plain).map_err(json)?;
                    k.passphrase = Some(pass);
                    k
                }
                Err(_) => serde_json::from_slice::<Keyring>(&bytes).map_err(json)?,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keyring::default(),
            Err(err) => return Err(KeyringError::Io { path, err }),
        };
        k.path = path;
        Ok(k)
    }

    /// Load the keyring of `netdir`, apply `f` and save the result, all under an exclusive
    /// lock on `netdir/keyring.lock`; nothing is saved when `f` fails.
    pub fn edit<T>(
        netdir: &Path,
        f: impl FnOnce(&mut Keyring) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        let lock_path = netdir.join(KEYRING_LOCK);
        let io = |err| KeyringError::Io {
            path: lock_path.clone(),
            err,
        };
        std::fs::create_dir_all(netdir).map_err(io)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut k = Keyring::load(netdir)?;
        let out = f(&mut k)?;
        k.save()?;
        // The lock goes with the file handle.
        drop(lock);
        Ok(out)
    }

    /// Make a new identity under `name`.
    pub fn new_identity(&mut self, name: &str) -> Result<Identity, KeyringError> {
        let id = Identity::generate();
        self.add_identity(name, &id)?;
        Ok(id)
    }

    /// Add an identity from its secret string (`bumpsec1…`).
    pub fn import_identity(&mut self, name: &str, secret: &str) -> Result<Identity, KeyringError> {
        let id = Identity::parse_secret(secret).map_err(|err| KeyringError::Key {
            name: name.into(),
            err,
        })?;
        self.add_identity(name, &id)?;
        Ok(id)
    }

    /// Make a group with a fresh random key.
    pub fn new_group(&mut self, name: &str) -> Result<GroupKey, KeyringError> {
        let key = GroupKey::generate();
        self.add_group(name, &key, "random")?;
        Ok(key)
    }

    /// Join a group by its invite string or by a shared passphrase (argon2id: slow on
    /// purpose). Exactly one of the two must be given.
    pub fn join_group(
        &mut self,
        name: &str,
        passphrase: Option<&str>,
        invite: Option<&str>,
    ) -> Result<GroupKey, KeyringError> {
        let key_err = |err| KeyringError::Key {
            name: name.into(),
            err,
        };
        check_name(name)?;
        let (key, kind) = match (passphrase, invite) {
            (Some(p), None) => (GroupKey::from_passphrase(p).map_err(key_err)?, "passphrase"),
            (None, Some(i)) => (GroupKey::parse_invite(i).map_err(key_err)?, "random"),
            _ => return Err(KeyringError::JoinHow),
        };
        self.add_group(name, &key, kind)?;
        Ok(key)
    }

    /// Write it back: a temporary file of mode 0600, then renamed over the old one.
    pub fn save(&self) -> Result<(), KeyringError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |err| KeyringError::Io {
            path: self.path.clone(),
            err,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let jerr = |err| KeyringError::Json {
            path: self.path.clone(),
            err,
        };
        let mut json = serde_json::to_vec_pretty(self).map_err(jerr)?;
        if let Some(pass) = &self.passphrase {
            let sealed = Sealed {
                encrypted: seal(&json, pass).map_err(|e| KeyringError::Key {
                    name: "keyring".into(),
                    err: e,
                })?,
            };
            json = serde_json::to_vec_pretty(&sealed).map_err(jerr)?;
        }
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    /// Whether the keyring is encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.passphrase.is_some()
    }

    /// Encrypt the keyring at rest from the next [`Keyring::save`] on (`Some`), or store it
    /// in the clear again (`None`).
    pub fn set_passphrase(&mut self, passphrase: Option<String>) -> Result<(), KeyringError> {
        if passphrase.as_deref() == Some("") {
            return Err(KeyringError::EmptyPassphrase);
        }
        self.passphrase = passphrase;
        Ok(())
    }

    pub fn add_identity(&mut self, name: &str, id: &Identity) -> Result<(), KeyringError> {
        check_name(name)?;
        if self.identities.contains_key(name) {
            return Err(KeyringError::Exists {
                kind: "identity",
                name: name.into(),
            });
        }
        self.identities.insert(name.into(), id.to_secret_string());
        Ok(())
    }

    pub fn identity(&self, name: &str) -> Result<Identity, KeyringError> {
        let s = self
            .identities
            .get(name)
            .ok_or_else(|| KeyringError::NoIdentity(name.into()))?;
        Identity::parse_secret(s).map_err(|err| KeyringError::Key {
            name: name.into(),
            err,
        })
    }

    /// Every identity that parses, by name.
    pub fn all_identities(&self) -> Vec<(String, Identity)> {
        self.identities
            .keys()
            .filter_map(|n| self.identity(n).ok().map(|i| (n.clone(), i)))
            .collect()
    }

    pub fn add_group(
        &mut self,
        name: &str,
        key: &GroupKey,
        kind: &str,
    ) -> Result<(), KeyringError> {
        check_name(name)?;
        if self.groups.contains_key(name) {
            return Err(KeyringError::Exists {
                kind: "group",
                name: name.into(),
            });
        }
        self.groups.insert(
            name.into(),
            GroupEntry {
                invite: key.to_invite(),
                kind: kind.into(),
            },
        );
        Ok(())
    }

    pub fn group(&self, name: &str) -> Result<GroupKey, KeyringError> {
        let g = self
            .groups
            .get(name)
            .ok_or_else(|| KeyringError::NoGroup(name.into()))?;
        GroupKey::parse_invite(&g.invite).map_err(|err| KeyringError::Key {
            name: name.into(),
            err,
        })
    }

    pub fn remove_group(&mut self, name: &str) -> Result<(), KeyringError> {
        self.groups
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| KeyringError::NoGroup(name.into()))
    }
}

fn seal(plain: &[u8], pass: &str) -> Result<SealedBody, KeyError> {
    seal_with_passphrase(plain, pass, KEYRING_AAD)
}

fn unseal(b: &SealedBody, pass: &str) -> Option<Vec<u8>> {
    unseal_with_passphrase(b, pass, KEYRING_AAD)
}

/// Seal `plain` under `pass` (fresh salt and nonce), bound to `aad`.
pub fn seal_with_passphrase(plain: &[u8], pass: &str, aad: &[u8]) -> Result<SealedBody, KeyError> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use rand::RngCore;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = GroupKey::argon2id(pass, &salt)?;
    let ct = chacha20poly1305::XChaCha20Poly1305::new(&key.into())
        .encrypt(&nonce.into(), Payload { msg: plain, aad })
        .map_err(|_| KeyError::Argon2("encryption failed".into()))?;
    use base64::Engine as _;
    Ok(SealedBody {
        version: 1,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: base64::engine::general_purpose::STANDARD.encode(ct),
    })
}

/// The bytes sealed by [`seal_with_passphrase`], or `None` (wrong passphrase, tampered).
pub fn unseal_with_passphrase(b: &SealedBody, pass: &str, aad: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    if b.version != 1 {
        return None;
    }
    let salt = hex::decode(&b.salt).ok()?;
    let nonce: [u8; 24] = hex::decode(&b.nonce).ok()?.try_into().ok()?;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(&b.ciphertext)
        .ok()?;
    let key = GroupKey::argon2id(pass, &salt).ok()?;
    chacha20poly1305::XChaCha20Poly1305::new(&key.into())
        .decrypt(&nonce.into(), Payload { msg: &ct, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_keyring_round_trips_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let mut k = Keyring::load(d.path()).unwrap();
        let id = Identity::generate();
        k.add_identity("alice", &id).unwrap();
        assert!(matches!(
            k.add_identity("alice", &id),
            Err(KeyringError::Exists { .. })
        ));
        assert!(matches!(
            k.add_identity("no spaces", &id),
            Err(KeyringError::BadName)
        ));
        let g = GroupKey::generate();
        k.add_group("club", &g, "random").unwrap();
        k.save().unwrap();
        let mode = std::fs::metadata(d.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k = Keyring::load(d.path()).unwrap();
        assert_eq!(k.identity("alice").unwrap().public(), id.public());
        assert_eq!(k.group("club").unwrap(), g);
        assert!(matches!(k.group("none"), Err(KeyringError::NoGroup(_))));
    }

    #[test]
    fn edits_from_many_writers_at_once_are_all_kept() {
        let d = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let dir = d.path().to_path_buf();
                std::thread::spawn(move || {
                    for j in 0..5 {
                        Keyring::edit(&dir, |k| k.new_group(&format!("g{i}-{j}"))).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let k = Keyring::load(d.path()).unwrap();
        assert_eq!(k.groups.len(), 40, "lost updates: {:?}", k.groups.keys());
        // A failed edit saves nothing.
        let before = std::fs::read(d.path().join(KEYRING_FILE)).unwrap();
        let e = Keyring::edit(d.path(), |k| {
            k.new_group("late")?;
            k.join_group("both", Some("p"), Some("i"))
        });
        assert!(matches!(e, Err(KeyringError::JoinHow)));
        assert_eq!(std::fs::read(d.path().join(KEYRING_FILE)).unwrap(), before);
    }

    #[test]
    fn an_encrypted_keyring_opens_only_with_its_passphrase() {
        // One test touches the environment variable, so no other test races it.
        let d = tempfile::tempdir().unwrap();
        let mut k = Keyring::load(d.path()).unwrap();
        let id = Identity::generate();
        k.add_identity("alice", &id).unwrap();
        assert!(matches!(
            k.set_passphrase(Some(String::new())),
            Err(KeyringError::EmptyPassphrase)
        ));
        k.set_passphrase(Some("correct horse".into())).unwrap();
        k.save().unwrap();
        let raw = std::fs::read_to_string(d.path().join(KEYRING_FILE)).unwrap();
        assert!(raw.contains("\"encrypted\""));
        assert!(!raw.contains("bumpsec"), "a secret is in the clear: {raw}");
        assert!(!raw.contains("alice"), "a name is in the clear: {raw}");
        std::env::remove_var(PASSPHRASE_ENV);
        assert!(matches!(
            Keyring::load(d.path()),
            Err(KeyringError::Locked(_))
        ));
        std::env::set_var(PASSPHRASE_ENV, "wrong horse");
        assert!(matches!(
            Keyring::load(d.path()),
            Err(KeyringError::BadPassphrase(_))
        ));
        std::env::set_var(PASSPHRASE_ENV, "correct horse");
        let mut k = Keyring::load(d.path()).unwrap();
        assert!(k.is_encrypted());
        assert_eq!(k.identity("alice").unwrap().public(), id.public());
        // Unlocked: the clear form again, readable without the variable.
        k.set_passphrase(None).unwrap();
        k.save().unwrap();
        std::env::remove_var(PASSPHRASE_ENV);
        let k = Keyring::load(d.path()).unwrap();
        assert!(!k.is_encrypted());
        assert_eq!(k.identity("alice").unwrap().public(), id.public());
    }
}
