//! The embedded stylesheet and icon (no build step, nothing fetched from elsewhere).

use axum::http::header;
use axum::response::IntoResponse;

const STYLE: &str = include_str!("style.css");
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#2166ac\"/><path d=\"M3 12V4l5 5 5-5v8\" stroke=\"#fff\" stroke-width=\"2\" fill=\"none\"/></svg>";

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
}

pub async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        ICON,
    )
}
