//! Who may use the HTTP API. Optional bearer tokens, one for the ingest routes and one for the
//! read routes, compared in constant time (`/health` stays open). Without a write token, an
//! ingest request with a body a web page could make a visitor's browser send without asking
//! (a form or `text/plain`: no CORS preflight) is refused, so that no page can write metrics
//! through the browsers of people who can reach strata.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{HttpConfig, SecretError, SecretSource};

/// A bearer token a group of routes requires, or none.
#[derive(Clone, Default)]
pub(crate) struct Token(Option<Arc<[u8]>>);

impl Token {
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    #[cfg(test)]
    pub(crate) fn of(text: &str) -> Self {
        Self(Some(text.as_bytes().into()))
    }
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read {what}")]
    Read {
        what: &'static str,
        #[source]
        source: SecretError,
    },
    #[error("{0} is empty: an empty token would let anyone in")]
    Empty(&'static str),
}

/// The write and read tokens of `http`, read from their environment variables or files.
pub(crate) fn tokens(http: &HttpConfig) -> Result<(Token, Token), TokenError> {
    Ok((
        token(&http.write_token, "http.write_token")?,
        token(&http.read_token, "http.read_token")?,
    ))
}

fn token(source: &Option<SecretSource>, what: &'static str) -> Result<Token, TokenError> {
    let Some(source) = source else {
        return Ok(Token::default());
    };
    let text = source
        .read()
        .map_err(|source| TokenError::Read { what, source })?;
    if text.is_empty() {
        return Err(TokenError::Empty(what));
    }
    Ok(Token(Some(text.into_bytes().into())))
}

/// Lets a request through when the routes need no token or it carries
/// `Authorization: Bearer <token>`; 401 otherwise.
pub(crate) async fn require_token(
    State(token): State<Token>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &token.0 else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(given) if bool::from(given.ct_eq(expected)) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "this route needs Authorization: Bearer <token>"})),
        )
            .into_response(),
    }
}

/// Content types a browser sends cross-site without a preflight.
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// Refuses (415) an ingest body whose content type a page could send through a browser without
/// a preflight, when no write token protects the routes.
pub(crate) async fn refuse_cross_site_bodies(
    State(write_token): State<Token>,
    request: Request,
    next: Next,
) -> Response {
    if write_token.is_set() {
        return next.run(request).await;
    }
    let essence = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence {
        Some(kind) if SIMPLE_CONTENT_TYPES.contains(&kind.as_str()) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"error": format!("Content-Type {kind} is refused (a web page could send it through a visitor's browser); send application/json or application/x-ndjson")})),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    fn app(token: Token) -> Router {
        Router::new()
            .route("/w", post(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(
                token.clone(),
                refuse_cross_site_bodies,
            ))
            .route_layer(axum::middleware::from_fn_with_state(token, require_token))
    }

    async fn status(app: Router, auth: Option<&str>, content_type: Option<&str>) -> StatusCode {
        let mut request = axum::http::Request::builder().method("POST").uri("/w");
        if let Some(a) = auth {
            request = request.header(header::AUTHORIZATION, a);
        }
        if let Some(c) = content_type {
            request = request.header(header::CONTENT_TYPE, c);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_token_is_required_when_set_and_compared_whole() {
        let app = app(Token::of("s3cret"));
        assert_eq!(
            status(app.clone(), None, None).await,
            StatusCode::UNAUTHORIZED
        );
        for wrong in ["Bearer s3cre", "Bearer s3cret ", "Basic s3cret", "s3cret"] {
            assert_eq!(
                status(app.clone(), Some(wrong), None).await,
                StatusCode::UNAUTHORIZED,
                "{wrong}"
            );
        }
        assert_eq!(
            status(app.clone(), Some("Bearer s3cret"), None).await,
            StatusCode::OK
        );
        assert_eq!(
            status(app, Some("Bearer s3cret"), Some("text/plain")).await,
            StatusCode::OK,
            "with a token a browser cannot write unasked: any content type"
        );
    }

    #[tokio::test]
    async fn without_a_token_bodies_a_browser_sends_unasked_are_refused() {
        let app = app(Token::default());
        for kind in [
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
        ] {
            assert_eq!(
                status(app.clone(), None, Some(kind)).await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{kind}"
            );
        }
        for kind in [Some("application/json"), Some("application/x-ndjson"), None] {
            assert_eq!(
                status(app.clone(), None, kind).await,
                StatusCode::OK,
                "{kind:?}"
            );
        }
    }
}
