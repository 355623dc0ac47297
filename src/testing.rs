//! Helpers shared by the unit tests of several modules.

use axum::response::Response;
use serde_json::Value;

/// The JSON body of `response` (`Null` when it has none or it is not JSON).
pub(crate) async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a readable body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}
