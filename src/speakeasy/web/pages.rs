//! The pages of Speak Easy: dashboard, network (compartments by clearance), compartment
//! (boards and threads), thread, members and invites, join, search — and the form handlers.
//! Every value shown is escaped by maud (`(expr)` escapes); nothing user-given is ever
//! `PreEscaped`. A POST handler checks the CSRF token first, then acts, then answers with a
//! redirect (303) to the page that shows the result, or with an error page saying why.

// Handlers answer an error with the page that says it: a `Response` is the error type here.
#![allow(clippy::result_large_err)]

use super::{check_csrf, id16, Session, Web};
use crate::sealed::keys::PublicId;
use crate::speakeasy::app::{App, Inner};
use crate::speakeasy::forum::{short_id, Forum, Keys, Line};
use crate::speakeasy::post::ItemId;
use crate::speakeasy::tree::CompartmentId;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use std::sync::Arc;

type Sess = Extension<Arc<Session>>;

fn layout(app: &App, title: &str, body: Markup) -> Markup {
    let g = app.lock();
    let health = match (&g.node_error, &g.node_status) {
        (Some(e), _) => html! { span.badge.warn { "node: " (e) } },
        (None, Some(s)) => html! {
            "node " (s.network) " · " (s.packets) " packets · "
            (s.p2p.as_ref().map(|p| p.peers).unwrap_or(0)) " peers · "
            (g.subscribed) " tags read"
        },
        (None, None) => html! { "connecting to the node…" },
    };
    drop(g);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Speak Easy" }
                link rel="stylesheet" href="/static/se.css";
                script src="/static/se.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Speak Easy" }
                    a href="/" { "Networks" }
                    a href="/join" { "Join" }
                    a href="/settings" { "Settings" }
                    span.health.live #health { (health) }
                }
                main { (body) }
                div #live .notice { "New activity: reload the page to see all of it." }
            }
        }
    }
}

fn page(app: &App, title: &str, body: Markup) -> Response {
    layout(app, title, body).into_response()
}

fn error_page(app: &App, code: StatusCode, msg: &str) -> Response {
    (
        code,
        layout(
            app,
            "Error",
            html! {
                h1 { "That did not work" }
                div.notice { (msg) }
                p { a href="/" { "Back to the networks" } }
            },
        ),
    )
        .into_response()
}

fn bad(app: &App, msg: impl std::fmt::Display) -> Response {
    error_page(app, StatusCode::BAD_REQUEST, &msg.to_string())
}

/// The Tau choice of a compose form.
fn tau_select() -> Markup {
    html! {
        label { "Mixing"
            select name="tau" {
                option value="" selected { "node default (standard, through mixes when the node has them)" }
                option value="low" { "low: a small crowd, short delays" }
                option value="standard" { "standard" }
                option value="high" { "high: a larger crowd, longer delays" }
                option value="none" { "through mixes, no waiting" }
                option value="unmixed" { "unmixed: straight to the bus (your node is seen sending)" }
            }
        }
    }
}

/// The routing a compose form asked for.
fn route(app: &App, choice: &str) -> Result<crate::speakeasy::app::SendOpts, Response> {
    use crate::speakeasy::app::SendOpts;
    match choice.trim() {
        "" => Ok(app.opts.clone()),
        "unmixed" => Ok(SendOpts {
            tau: Some("none".into()),
            hops: Some(0),
        }),
        t @ ("none" | "low" | "standard" | "high") => Ok(SendOpts {
            tau: Some(t.into()),
            hops: app.opts.hops,
        }),
        _ => Err(bad(app, "unknown mixing choice")),
    }
}

fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// The network of a path, or an error page.
fn with_net<T>(
    w: &Web,
    net: &str,
    f: impl FnOnce(&Inner, &Keys, &Forum) -> T,
) -> Result<T, Response> {
    let id = id16(net).ok_or_else(|| bad(&w.app, "not a network id"))?;
    let g = w.app.lock();
    match g.network(&id) {
        Some((_, k, fo)) => Ok(f(&g, k, fo)),
        None => Err(error_page(
            &w.app,
            StatusCode::NOT_FOUND,
            "no such network here",
        )),
    }
}

fn net_id(w: &Web, net: &str) -> Result<[u8; 16], Response> {
    id16(net).ok_or_else(|| bad(&w.app, "not a network id"))
}

/// A network id and a compartment id from a form, or the error page for the first bad one.
fn net_and_compartment(w: &Web, net: &str, c: &str) -> Result<([u8; 16], CompartmentId), Response> {
    Ok((net_id(w, net)?, comp_id(w, c)?))
}

fn comp_id(w: &Web, c: &str) -> Result<CompartmentId, Response> {
    id16(c)
        .map(CompartmentId)
        .ok_or_else(|| bad(&w.app, "not a compartment id"))
}

