//! The dashboard at `/ui`: server-rendered HTML pages over the same store the read API serves
//! (status, revisions with the diagnostics of invalid commits, events, pipeline executions,
//! federations with their topology, drift, coverage and usage heatmaps as SVG). No scripts and
//! no fetches from elsewhere: the stylesheet and icon are embedded and served from `/ui/assets`.
//!
//! Who may look: exactly who may read the API ([`crate::http::ApiAuth::check_read_token`]).
//! A browser cannot send the bearer header on navigation, so `/ui/login` takes the token and
//! keeps it in an `HttpOnly; SameSite=Strict; Path=/ui` cookie (`Secure` when the request came
//! over HTTPS), checked on every request like the header. The dashboard only reads; the two
//! forms that change anything (sign in, sign out) refuse cross-site posts (`Origin`,
//! `Sec-Fetch-Site`). Every response carries a strict Content-Security-Policy.

mod assets;
mod auth;
pub mod html;
mod pages;
pub mod svg;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::daemon::Shared;

/// The policy of every dashboard response: nothing but this origin's stylesheet, images and
/// forms; no scripts at all; never framed.
pub const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; \
                       base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Largest request body (the sign-in form).
const MAX_BODY: usize = 16 * 1024;

/// What the pages share: the daemon (the coverage and usage pages read the analytics of
/// its applied commit, the same catalog `/api/v2/analytics` reads).
#[derive(Clone)]
pub struct Ui {
    pub shared: Arc<Shared>,
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("the store could not be read: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the page's work stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Analytics(#[from] crate::analytics::AnalyticsError),
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Analytics(e) if e.is_bad_request() => StatusCode::BAD_REQUEST,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = html::bare_page(
            "Cannot show this page",
            &format!(
                "<p role=\"alert\">{}</p><p><a href=\"/ui\">Back to the overview</a></p>",
                html::esc(&self.to_string())
            ),
        );
        (status, Html(body)).into_response()
    }
}

/// The dashboard's routes (mounted by the daemon's API router).
pub fn router(shared: Arc<Shared>) -> Router {
    let ui = Ui { shared };
    let pages = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/revisions", get(pages::revisions))
        .route("/ui/events", get(pages::events))
        .route("/ui/executions", get(pages::executions))
        .route("/ui/federations", get(pages::federations))
        .route("/ui/drift", get(pages::drift))
        .route("/ui/drift/incidents", get(pages::incidents))
        .route("/ui/coverage", get(pages::coverage))
        .route("/ui/usage", get(pages::usage))
        .route_layer(axum::middleware::from_fn_with_state(
            ui.clone(),
            auth::require_session,
        ));
    Router::new()
        .merge(pages)
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", axum::routing::post(auth::logout))
        .route("/ui/assets/style.css", get(assets::style))
        .route("/ui/assets/icon.svg", get(assets::icon))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(ui)
}

/// Adds the headers every dashboard answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `s` as the `State` the handlers take.
type Ctx = State<Ui>;
