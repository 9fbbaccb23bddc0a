//! What every HTTP route of the daemon shares: who may call it ([`ApiAuth`], the
//! [`require_read`] layer, bearer-token checks in constant time) and how errors are answered
//! ([`ApiError`]). The daemon's routes (`daemon::api`) and the pipelines' (`pipeline::api`)
//! both build on it, so neither depends on the other.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::secret::constant_eq;
use crate::store::StoreError;

/// The body length a request or response declares in `Content-Length`, when it declares a
/// readable one: what a size cap can refuse before reading a byte of the body.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The API's tokens: the write token (also good for reads), an optional read-only token, and
/// whether reads are open to anyone (`--anonymous-read`).
#[derive(Clone, Default)]
pub struct ApiAuth {
    pub write: Option<String>,
    pub read: Option<String>,
    pub anonymous_read: bool,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("write", &self.write.as_ref().map(|_| "***"))
            .field("read", &self.read.as_ref().map(|_| "***"))
            .field("anonymous_read", &self.anonymous_read)
            .finish()
    }
}

impl ApiAuth {
    /// Write access only with this token.
    pub fn write_only(token: Option<String>) -> Self {
        Self {
            write: token,
            ..Self::default()
        }
    }

    /// Checks a write endpoint's `Authorization: Bearer`.
    pub fn check_write(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        authorized(self.write.as_deref(), headers)
    }

    /// Checks a read endpoint's `Authorization: Bearer` (the write or the read-only token).
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.check_read_token(bearer(headers))
    }

    /// [`ApiAuth::check_read`] on a token given some other way (the dashboard's cookie).
    pub fn check_read_token(&self, given: Option<&str>) -> Result<(), ApiError> {
        if self.anonymous_read {
            return Ok(());
        }
        let matches = |t: &Option<String>| matches!((t, given), (Some(t), Some(g)) if constant_eq(g.as_bytes(), t.as_bytes()));
        if matches(&self.write) || matches(&self.read) {
            return Ok(());
        }
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            if given.is_some() {
                "wrong bearer token".into()
            } else {
                "reads need `Authorization: Bearer <token>`: the token is in the state \
                 directory's api-token file (or the file given with --api-token-file / \
                 --api-read-token-file); the daemon serves reads without one only when started \
                 with --anonymous-read"
                    .into()
            },
        ))
    }
}

/// Refuses a read without a read or write token (see [`ApiAuth::check_read`]).
pub async fn require_read(State(auth): State<ApiAuth>, request: Request, next: Next) -> Response {
    match auth.check_read(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// An API error: a status and a JSON body `{"error": ...}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// Checks `Authorization: Bearer <token>` of a write endpoint against the configured token.
pub fn authorized(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "write endpoints are disabled: start the daemon with --api-token-file".into(),
        ));
    };
    match bearer(headers) {
        Some(t) if constant_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` (the token is in the state directory's \
             api-token file, or the file given with --api-token-file)"
                .into(),
        )),
    }
}
