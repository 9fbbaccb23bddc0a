//! A real upstream on loopback for the gateway's tests: echoes what it received, counts a
//! streamed upload, answers slowly, fails, or leaves out fields, as the path says.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::json;

/// The upstream; stops with its runtime.
pub struct Upstream {
    pub addr: SocketAddr,
}

impl Upstream {
    /// Serves on 127.0.0.1 (a free port) until the runtime ends.
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(answer);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

async fn answer(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let ms = query
        .as_deref()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok());
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_millis(ms.unwrap_or(2000))).await;
        return Json(json!({"slow": true, "path": path})).into_response();
    }
    if path.ends_with("/fail") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response();
    }
    if path.ends_with("/stream") {
        let chunks = futures_util::stream::iter(0..10).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(bytes::Bytes::from(format!("chunk{i};")))
        });
        return Response::new(Body::from_stream(chunks));
    }
    // Counts the body as it streams in.
    let mut stream = req.into_body().into_data_stream();
    let mut len = 0usize;
    let mut chunks = 0usize;
    while let Some(c) = stream.next().await {
        match c {
            Ok(c) => {
                len += c.len();
                chunks += 1;
            }
            Err(_) => return (StatusCode::BAD_REQUEST, "body aborted").into_response(),
        }
    }
    Json(json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": len,
        "body_chunks": chunks,
    }))
    .into_response()
}
