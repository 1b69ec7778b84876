//! The web console: plain HTML, CSS and JavaScript modules embedded in the binary, served at
//! `/` and `/console/{file}`. It is a client of the public API and nothing else (every call goes
//! through `assets/api.js`), so it can do exactly what any client can; this module only hands
//! out the files, each with its content type, a validator and a strict Content-Security-Policy.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::api::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("editor.js", JS),
    asset!("run.js", JS),
    asset!("sandboxes.js", JS),
    asset!("files.js", JS),
    asset!("processes.js", JS),
    asset!("agent.js", JS),
    asset!("service.js", JS),
];

/// Scripts and styles only from these files (no inline code, no eval), calls only to this
/// origin, images also from `data:` (a context's plots) and `blob:`, and never framed.
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, outside the API's auth middleware: the page must load before it can
/// ask for a key. It holds no data; every call it makes carries the key.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(0, &headers) }),
        )
        .route("/console/{file}", get(file))
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(i, &headers),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the console has no file \"{name}\"; open / for the console"),
        )
        .into_response(),
    }
}

/// A strong validator per file: the files change only with the binary, and `no-cache` makes the
/// browser ask each time, so a new binary's console is never mixed with an old one's modules.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })[i]
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let tag = etag(i);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
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
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `./x.js` a module imports and each `/console/x` the page links is a served file.
    #[test]
    fn every_file_the_console_refers_to_is_served() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let mut referred = Vec::new();
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).unwrap();
            for (quote, prefix) in [("'", "./"), ("\"", "/console/")] {
                for piece in text.split(&format!("{quote}{prefix}")).skip(1) {
                    referred.push((a.name, piece.split(quote).next().unwrap().to_string()));
                }
            }
        }
        assert!(referred.len() >= ASSETS.len() - 1, "{referred:?}");
        for (from, name) in referred {
            assert!(names.contains(&name.as_str()), "{from} refers to {name}");
        }
    }

    /// No file is left out of the table (a file added to assets/ but not served would 404).
    #[test]
    fn every_file_in_assets_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/console/assets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        served.sort();
        assert_eq!(on_disk, served);
    }

    /// The policy forbids inline code, so the page must have none.
    #[test]
    fn no_file_has_inline_script_or_style() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(!text.contains("<style"), "{}", a.name);
            assert!(!text.contains(" style="), "{}", a.name);
            for tag in text.split("<script").skip(1) {
                assert!(tag.contains("src=\"/console/"), "{}: {tag}", a.name);
            }
            for after in text.split(" on").skip(1) {
                let name_len = after.bytes().take_while(u8::is_ascii_lowercase).count();
                assert!(
                    after.as_bytes().get(name_len) != Some(&b'='),
                    "{}: an inline handler on{}",
                    a.name,
                    &after[..name_len]
                );
            }
        }
    }
}