fn path_names(k: &Keys, c: &CompartmentId) -> String {
    k.tree
        .path(c)
        .map(|p| {
            p.iter()
                .filter_map(|x| k.tree.get(x).ok().map(|n| n.name.clone()))
                .collect::<Vec<_>>()
                .join(" › ")
        })
        .unwrap_or_default()
}

fn net_nav(k: &Keys) -> Markup {
    let n = hex::encode(k.network);
    html! {
        p.muted {
            a href={"/n/" (n)} { (k.name) } " · "
            a href={"/n/" (n) "/members"} { "Members and invites" } " · "
            a href={"/n/" (n) "/dm"} { "Private messages" } " · "
            "you are " strong { (k.my_name) } " (" (short_id(&k.me.public())) "), cleared at "
            strong { (path_names(k, &k.clearance.at)) }
            " (epoch " (k.clearance.epoch) ")"
        }
    }
}

/// Locks the app: call before [`with_net`], never inside it.
fn mixing_notice(app: &App) -> Markup {
    let g = app.lock();
    let unmixed = g.last_hops == Some(0);
    drop(g);
    html! {
        @if unmixed {
            div.notice { "Posts from here go out without mixing: the node has no mixes to route through. Anyone watching the network can see that this node sent them (never what they say)." }
        }
    }
}

// ----- dashboard -----

pub async fn dashboard(State(w): State<Web>, Extension(s): Sess) -> Response {
    let g = w.app.lock();
    let nets: Vec<(String, String, String, usize, u32)> = g
        .state
        .networks
        .iter()
        .zip(&g.forums)
        .map(|(k, f)| {
            let unread = k
                .tree
                .subtree(&k.clearance.at)
                .iter()
                .map(|c| f.unread_in(c))
                .sum();
            (
                hex::encode(k.network),
                k.name.clone(),
                path_names(k, &k.clearance.at),
                unread,
                k.clearance.epoch,
            )
        })
        .collect();
    let pending = g.state.pending.len();
    drop(g);
    let body = html! {
        h1 { "Your networks" }
        @if nets.is_empty() {
            p { "You are in no network yet. Start one below, or " a href="/join" { "join one" } " with an invite." }
        }
        div.live #nets { @for (id, name, at, unread, epoch) in &nets {
            section {
                a href={"/n/" (id)} { strong { (name) } }
                " " span.badge.unread[*unread > 0] { (unread) " unread" }
                div.muted { "cleared at " (at) " · epoch " (epoch) }
            }
        } }
        @if pending > 0 {
            p.muted { (pending) " join request(s) waiting for an invite: see " a href="/join" { "Join" } "." }
        }
        h2 { "Start a network" }
        form.stack method="post" action="/network" {
            (csrf_field(&s))
            label { "Network name" input type="text" name="name" required maxlength="64"; }
            label { "Top compartment" input type="text" name="root" value="all" required maxlength="64"; }
            label { "Your name in it" input type="text" name="my_name" required maxlength="64"; }
            button type="submit" { "Create network" }
        }
    };
    page(&w.app, "Networks", body)
}

#[derive(Deserialize)]
pub struct NewNetwork {
    csrf: String,
    name: String,
    root: String,
    my_name: String,
}

pub async fn create_network(
    State(w): State<Web>,
    Extension(s): Sess,
    Form(f): Form<NewNetwork>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    match w
        .app
        .create_network(f.name.trim(), f.root.trim(), f.my_name.trim())
        .await
    {
        Ok(id) => Redirect::to(&format!("/n/{}", hex::encode(id))).into_response(),
        Err(e) => bad(&w.app, e),
    }
}

// ----- joining -----

pub async fn join_page(State(w): State<Web>, Extension(s): Sess) -> Response {
    let pending: Vec<(String, String)> = w
        .app
        .lock()
        .state
        .pending
        .iter()
        .map(|p| (p.my_name.clone(), p.me.public().to_string_id()))
        .collect();
    let body = html! {
        h1 { "Join a network" }
        p { "Joining takes two steps: make a pseudonym for the network here, give its string to a member who can invite you, then take their invite. An invite sent over the bus arrives by itself; one given to you by other means can be pasted below." }
        section {
            h2 { "1. A pseudonym for the new network" }
            form.stack method="post" action="/join/start" {
                (csrf_field(&s))
                label { "Your name in the network" input type="text" name="my_name" required maxlength="64"; }
                button type="submit" { "Make a pseudonym" }
            }
            div.live #pending { @for (name, id) in &pending {
                p { "Waiting for an invite for " strong { (name) } ": give this string to whoever invites you:" }
                code.id { (id) }
            } }
        }
        section {
            h2 { "2. Take an invite" }
            form.stack method="post" action="/join" {
                (csrf_field(&s))
                label { "Invite string (bumpse1:…)" textarea name="invite" required {} }
                button type="submit" { "Join" }
            }
        }
    };
    page(&w.app, "Join", body)
}

