//! The Speak Easy web server (docs/speakeasy.md §7): server-rendered pages on 127.0.0.1,
//! usable without JavaScript, with one small script of ours for live updates (SSE).
//!
//! Web security, all enforced here, before any page handler runs:
//! - it listens on loopback only, and a request whose `Host` is not this server's loopback
//!   address and port is refused (DNS rebinding);
//! - `/login?token=…` takes the one-time token printed at start (compared in constant time,
//!   then spent) and sets an `HttpOnly; SameSite=Strict` session cookie; nothing else is
//!   served without that cookie;
//! - every form carries the session's CSRF token, checked on every POST, and a POST whose
//!   `Origin` is another site's is refused;
//! - every response has a strict Content-Security-Policy (only our own script and style,
//!   no inline script, no frames), `nosniff`, `Referrer-Policy: same-origin` (with `no-referrer` browsers send `Origin: null` on our own forms), `no-store`;
//! - every piece of user text is escaped by the template engine (maud), never marked safe.

mod pages;

use super::app::App;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "se_session";
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Login token and sessions.
pub struct Gate {
    /// The one-time login token; `None` once spent.
    token: Mutex<Option<String>>,
    /// Session id → its CSRF token.
    sessions: Mutex<HashMap<String, String>>,
    /// Host header values accepted.
    hosts: Vec<String>,
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

impl Gate {
    pub fn new(addr: SocketAddr) -> (Gate, String) {
        let token = random_token();
        let port = addr.port();
        let hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            addr.to_string(),
        ];
        (
            Gate {
                token: Mutex::new(Some(token.clone())),
                sessions: Mutex::new(HashMap::new()),
                hosts,
            },
            token,
        )
    }

    fn spend(&self, given: &str) -> Option<(String, String)> {
        let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
        let ok = t
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes())));
        if !ok {
            return None;
        }
        *t = None;
        let (sid, csrf) = (random_token(), random_token());
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.clone(), csrf.clone());
        Some((sid, csrf))
    }

    fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let sid = cookie(headers, COOKIE)?;
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.iter()
            .find(|(k, _)| bool::from(k.as_bytes().ct_eq(sid.as_bytes())))
            .map(|(_, v)| v.clone())
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[derive(Clone)]
pub struct Web {
    pub app: Arc<App>,
    pub gate: Arc<Gate>,
}

/// The page a request is for, with its session's CSRF token.
pub struct Session {
    pub csrf: String,
}

fn refuse(code: StatusCode, why: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why.to_string(),
    )
        .into_response()
}

async fn guard(State(w): State<Web>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let mut resp = if !w.gate.hosts.iter().any(|h| h == host) {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only on its loopback address (Host header refused)",
        )
    } else if req.method() == axum::http::Method::POST
        && headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| !w.gate.hosts.iter().any(|h| o == format!("http://{h}")))
    {
        refuse(StatusCode::FORBIDDEN, "cross-site request refused")
    } else {
        let path = req.uri().path();
        let open = path == "/login" || path == "/favicon.ico" || path.starts_with("/static/");
        match w.gate.csrf_of(headers) {
            Some(csrf) => {
                req.extensions_mut().insert(Arc::new(Session { csrf }));
                next.run(req).await
            }
            None if open => next.run(req).await,
            None => refuse(
                StatusCode::UNAUTHORIZED,
                "not logged in: open the URL with the login token that `bump speakeasy` printed",
            ),
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

async fn login(State(w): State<Web>, Query(q): Query<LoginQuery>) -> Response {
    match q.token.as_deref().and_then(|t| w.gate.spend(t)) {
        Some((sid, _)) => {
            let c = format!("{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/");
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "that login token is wrong or already used: restart `bump speakeasy` for a new one",
        ),
    }
}

async fn static_file(Path(name): Path<String>) -> Response {
    let (body, ty) = match name.as_str() {
        "se.css" => (include_str!("static/se.css"), "text/css; charset=utf-8"),
        "se.js" => (
            include_str!("static/se.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return refuse(StatusCode::NOT_FOUND, "no such file"),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn events(State(w): State<Web>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = w.app.changed.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        // Only changes after the page loaded (the first value is what it shows).
        rx.changed().await.ok()?;
        // Let a burst of changes settle into one event.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let v = *rx.borrow_and_update();
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().data(v.to_string())),
            rx,
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Every POST form has this field.
#[derive(Deserialize)]
pub struct Csrf {
    pub csrf: String,
}

#[allow(clippy::result_large_err)] // the error is the refusal page itself
pub fn check_csrf(s: &Session, given: &str) -> Result<(), Response> {
    if bool::from(s.csrf.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is wrong: reload the page and try again",
        ))
    }
}

pub fn router(w: Web) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/static/{name}", get(static_file))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/events", get(events))
        .route("/", get(pages::dashboard))
        .route("/network", post(pages::create_network))
        .route("/join", get(pages::join_page).post(pages::join))
        .route("/join/start", post(pages::start_join))
        .route("/settings", get(pages::settings))
        .route("/n/{net}", get(pages::network))
        .route("/n/{net}/compartment", post(pages::add_compartment))
        .route("/n/{net}/c/{c}", get(pages::compartment))
        .route("/n/{net}/t/{root}", get(pages::thread))
        .route("/n/{net}/post", post(pages::post))
        .route("/n/{net}/attach", post(pages::attach))
        .route("/n/{net}/a/{item}", get(pages::download))
        .route("/n/{net}/members", get(pages::members))
        .route("/n/{net}/invite", post(pages::invite))
        .route("/n/{net}/remove", post(pages::remove))
        .route("/n/{net}/search", get(pages::search))
        .route("/n/{net}/dm", get(pages::dms).post(pages::send_dm))
        .route("/n/{net}/dm/{other}", get(pages::conversation))
        .layer(axum::middleware::from_fn_with_state(w.clone(), guard))
        .with_state(w)
}

/// Serve until the process ends. `addr` must be a loopback address.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<(
    String,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other("Speak Easy listens on loopback only"));
    }
    let (gate, token) = Gate::new(addr);
    let w = Web {
        app,
        gate: Arc::new(gate),
    };
    let url = format!("http://{addr}/login?token={token}");
    let fut = async move { axum::serve(listener, router(w)).await };
    Ok((url, fut))
}

/// Used by the forms: a form value parsed as 16 bytes of hex.
pub fn id16(s: &str) -> Option<[u8; 16]> {
    hex::decode(s.trim()).ok()?.try_into().ok()
}
