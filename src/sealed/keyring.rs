//! The keyring: this user's identities and groups, in `DATADIR/<net>/keyring.json` (mode
//! 0600, written atomically). Secrets are kept in their printable forms (`bumpsec1…`,
//! `bumpgrp1…`). It is read by the `bump id`, `bump group`, sealed `send`/`get` and `inbox`
//! commands; the node never sees it.

use super::keys::{GroupKey, Identity, KeyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const KEYRING_FILE: &str = "keyring.json";

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
        let mut k = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Keyring>(&bytes).map_err(|err| KeyringError::Json {
                    path: path.clone(),
                    err,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keyring::default(),
            Err(err) => return Err(KeyringError::Io { path, err }),
        };
        k.path = path;
        Ok(k)
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
        let json = serde_json::to_vec_pretty(self).map_err(|err| KeyringError::Json {
            path: self.path.clone(),
            err,
        })?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
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
}