#[derive(Deserialize)]
pub struct StartJoin {
    csrf: String,
    my_name: String,
}

pub async fn start_join(
    State(w): State<Web>,
    Extension(s): Sess,
    Form(f): Form<StartJoin>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    match w.app.start_join(f.my_name.trim()) {
        Ok(_) => Redirect::to("/join").into_response(),
        Err(e) => bad(&w.app, e),
    }
}

#[derive(Deserialize)]
pub struct Join {
    csrf: String,
    invite: String,
}

pub async fn join(State(w): State<Web>, Extension(s): Sess, Form(f): Form<Join>) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    match w.app.join(&f.invite).await {
        Ok(id) => Redirect::to(&format!("/n/{}", hex::encode(id))).into_response(),
        Err(e) => bad(&w.app, e),
    }
}

// ----- network: the tree -----

fn tree_markup(k: &Keys, f: &Forum, at: &CompartmentId) -> Markup {
    let n = hex::encode(k.network);
    let node = k.tree.get(at).ok();
    let readable = k.cleared_for(at);
    let mut kids = k.tree.children(at);
    kids.sort_by_key(|c| k.tree.get(c).map(|x| x.name.clone()).unwrap_or_default());
    html! {
        li {
            @if let Some(c) = node {
                @if readable {
                    a href={"/n/" (n) "/c/" (c.id.to_hex())} { (c.name) }
                    " " span.badge.unread[f.unread_in(at) > 0] { (f.unread_in(at)) }
                    " " span.muted { "epoch " (c.epoch) }
                } @else {
                    span.locked { (c.name) " (above your clearance)" }
                }
            }
            @if !kids.is_empty() {
                ul.tree { @for c in &kids { (tree_markup(k, f, c)) } }
            }
        }
    }
}

