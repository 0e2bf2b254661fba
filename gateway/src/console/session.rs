//! Who is looking at the console: the holder of the auditor token (reads
//! everything) or, standalone, an operator (reads everything and decides
//! approvals). A login exchanges the token for a session cookie sealed with
//! a key derived from that token (HMAC-SHA256 under the token's SHA-256),
//! so any replica holding the same token accepts it, no session is stored,
//! and rotating the token ends every session. A `Bearer` header works as
//! well as the cookie (for `curl`). Forms that change something carry a
//! CSRF value derived from the session, besides the cookie's
//! `SameSite=Strict`.

use crate::credentials::{Tokens, bearer, sha256};
use crate::state::AppState;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name (its path is `/console`).
pub const COOKIE: &str = "palisade_console";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 8 * 3600;

/// A console viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The auditor token's holder: reads, decides nothing.
    Auditor,
    /// A standalone operator (by name): reads and decides approvals.
    Operator(String),
}

impl Viewer {
    fn role(&self) -> (&'static str, &str) {
        match self {
            Self::Auditor => ("auditor", ""),
            Self::Operator(name) => ("operator", name),
        }
    }

    /// How the page names who is logged in.
    pub fn describe(&self) -> String {
        match self {
            Self::Auditor => "auditor".to_owned(),
            Self::Operator(name) => format!("operator {name}"),
        }
    }
}

fn seal(key: &[u8; 32], message: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(message.as_bytes());
    Some(mac)
}

/// The digest of the token a viewer holds, and the tokens of that role.
fn keys<'s>(state: &'s AppState, role: &str) -> Vec<(&'s [u8; 32], Option<&'s String>)> {
    match role {
        "auditor" => state
            .audit_reader
            .iter()
            .flat_map(|r| r.token.digests().map(|(d, ())| (d, None)))
            .collect(),
        "operator" => operator_keys(state.auth.operators()),
        _ => Vec::new(),
    }
}

fn operator_keys(tokens: &Tokens<String>) -> Vec<(&[u8; 32], Option<&String>)> {
    tokens.digests().map(|(d, name)| (d, Some(name))).collect()
}

/// Who holds `token`: the auditor, an operator, or nobody.
pub fn holder_of(state: &AppState, token: &str) -> Option<Viewer> {
    if let Some(name) = state.auth.operators().holder(token) {
        return Some(Viewer::Operator(name.clone()));
    }
    state
        .audit_reader
        .as_ref()
        .and_then(|r| r.token.holder(token))
        .map(|()| Viewer::Auditor)
}

/// The cookie value of a session for the holder of `token`, valid until
/// `expires` (Unix seconds).
pub fn cookie_for(token: &str, viewer: &Viewer, expires: i64) -> Option<String> {
    let (role, name) = viewer.role();
    // A nonce: two logins are two sessions (with CSRF values of their own).
    let nonce = uuid::Uuid::now_v7().simple();
    let body = format!("{role}.{}.{expires}.{nonce}", URL_SAFE_NO_PAD.encode(name));
    let mac = seal(&sha256(token), &body)?.finalize().into_bytes();
    Some(format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac)))
}

/// The viewer a cookie value names, if its seal holds under a current
/// token of its role and it has not expired at `now` (Unix seconds).
fn viewer_of_cookie(state: &AppState, value: &str, now: i64) -> Option<Viewer> {
    let mut parts = value.split('.');
    let (role, name, expires, nonce, mac) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || expires.parse::<i64>().ok()? <= now {
        return None;
    }
    let name = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
    let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
    let body = format!("{role}.{}.{expires}.{nonce}", URL_SAFE_NO_PAD.encode(&name));
    keys(state, role).into_iter().find_map(|(key, holder)| {
        let named = holder.is_none_or(|h| *h == name);
        let sealed = seal(key, &body)?.verify_slice(&mac).is_ok();
        (named && sealed).then(|| match holder {
            None => Viewer::Auditor,
            Some(h) => Viewer::Operator(h.clone()),
        })
    })
}

/// The session cookie's value in `headers`, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Who is asking: a valid session cookie, or a `Bearer` token of the
/// auditor or an operator.
pub fn viewer(state: &AppState, headers: &HeaderMap) -> Option<Viewer> {
    let now = jiff::Timestamp::now().as_second();
    if let Some(v) = cookie_value(headers).and_then(|c| viewer_of_cookie(state, c, now)) {
        return Some(v);
    }
    bearer(headers).and_then(|t| holder_of(state, t))
}

/// The CSRF value the session in `headers` expects in a form (empty for
/// a `Bearer` caller, who sends no cookie a browser could replay).
pub fn csrf_of(headers: &HeaderMap) -> String {
    cookie_value(headers)
        .map(|c| {
            let digest = sha256(&format!("palisade-console-csrf.{c}"));
            URL_SAFE_NO_PAD.encode(&digest[..16])
        })
        .unwrap_or_default()
}

/// Whether a form's CSRF value fits the session it was sent with.
pub fn csrf_holds(headers: &HeaderMap, sent: &str) -> bool {
    if cookie_value(headers).is_none() {
        // A Bearer caller: no browser sends that header across sites.
        return bearer(headers).is_some();
    }
    let want = csrf_of(headers);
    want.len() == sent.len()
        && want
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_its_viewer_and_cannot_be_edited() {
        let value = cookie_for("t0ken", &Viewer::Operator("oncall".into()), 2_000).unwrap();
        let (body, mac) = value.rsplit_once('.').unwrap();
        assert!(body.starts_with("operator."), "{value}");
        let key = sha256("t0ken");
        let mac = URL_SAFE_NO_PAD.decode(mac).unwrap();
        assert!(seal(&key, body).unwrap().verify_slice(&mac).is_ok());
        // Another role or another token does not verify.
        let forged = body.replacen("operator", "auditor", 1);
        assert!(seal(&key, &forged).unwrap().verify_slice(&mac).is_err());
        assert!(
            seal(&sha256("other"), body)
                .unwrap()
                .verify_slice(&mac)
                .is_err()
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; palisade_console=x.y.3.n.z; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some("x.y.3.n.z"));
        assert!(!csrf_holds(&headers, "wrong"));
        assert!(csrf_holds(&headers, &csrf_of(&headers)));
        assert!(!csrf_holds(&HeaderMap::new(), ""));
    }
}
