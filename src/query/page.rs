//! The built-in page (`GET /`): a small web application embedded in the binary — a series
//! browser, charts that read across resolutions (the avg with its min–max band, the resolution
//! of each part shaded, drag to zoom), a live view and a status panel — reading the same APIs as
//! any client, with the read token when one is set. Nothing is fetched from elsewhere: the
//! chart library (uPlot 1.6.32, MIT, pinned; see `web/vendor/uplot/SOURCE.md`) is embedded too.
//! The page and its assets hold no data, so they are served without a token.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const UPLOT_JS: &str = include_str!("../../web/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../web/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../web/vendor/uplot/LICENSE");

/// An embedded file with its type. `no-cache`: the browser asks again (an ETag-less 200 of a
/// few tens of KiB), so a new strata version's page is never mixed with an old script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    Html(INDEX.replace("{{version}}", env!("CARGO_PKG_VERSION"))).into_response()
}

/// The page's routes.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
        .route(
            "/assets/uPlot.LICENSE",
            get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_what_is_embedded() {
        for src in ["/assets/uPlot.iife.min.js", "/assets/app.js"] {
            assert!(INDEX.contains(&format!("<script src=\"{src}\">")), "{src}");
        }
        for href in ["/assets/uPlot.min.css", "/assets/app.css"] {
            assert!(INDEX.contains(&format!("href=\"{href}\"")), "{href}");
        }
        assert!(
            !INDEX.contains("http://") && !INDEX.contains("https://"),
            "no CDN, no network"
        );
        assert!(UPLOT_LICENSE.contains("MIT"));
        assert!(UPLOT_JS.contains("uPlot"));
    }
}