pub async fn network(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
) -> Response {
    let r = with_net(&w, &net, |_, k, f| {
        let mut readable: Vec<(String, String)> = k
            .tree
            .subtree(&k.clearance.at)
            .iter()
            .map(|c| (c.to_hex(), path_names(k, c)))
            .collect();
        readable.sort_by(|a, b| a.1.cmp(&b.1));
        html! {
            h1 { (k.name) }
            (net_nav(k))
            section {
                h2 { "Compartments" }
                ul.tree.live #tree { (tree_markup(k, f, &k.tree.root())) }
                p.muted { "You read and write the compartments you are cleared at and below; those above are shown only as the path to yours." }
            }
            section {
                h2 { "Search your compartments" }
                form.stack method="get" action={"/n/" (net) "/search"} {
                    input type="text" name="q" required;
                    button type="submit" { "Search" }
                }
            }
            section {
                h2 { "New compartment" }
                form.stack method="post" action={"/n/" (net) "/compartment"} {
                    (csrf_field(&s))
                    label { "Under" select name="parent" { @for (id, name) in &readable { option value=(id) { (name) } } } }
                    label { "Name (letters, digits, - and _)" input type="text" name="name" required maxlength="64"; }
                    button type="submit" { "Create" }
                }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Network", body),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct NewCompartment {
    csrf: String,
    parent: String,
    name: String,
}

pub async fn add_compartment(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    Form(f): Form<NewCompartment>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    let (id, parent) = match net_and_compartment(&w, &net, &f.parent) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match w.app.add_compartment(&id, parent, f.name.trim()).await {
        Ok(c) => Redirect::to(&format!("/n/{net}/c/{}", c.to_hex())).into_response(),
        Err(e) => bad(&w.app, e),
    }
}

// ----- compartment: boards and threads -----

#[derive(Deserialize)]
pub struct BoardQuery {
    board: Option<String>,
    /// Page of the thread list, from 1.
    page: Option<usize>,
}

/// Threads listed per page of a board.
pub const THREADS_PER_PAGE: usize = 50;

pub async fn compartment(
    State(w): State<Web>,
    Extension(s): Sess,
    Path((net, c)): Path<(String, String)>,
    Query(q): Query<BoardQuery>,
) -> Response {
    let c = match comp_id(&w, &c) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let notice = mixing_notice(&w.app);
    let r = with_net(&w, &net, |g, k, f| {
        if !k.cleared_for(&c) {
            return None;
        }
        let boards = f.boards(&c);
        let board = q
            .board
            .clone()
            .or_else(|| boards.keys().next().cloned())
            .unwrap_or_else(|| "general".to_string());
        let all_threads = f.threads(&c, &board);
        let pages = all_threads.len().div_ceil(THREADS_PER_PAGE).max(1);
        let page_no = q.page.unwrap_or(1).clamp(1, pages);
        let threads: Vec<_> = all_threads
            .iter()
            .skip((page_no - 1) * THREADS_PER_PAGE)
            .take(THREADS_PER_PAGE)
            .collect();
        let board_url = format!("/n/{net}/c/{}?board={}", c.to_hex(), urlencode(&board));
        let waiting: Vec<&str> = g
            .sent
            .values()
            .filter_map(|s| s.preview.as_ref().filter(|_| !s.published))
            .filter(|(n, pc, t, _)| *n == k.network && *pc == c && f.post(t).is_none())
            .map(|(_, _, _, text)| text.as_str())
            .collect();
        let mut kids = k.tree.children(&c);
        kids.sort();
        let name = k.tree.get(&c).map(|x| x.name.clone()).unwrap_or_default();
        Some(html! {
            h1 { (path_names(k, &c)) }
            (net_nav(k))
            (notice)
            @if !kids.is_empty() {
                p { "Below: " @for x in &kids {
                    @if let Ok(n) = k.tree.get(x) { a href={"/n/" (net) "/c/" (x.to_hex())} { (n.name) } " " }
                } }
            }
            section.live #boards {
                h2 { "Boards" }
                @if boards.is_empty() { p.muted { "No posts here yet." } }
                @for (b, unread) in &boards {
                    a href={"/n/" (net) "/c/" (c.to_hex()) "?board=" (urlencode(b))} { (b) }
                    " " span.badge.unread[*unread > 0] { (unread) } " "
                }
            }
            section.live #threads {
                h2 { "Board " (board) " in " (name) }
                @if threads.is_empty() && waiting.is_empty() { p.muted { "No threads yet." } }
                table {
                    @for t in &threads {
                        tr {
                            td {
                                a href={"/n/" (net) "/t/" (t.root.to_hex())} {
                                    @match t.first {
                                        Some(p) if !p.title.is_empty() => { (p.title) }
                                        Some(_) => { "(no title)" }
                                        None => { "(first post not arrived yet)" }
                                    }
                                }
                            }
                            td { (t.posts) " posts" }
                            td { span.badge.unread[t.unread > 0] { (t.unread) " unread" } }
                            td.muted { @if let Some(p) = t.first { (f.name_of(&p.author)) } }
                        }
                    }
                }
                @if pages > 1 {
                    p.pages {
                        "Page " (page_no) " of " (pages) " (" (all_threads.len()) " threads, most recently active first): "
                        @if page_no > 1 { a href={(board_url) "&page=" (page_no - 1)} { "newer" } " " }
                        @if page_no < pages { a href={(board_url) "&page=" (page_no + 1)} { "older" } }
                    }
                }
                @for text in &waiting {
                    p.muted { "Waiting in mixes: " (excerpt(text)) }
                }
            }
            section {
                h2 { "New thread" }
                form.stack method="post" action={"/n/" (net) "/post"} {
                    (csrf_field(&s))
                    input type="hidden" name="compartment" value=(c.to_hex());
                    label { "Board" input type="text" name="board" value=(board) required maxlength="64"; }
                    label { "Title" input type="text" name="title" maxlength="200"; }
                    label { "Text" textarea name="text" required {} }
                    (tau_select())
                    button type="submit" { "Post to " (name) }
                }
            }
        })
    });
    match r {
        Ok(Some(body)) => page(&w.app, "Compartment", body),
        Ok(None) => error_page(
            &w.app,
            StatusCode::FORBIDDEN,
            "not cleared for that compartment",
        ),
        Err(r) => r,
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(80).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

/// A sealed timestamp as a UTC date and time (civil-from-days, proleptic Gregorian).
fn time(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_dates() {
        assert_eq!(super::time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::time(1_796_310_000), "2026-12-03 15:00 UTC");
    }
}

// ----- thread -----

pub async fn thread(
    State(w): State<Web>,
    Extension(s): Sess,
    Path((net, root)): Path<(String, String)>,
) -> Response {
    let Some(root) = id16(&root).map(ItemId) else {
        return bad(&w.app, "not a thread id");
    };
    let Ok(id) = net_id(&w, &net) else {
        return bad(&w.app, "not a network id");
    };
    {
        let mut g = w.app.lock();
        if let Some(i) = g.state.networks.iter().position(|k| k.network == id) {
            g.forums[i].mark_read(&root);
        }
    }
    let notice = mixing_notice(&w.app);
    let r = with_net(&w, &net, |g, k, f| {
        let lines = f.thread(&root);
        let first = f.post(&root);
        let c = first.map(|p| p.compartment);
        let board = first.map(|p| p.board.clone()).unwrap_or_default();
        let me = k.me.public();
        let waiting: Vec<&str> = g
            .sent
            .values()
            .filter(|s| !s.published)
            .filter_map(|s| s.preview.as_ref())
            .filter(|(n, _, t, _)| *n == k.network && *t == root)
            .map(|(_, _, _, text)| text.as_str())
            .collect();
        let status = |id: &ItemId| -> Option<String> {
            g.sent.get(id).map(|s| {
                let seen = match s.holders {
                    Some(n) => format!(", seen on {n} peer{}", if n == 1 { "" } else { "s" }),
                    None => String::new(),
                };
                match (s.published, s.hops) {
                    (true, 0) => format!("published (without mixing){seen}"),
                    (true, h) => format!("published through {h} mixes{seen}"),
                    (false, _) => "waiting in mixes".to_string(),
                }
            })
        };
        html! {
            h1 { @match first { Some(p) if !p.title.is_empty() => { (p.title) }, _ => { "Thread" } } }
            (net_nav(k))
            @if let Some(c) = c {
                p.muted { "in " a href={"/n/" (net) "/c/" (c.to_hex()) "?board=" (urlencode(&board))} { (path_names(k, &c)) " › " (board) } }
            }
            (notice)
            div.live #posts {
            @for l in &lines {
                @match l {
                    Line::Post { post, depth } => {
                        div class={"post d" ((*depth).min(8)) @if post.author == me { " mine" }} id={"p" (post.id.to_hex())} {
                            div.muted {
                                strong { (f.name_of(&post.author)) } " · " (time(post.time))
                                " · epoch " (post.epoch)
                                @if let Some(st) = status(&post.id) { " · " (st) }
                            }
                            @if let Some((name, size)) = &post.file {
                                div.body { "Attachment: " a.file href={"/n/" (net) "/a/" (post.id.to_hex())} { (name) } " (" (size) " bytes)" }
                            } @else {
                                div.body { (post.text) }
                            }
                            details {
                                summary { "Reply" }
                                form.stack method="post" action={"/n/" (net) "/post"} {
                                    (csrf_field(&s))
                                    input type="hidden" name="compartment" value=(post.compartment.to_hex());
                                    input type="hidden" name="board" value=(post.board);
                                    input type="hidden" name="parent" value=(post.id.to_hex());
                                    textarea name="text" required {}
                                    (tau_select())
                                    button type="submit" { "Reply" }
                                }
                            }
                        }
                    }
                    Line::Missing { depth, .. } => {
                        div class={"post missing d" ((*depth).min(8))} { "A post not yet arrived (replies to it are below)." }
                    }
                }
            }
            @for text in &waiting {
                div.post.mine.d1 { div.muted { "Yours, waiting in mixes" } div.body { (text) } }
            }
            }
            @if let Some(first) = first {
                section {
                    h2 { "Attach a file" }
                    p.muted { "Sealed like a post, up to " (crate::speakeasy::post::MAX_FILE / 1024) " KiB; readers download it, it is never shown in the page." }
                    form.stack method="post" action={"/n/" (net) "/attach"} enctype="multipart/form-data" {
                        (csrf_field(&s))
                        input type="hidden" name="compartment" value=(first.compartment.to_hex());
                        input type="hidden" name="board" value=(first.board);
                        input type="hidden" name="parent" value=(first.id.to_hex());
                        input type="file" name="file" required;
                        (tau_select())
                        button type="submit" { "Attach" }
                    }
                }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Thread", body),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct NewPost {
    csrf: String,
    compartment: String,
    board: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    title: String,
    text: String,
    #[serde(default)]
    tau: String,
}

pub async fn post(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    Form(f): Form<NewPost>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    let (id, c) = match net_and_compartment(&w, &net, &f.compartment) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parent = match f.parent.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match id16(p) {
            Some(b) => Some(ItemId(b)),
            None => return bad(&w.app, "not a post id"),
        },
    };
    let opts = match route(&w.app, &f.tau) {
        Ok(o) => o,
        Err(r) => return r,
    };
    // Browsers send CR LF in text areas; keep the text as typed, with LF.
    let text = f.text.replace("\r\n", "\n");
    match w
        .app
        .post_with(&id, c, f.board.trim(), parent, f.title.trim(), &text, &opts)
        .await
    {
        Ok(pid) => {
            let thread = parent
                .and_then(|p| {
                    let g = w.app.lock();
                    g.network(&id)
                        .and_then(|(_, _, fo)| fo.post(&p).map(|x| x.thread()))
                })
                .unwrap_or(pid);
            Redirect::to(&format!("/n/{net}/t/{}", thread.to_hex())).into_response()
        }
        Err(e) => bad(&w.app, e),
    }
}

// ----- members -----

pub async fn members(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
) -> Response {
    members_page(&w, &s, &net, None)
}

/// The invite as a QR code (SVG in a data: URI, which the CSP allows for images), or `None`
/// when it does not fit in one.
fn qr_data_uri(text: &str) -> Option<String> {
    use base64::Engine as _;
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(320, 320)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

fn members_page(w: &Web, s: &Session, net: &str, invite: Option<String>) -> Response {
    let r = with_net(w, net, |_, k, f| {
        let mut rows: Vec<(PublicId, String, String, bool, bool)> = f
            .members
            .iter()
            .map(|(id, m)| {
                let removable = !m.removed
                    && *id != k.me.public()
                    && m.at != k.clearance.at
                    && k.cleared_for(&m.at);
                (
                    *id,
                    m.name.clone(),
                    path_names(k, &m.at),
                    m.removed,
                    removable,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.2.cmp(&b.2).then(a.1.cmp(&b.1)));
        let mut readable: Vec<(String, String)> = k
            .tree
            .subtree(&k.clearance.at)
            .iter()
            .map(|c| (c.to_hex(), path_names(k, c)))
            .collect();
        readable.sort_by(|a, b| a.1.cmp(&b.1));
        html! {
            h1 { "Members of " (k.name) }
            (net_nav(k))
            @if let Some(inv) = &invite {
                div.ok {
                    p { "Invite made. It was sent to the member's inbox over the bus; you can also give them this string yourself (it opens only with their pseudonym):" }
                    code.invite { (inv) }
                    @if let Some(src) = qr_data_uri(inv) {
                        p { "Or let them scan it:" }
                        img.qr src=(src) alt="QR code of the invite string";
                    }
                }
            }
            section {
                h2 { "Members you can see" }
                p.muted { "Members introduce themselves in the compartment they are cleared at; you see those at your clearance and below." }
                table.live #members {
                    tr { th { "Name" } th { "Pseudonym" } th { "Cleared at" } th {} }
                    @for (id, name, at, removed, removable) in &rows {
                        tr {
                            td { (if name.is_empty() { "?" } else { name }) }
                            td { code { (short_id(id)) } }
                            td { (at) }
                            td {
                                @if *removed { span.badge.warn { "removed" } }
                                @else if *removable {
                                    form.inline method="post" action={"/n/" (net) "/remove"} {
                                        (csrf_field(s))
                                        input type="hidden" name="member" value=(hex::encode(id.to_bytes()));
                                        button.danger type="submit" { "Remove and re-key" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Invite a member" }
                form.stack method="post" action={"/n/" (net) "/invite"} {
                    (csrf_field(s))
                    label { "Their pseudonym string (bumpid1…, from their Join page)" input type="text" name="to" required; }
                    label { "Their name" input type="text" name="name" required maxlength="64"; }
                    label { "Cleared at" select name="at" { @for (id, name) in &readable { option value=(id) { (name) } } } }
                    button type="submit" { "Make invite" }
                }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Members", body),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct Invite {
    csrf: String,
    to: String,
    name: String,
    at: String,
}

pub async fn invite(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    Form(f): Form<Invite>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    let (id, at) = match net_and_compartment(&w, &net, &f.at) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match w.app.invite(&id, &f.to, f.name.trim(), at).await {
        Ok(inv) => members_page(&w, &s, &net, Some(inv)),
        Err(e) => bad(&w.app, e),
    }
}

#[derive(Deserialize)]
pub struct Remove {
    csrf: String,
    member: String,
}

pub async fn remove(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    Form(f): Form<Remove>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    let id = match net_id(&w, &net) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let who = match member_key(&w, &f.member) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match w.app.remove(&id, &who).await {
        Ok(_) => Redirect::to(&format!("/n/{net}/members")).into_response(),
        Err(e) => bad(&w.app, e),
    }
}

// ----- search -----

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
}

pub async fn search(
    State(w): State<Web>,
    Extension(_s): Sess,
    Path(net): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let r = with_net(&w, &net, |_, k, f| {
        let hits = f.search(q.q.trim(), 100);
        html! {
            h1 { "Search: " (q.q) }
            (net_nav(k))
            @if hits.is_empty() { p.muted { "Nothing found in the posts you can read." } }
            @for p in &hits {
                div.post {
                    div.muted { (f.name_of(&p.author)) " in " (path_names(k, &p.compartment)) " › " (p.board) }
                    a href={"/n/" (net) "/t/" (p.thread().to_hex())} { (excerpt(&p.text)) }
                }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Search", body),
        Err(r) => r,
    }
}

// ----- private messages -----

pub async fn dms(State(w): State<Web>, Extension(s): Sess, Path(net): Path<String>) -> Response {
    let r = with_net(&w, &net, |_, k, f| {
        let me = k.me.public();
        let mut others: Vec<(PublicId, String)> = f
            .members
            .iter()
            .filter(|(id, m)| **id != me && !m.removed)
            .map(|(id, _)| (*id, f.name_of(id)))
            .collect();
        others.sort_by(|a, b| a.1.cmp(&b.1));
        html! {
            h1 { "Private messages" }
            (net_nav(k))
            section.live #conversations {
                @if f.dms.is_empty() { p.muted { "No private messages yet." } }
                table {
                    @for (other, msgs) in &f.dms {
                        @let unread = msgs.iter().filter(|m| f.dm_unread.contains(&m.id)).count();
                        tr {
                            td { a href={"/n/" (net) "/dm/" (hex::encode(other.to_bytes()))} { (f.name_of(other)) } }
                            td { (msgs.len()) " messages" }
                            td { span.badge.unread[unread > 0] { (unread) " unread" } }
                            td.muted { @if let Some(m) = msgs.last() { (excerpt(&m.text)) } }
                        }
                    }
                }
            }
            section {
                h2 { "New message" }
                p.muted { "Sealed to the member's pseudonym and to yours; only the two of you open it. It travels like every other packet, to inbox tags that many members share." }
                form.stack method="post" action={"/n/" (net) "/dm"} {
                    (csrf_field(&s))
                    label { "To" select name="to" { @for (id, name) in &others { option value=(hex::encode(id.to_bytes())) { (name) " (" (short_id(id)) ")" } } } }
                    label { "Text" textarea name="text" required {} }
                    (tau_select())
                    button type="submit" { "Send privately" }
                }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Private messages", body),
        Err(r) => r,
    }
}

fn member_key(w: &Web, hexkey: &str) -> Result<PublicId, Response> {
    hex::decode(hexkey.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| PublicId::from_bytes(&b).ok())
        .ok_or_else(|| bad(&w.app, "not a member key"))
}

pub async fn conversation(
    State(w): State<Web>,
    Extension(s): Sess,
    Path((net, other)): Path<(String, String)>,
) -> Response {
    let other = match member_key(&w, &other) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Some(id) = id16(&net) {
        let mut g = w.app.lock();
        if let Some(i) = g.state.networks.iter().position(|k| k.network == id) {
            g.forums[i].mark_dms_read(&other);
        }
    }
    let r = with_net(&w, &net, |_, k, f| {
        let me = k.me.public();
        let msgs = f.dms.get(&other).cloned().unwrap_or_default();
        html! {
            h1 { "With " (f.name_of(&other)) }
            (net_nav(k))
            div.live #messages {
                @if msgs.is_empty() { p.muted { "No messages yet." } }
                @for m in &msgs {
                    div class={"post" @if m.from == me { " mine" }} {
                        div.muted { strong { (f.name_of(&m.from)) } " · " (time(m.time)) }
                        div.body { (m.text) }
                    }
                }
            }
            form.stack method="post" action={"/n/" (net) "/dm"} {
                (csrf_field(&s))
                input type="hidden" name="to" value=(hex::encode(other.to_bytes()));
                label { "Message" textarea name="text" required {} }
                (tau_select())
                button type="submit" { "Send privately" }
            }
        }
    });
    match r {
        Ok(body) => page(&w.app, "Conversation", body),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct NewDm {
    csrf: String,
    to: String,
    text: String,
    #[serde(default)]
    tau: String,
}

pub async fn send_dm(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    Form(f): Form<NewDm>,
) -> Response {
    if let Err(r) = check_csrf(&s, &f.csrf) {
        return r;
    }
    let (id, to) = match (net_id(&w, &net), member_key(&w, &f.to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let opts = match route(&w.app, &f.tau) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let text = f.text.replace("\r\n", "\n");
    match w.app.send_dm_with(&id, &to, &text, &opts).await {
        Ok(_) => Redirect::to(&format!("/n/{net}/dm/{}", f.to.trim())).into_response(),
        Err(e) => bad(&w.app, e),
    }
}

// ----- settings -----

pub async fn settings(State(w): State<Web>, Extension(_s): Sess) -> Response {
    let app = &w.app;
    let sealed =
        std::env::var(crate::speakeasy::state::PASSPHRASE_ENV).is_ok_and(|p| !p.is_empty());
    let g = app.lock();
    let status = g.node_status.clone();
    let err = g.node_error.clone();
    let skipped = g.skipped.clone();
    let subscribed = g.subscribed;
    let last_hops = g.last_hops;
    let nets: Vec<(String, String, usize, usize)> = g
        .state
        .networks
        .iter()
        .zip(&g.forums)
        .map(|(k, f)| {
            (
                k.name.clone(),
                short_id(&k.me.public()),
                f.post_count(),
                k.past.len(),
            )
        })
        .collect();
    drop(g);
    let body = html! {
        h1 { "Settings and health" }
        section.live #node {
            h2 { "Node" }
            @if let Some(e) = &err { div.notice { (e) } }
            @if let Some(st) = &status {
                table {
                    tr { td { "network" } td { (st.network) } }
                    tr { td { "packets stored" } td { (st.packets) } }
                    @if let Some(p) = &st.p2p {
                        tr { td { "peers" } td { (p.peers) " (" (p.bump_peers) " BuMP)" } }
                    }
                    @if let Some(m) = &st.mix {
                        tr { td { "this node's mix pool" } td { (m.held) " held, " (m.released) " released" } }
                    }
                }
            } @else { p.muted { "No status from the node yet." } }
            p.muted { "RPC at " (app.target.addr) " · " (subscribed) " tags read" }
        }
        section {
            h2 { "Sending" }
            p { "Default mixing: " strong { (app.opts.tau.clone().unwrap_or_else(|| "the node's (standard)".into())) }
                ", mixes per post: " strong { (app.opts.hops.map(|h| h.to_string()).unwrap_or_else(|| "the node's".into())) }
                " (" code { "bump speakeasy --tau --hops" } "). Each compose form can choose otherwise." }
            @match last_hops {
                Some(0) => { div.notice { "The last post went out unmixed." } }
                Some(h) => { p.muted { "The last post went through " (h) " mixes." } }
                None => {}
            }
        }
        section {
            h2 { "Keys at rest" }
            p { "Pseudonyms and compartment keys are in " code { (app.dir.join(crate::speakeasy::state::FILE).display()) } " (mode 0600). "
                @if sealed { strong { "Sealed under your passphrase." } }
                @else { "Not sealed: set " code { (crate::speakeasy::state::PASSPHRASE_ENV) } " before starting to seal it." } }
            p.muted { "No post is ever written to disk here: posts are opened again from the node at start." }
            table {
                tr { th { "Network" } th { "Your pseudonym" } th { "Posts opened" } th { "Past keys kept" } }
                @for (n, id, posts, past) in &nets { tr { td { (n) } td { code { (id) } } td { (posts) } td { (past) } } }
            }
        }
        section {
            h2 { "Packets that did not open" }
            @if skipped.is_empty() { p.muted { "None." } }
            table { @for (why, n) in &skipped { tr { td { (why) } td { (n) } } } }
            p.muted { "Inbox tags are shared by many pseudonyms, so most of their packets are others' and do not open here." }
        }
    };
    page(app, "Settings", body)
}

// ----- attachments -----

pub async fn attach(
    State(w): State<Web>,
    Extension(s): Sess,
    Path(net): Path<String>,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut fields: std::collections::HashMap<String, String> = Default::default();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return bad(&w.app, format!("the upload did not arrive whole: {e}")),
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let fname = field.file_name().unwrap_or("file").to_string();
            match field.bytes().await {
                Ok(b) => file = Some((fname, b.to_vec())),
                Err(e) => return bad(&w.app, format!("the file did not arrive whole: {e}")),
            }
        } else if fields.len() < 16 {
            match field.text().await {
                Ok(t) => {
                    fields.insert(name, t);
                }
                Err(e) => return bad(&w.app, format!("a form field did not arrive whole: {e}")),
            }
        }
    }
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    if let Err(r) = check_csrf(&s, &get("csrf")) {
        return r;
    }
    let (id, c) = match net_and_compartment(&w, &net, &get("compartment")) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(parent) = id16(&get("parent")).map(ItemId) else {
        return bad(&w.app, "not a post id");
    };
    let Some((name, data)) = file else {
        return bad(&w.app, "no file in the form");
    };
    // Browsers may send a path; keep the last component only.
    let name = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("file")
        .to_string();
    if data.len() > crate::speakeasy::post::MAX_FILE {
        return bad(
            &w.app,
            format!(
                "the file is over {} KiB",
                crate::speakeasy::post::MAX_FILE / 1024
            ),
        );
    }
    let opts = match route(&w.app, &get("tau")) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match w
        .app
        .attach_with(&id, c, get("board").trim(), parent, &name, data, &opts)
        .await
    {
        Ok(_) => {
            let thread = {
                let g = w.app.lock();
                g.network(&id)
                    .and_then(|(_, _, f)| f.post(&parent).map(|p| p.thread()))
                    .unwrap_or(parent)
            };
            Redirect::to(&format!("/n/{net}/t/{}", thread.to_hex())).into_response()
        }
        Err(e) => bad(&w.app, e),
    }
}

/// An attachment's bytes, always as a download (never rendered by the browser).
pub async fn download(
    State(w): State<Web>,
    Extension(_s): Sess,
    Path((net, item)): Path<(String, String)>,
) -> Response {
    let Some(item) = id16(&item).map(ItemId) else {
        return bad(&w.app, "not an attachment id");
    };
    let r = with_net(&w, &net, |_, _, f| {
        let name = f
            .post(&item)
            .and_then(|p| p.file.as_ref().map(|(n, _)| n.clone()))?;
        Some((name, f.file(&item)?.to_vec()))
    });
    match r {
        Ok(Some((name, data))) => {
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let utf8: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let disp = format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                utf8.replace('+', "%20")
            );
            let mut resp = data.into_response();
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&disp) {
                h.insert(axum::http::header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Ok(None) => error_page(&w.app, StatusCode::NOT_FOUND, "no such attachment here"),
        Err(r) => r,
    }
}
