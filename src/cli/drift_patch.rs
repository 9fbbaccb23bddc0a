//! `mockops drift patch SERVICE`: prints the spec patch a running daemon would propose for
//! the service's open drift incidents (`GET /api/v1/drift/patch/{service}`), as a unified
//! diff, and the incidents it leaves out with the reason. Opens nothing; exits 0 whether or
//! not there is something to propose.

use clap::Args;
use serde_json::Value as Json;

use super::client::{ApiArgs, Format};
use super::exit;

#[derive(Debug, Args)]
pub struct PatchArgs {
    /// The service (its `name`).
    pub service: String,
}

/// `mockops drift patch SERVICE`.
pub fn patch(api: &ApiArgs, args: &PatchArgs) -> anyhow::Result<u8> {
    let client = api.reader()?;
    let service: String = url::form_urlencoded::byte_serialize(args.service.as_bytes()).collect();
    let body = super::client::runtime()?
        .block_on(client.get(&format!("/api/v1/drift/patch/{service}"), &[]))?;
    match api.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&body)?),
        Format::Text => print!("{}", render(&body)),
    }
    Ok(exit::OK)
}

/// The text form: the diff (or "nothing to propose"), then the skipped incidents.
pub fn render(body: &Json) -> String {
    let mut out = String::new();
    let service = body.get("service").and_then(Json::as_str).unwrap_or("");
    let diff = body.get("diff").and_then(Json::as_str).unwrap_or("");
    if diff.is_empty() {
        out.push_str(&format!("nothing to propose for `{service}`\n"));
    } else {
        let accepted = body
            .get("accepted")
            .and_then(Json::as_array)
            .map_or(0, Vec::len);
        out.push_str(&format!(
            "proposed patch for `{service}` ({accepted} incident(s) accepted):\n\n"
        ));
        out.push_str(diff);
        if !diff.ends_with('\n') {
            out.push('\n');
        }
    }
    let skipped = body
        .get("skipped")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if !skipped.is_empty() {
        out.push_str("\nnot patched:\n");
        for s in skipped {
            let f = |k: &str| s.get(k).and_then(Json::as_str).unwrap_or("").to_string();
            out.push_str(&format!("  {} ({}): {}\n", f("id"), f("kind"), f("reason")));
        }
    }
    out
}
