//! The web UI: cAdvisor's page URLs (`/containers/<cgroup>`, `/docker/<id or name>`) plus pods
//! and Swarm services, all answered with one small HTML shell; the script it loads draws every
//! page from the JSON API and the event store (no second data path). Everything is in the
//! binary: the script and style (`agent/ui/`) and uPlot (fetched at build time from the npm
//! registry, pinned by its integrity hash: see `build/ui_vendor.rs`).
//!
//! Every URL the page uses is relative to a `<base href>` made from the request's own depth, so
//! the UI works at `/`, behind `kubectl port-forward`, and behind a reverse proxy that serves the
//! agent under a path prefix (cAdvisor's `--url_base_prefix` case) without being told the prefix.
use std::sync::OnceLock;

use bytes::Bytes;
use hyper::{Response, StatusCode, header};

use crate::api::{Body, full};

/// One embedded file: its bytes, gzipped bytes (made on first use) and a content hash that
/// versions its URL, so that it can be cached for a year and still never be stale.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/ui-vendor/uPlot.iife.min.js")),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/ui-vendor/uPlot.min.css")),
    },
    Asset {
        name: "uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/ui-vendor/uPlot.LICENSE")),
    },
];

/// The top-level paths the UI answers (besides `/static/`).
pub fn is_page(path: &str) -> bool {
    ["/containers", "/docker", "/pods", "/swarm"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// FNV-1a of every asset: one version for the set (they change together).
fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for a in ASSETS {
            for b in a.bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:012x}", h >> 16)
    })
}

/// `../` once per directory level of `path`, so that relative URLs resolve from the UI's root.
fn base_of(path: &str) -> String {
    let depth = path.matches('/').count().saturating_sub(1);
    if depth == 0 {
        "./".into()
    } else {
        "../".repeat(depth)
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The shell every page is: the script reads the route from the URL and draws the page.
pub fn page(path: &str, interval: std::time::Duration) -> Response<Body> {
    let v = version();
    let base = html_escape(&base_of(path));
    let ms = interval.as_millis();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<base href=\"{base}\"><title>nodetel</title><link rel=\"icon\" href=\"data:,\">\
<link rel=\"stylesheet\" href=\"static/uPlot.min.css?v={v}\">\
<link rel=\"stylesheet\" href=\"static/app.css?v={v}\"></head>\
<body data-interval-ms=\"{ms}\"><a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><nav aria-label=\"Sections\"><a class=\"brand\" href=\"containers/\">nodetel</a> \
<a href=\"containers/\">Machine</a> <a href=\"pods/\">Pods</a> <a href=\"docker/\">Docker</a> \
<a href=\"swarm/\">Swarm</a> <a href=\"metrics\">/metrics</a></nav>\
<button type=\"button\" id=\"theme\" aria-pressed=\"false\">Dark theme</button></header>\
<div id=\"status\" role=\"status\" aria-live=\"polite\"></div>\
<main id=\"main\" tabindex=\"-1\"><noscript>This page needs JavaScript; the same figures are \
at <a href=\"api/v2.0/stats/?count=1\">the JSON API</a>.</noscript></main>\
<script src=\"static/uPlot.iife.min.js?v={v}\"></script>\
<script src=\"static/app.js?v={v}\"></script></body></html>\n"
    );
    with_headers(
        full(StatusCode::OK, "text/html; charset=utf-8", html),
        &[
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    )
}

fn with_headers(
    mut resp: Response<Body>,
    headers: &[(header::HeaderName, &'static str)],
) -> Response<Body> {
    for (name, value) in headers {
        resp.headers_mut()
            .insert(name.clone(), header::HeaderValue::from_static(value));
    }
    resp
}

/// `/static/<name>`: an embedded asset, gzipped when the client takes it, cached for a year (its
/// URL carries the version).
pub fn asset(path: &str, accepts_gzip: bool) -> Option<Response<Body>> {
    static GZIPPED: OnceLock<Vec<Bytes>> = OnceLock::new();
    let name = path.strip_prefix("/static/")?;
    let i = ASSETS.iter().position(|a| a.name == name)?;
    let a = &ASSETS[i];
    let body = if accepts_gzip {
        let all = GZIPPED.get_or_init(|| {
            ASSETS
                .iter()
                .map(|a| crate::prepared::gzip_at(a.bytes, flate2::Compression::best()))
                .collect()
        });
        all[i].clone()
    } else {
        Bytes::from_static(a.bytes)
    };
    let resp = with_headers(
        full(StatusCode::OK, a.content_type, body),
        &[
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::VARY, "Accept-Encoding"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    );
    Some(if accepts_gzip {
        with_headers(resp, &[(header::CONTENT_ENCODING, "gzip")])
    } else {
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_resolves_to_the_ui_root() {
        assert_eq!(base_of("/containers/"), "../");
        assert_eq!(base_of("/containers"), "./");
        assert_eq!(base_of("/containers/docker/abc"), "../../");
        assert_eq!(base_of("/pods/ns/pod"), "../../");
    }

    #[test]
    fn pages_and_assets() {
        assert!(is_page("/containers/"));
        assert!(is_page("/docker"));
        assert!(is_page("/pods/a/b"));
        assert!(!is_page("/containersx"));
        assert!(!is_page("/api/v1.3/containers/"));
        assert!(asset("/static/app.js", false).is_some());
        assert!(asset("/static/../Cargo.toml", false).is_none());
    }
}
