//! RPC authentication, as namecoind does it: HTTP Basic auth against a random cookie written
//! to the datadir at every start, or a configured rpcuser/rpcpassword.
//!
//! Requests without valid credentials get HTTP 401 with an empty body before they reach the
//! JSON-RPC layer. Credentials are compared in constant time and never logged.

use base64::Engine as _;
use http::{header, Request, Response, StatusCode};
use jsonrpsee::server::HttpBody;
use rand::RngCore;
use std::io::Write;
use std::path::Path;
use subtle::ConstantTimeEq;

use crate::config::COOKIE_USER;

/// The `Authorization` header values a server accepts.
#[derive(Clone)]
pub struct Credentials {
    accepted: Vec<Vec<u8>>,
}

/// `Basic base64(user:password)`.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Credentials {
    pub fn new(pairs: &[(String, String)]) -> Credentials {
        Credentials {
            accepted: pairs
                .iter()
                .map(|(u, p)| basic_header(u, p).into_bytes())
                .collect(),
        }
    }

    pub fn check(&self, header_value: Option<&[u8]>) -> bool {
        let Some(v) = header_value else { return false };
        // Fold with `|` so every candidate is compared whatever matched.
        self.accepted
            .iter()
            .fold(false, |ok, a| ok | bool::from(a.as_slice().ct_eq(v)))
    }

    /// tower-http validator: pass or answer 401 with an empty body.
    pub fn validator<B>(
        self,
    ) -> impl FnMut(&mut Request<B>) -> Result<(), Response<HttpBody>> + Clone {
        move |req: &mut Request<B>| {
            if self.check(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            ) {
                return Ok(());
            }
            let mut resp = Response::new(HttpBody::empty());
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
            );
            Err(resp)
        }
    }
}

/// Write a fresh cookie file (`__cookie__:<64 hex>`, mode 0600) and return the password.
pub fn write_cookie(path: &Path) -> std::io::Result<String> {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let password = hex::encode(secret);
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(format!("{COOKIE_USER}:{password}").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(password)
}

/// Read a cookie file into (user, password).
pub fn read_cookie(path: &Path) -> std::io::Result<(String, String)> {
    let text = std::fs::read_to_string(path)?;
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "cookie file is malformed",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cookie");
        let pw = write_cookie(&path).unwrap();
        assert_eq!(pw.len(), 64);
        let (u, p) = read_cookie(&path).unwrap();
        assert_eq!((u.as_str(), p.as_str()), (COOKIE_USER, pw.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let c = Credentials::new(&[(u.clone(), p.clone()), ("alice".into(), "pw".into())]);
        assert!(c.check(Some(basic_header(&u, &p).as_bytes())));
        assert!(c.check(Some(basic_header("alice", "pw").as_bytes())));
        assert!(!c.check(Some(basic_header("alice", "wrong").as_bytes())));
        assert!(!c.check(None));
        // A second write makes a new secret.
        assert_ne!(write_cookie(&path).unwrap(), pw);
    }
}
