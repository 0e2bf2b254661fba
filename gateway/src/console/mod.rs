//! The console: web pages served by the gateway at `/console` for the
//! people who run it (off unless configured: GatewaySettings
//! `spec.console.enabled`, or `--console`; it needs the auditor token).
//! Server-rendered HTML that reads without JavaScript; a little script
//! (`assets/console.js`) turns the decisions table into a live stream.
//! Everything is served from here, nothing from a CDN, under a strict
//! Content-Security-Policy.
//!
//! - [`session`]: who is looking (auditor or operator), the login cookie
//!   and CSRF values;
//! - [`pages`]: what each page shows, read from the audit, the served
//!   configuration and the approvals; [`view`] renders it;
//! - [`stream`]: `GET /console/stream`, the decisions as server-sent
//!   events (a backfill from the audit, then what is written after).

pub mod pages;
pub mod session;
pub mod stream;
pub mod view;

use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

/// What the console needs beyond the gateway's state.
#[derive(Clone)]
pub struct Console {
    /// Sessions cookies are `Secure` (the gateway serves HTTPS).
    pub secure_cookie: bool,
    /// This replica's name.
    pub instance: String,
    /// In a cluster: where the gateways report their revisions (their
    /// Leases), read for the replicas' table.
    pub cluster: Option<(kube::Client, String)>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("secure_cookie", &self.secure_cookie)
            .field("instance", &self.instance)
            .field("cluster", &self.cluster.as_ref().map(|(_, ns)| ns))
            .finish()
    }
}

/// The console's routes (mounted by [`crate::router`] when configured).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/decisions", get(pages::decisions))
        .route("/console/decisions/{id}", get(pages::decision))
        .route("/console/approvals", get(pages::approvals))
        .route(
            "/console/approvals/{namespace}/{name}/{verb}",
            post(pages::decide),
        )
        .route("/console/alerts", get(pages::alerts))
        .route(
            "/console/quarantines/{namespace}/{agent}/lift",
            post(pages::lift),
        )
        .route("/console/stream", get(stream::decisions))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A response with the console's headers: never cached, never framed,
/// scripts and styles only from here.
pub fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The way to the login page, for a request with no valid session.
pub fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

/// The console configuration (the router mounts the routes only with it).
pub fn console_of(state: &AppState) -> Result<&Console, GatewayError> {
    state.console.as_ref().ok_or(GatewayError::UnknownRoute {
        method: "GET".into(),
        path: "/console".into(),
    })
}

async fn login_page() -> Response {
    guarded(view::respond(view::login(None)))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /console/login` (form `token=`): a session cookie for the
/// auditor or an operator, or the form again saying the token is wrong.
async fn login(State(state): State<AppState>, body: UnreadBody) -> Result<Response, GatewayError> {
    let console = console_of(&state)?;
    let body = body.read().await?;
    let form: Option<LoginForm> = serde_urlencoded::from_bytes(&body).ok();
    let token = form.map(|f| f.token.trim().to_owned()).unwrap_or_default();
    let Some(viewer) = session::holder_of(&state, &token) else {
        tracing::warn!(
            "console: a login with a token that is neither the auditor's nor an operator's"
        );
        let page = view::login(Some(
            "That token is neither the auditor token nor an operator token.",
        ));
        let mut response = view::respond(page);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(guarded(response));
    };
    let expires = jiff::Timestamp::now().as_second() + session::SESSION_SECONDS;
    let Some(value) = session::cookie_for(&token, &viewer, expires) else {
        return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    tracing::info!(viewer = %viewer.describe(), "console: logged in");
    let cookie = format!(
        "{}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::COOKIE,
        session::SESSION_SECONDS,
        if console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(guarded(response))
}

/// `POST /console/logout`: forgets the cookie.
async fn logout() -> Response {
    let mut response = Redirect::to("/console/login").into_response();
    let gone = format!(
        "{}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        session::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    guarded(response)
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], text).into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
