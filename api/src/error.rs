//! Errors as OpenAI reports them: an HTTP status and `{"error": {message, type, param, code}}`.

use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code, e.g. `context_length_exceeded`, `model_not_found`.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: 401,
            kind: "authentication_error",
            message: "missing or wrong API key (send `Authorization: Bearer KEY`)".into(),
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn model_not_found(model: &str) -> ApiError {
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("the model `{model}` does not exist on this server"),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("no endpoint {path}"),
            param: None,
            code: Some("not_found"),
        }
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: 413,
            kind: "invalid_request_error",
            message: format!("the request body is larger than {limit} bytes"),
            param: None,
            code: Some("request_too_large"),
        }
    }

    /// 429: the queue is full; the client should retry after a while.
    pub fn queue_full(depth: usize) -> ApiError {
        ApiError {
            status: 429,
            kind: "rate_limit_error",
            message: format!("the server is busy ({depth} requests queued); retry later"),
            param: None,
            code: Some("queue_full"),
        }
    }

    /// 503: the engine cannot take requests right now (out of memory, being restarted).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 503,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("unavailable"),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("internal_error"),
        }
    }

    /// The error object, as it appears in a body or a stream event.
    pub fn object(&self) -> Value {
        json!({ "message": self.message, "type": self.kind, "param": self.param, "code": self.code })
    }

    /// The whole response body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({ "error": self.object() })
    }
}

/// What the client is told when the engine refuses or fails a generation: the engine's
/// message, with a status and code for its kind.
impl From<&rill_engine::EngineError> for ApiError {
    fn from(e: &rill_engine::EngineError) -> ApiError {
        use rill_engine::EngineError::*;
        match e {
            InvalidArgument(m) | Unsupported(m) => ApiError::invalid(m.clone(), None),
            ContextOverflow(m) => ApiError::invalid(m.clone(), None).with_code("context_length_exceeded"),
            OutOfMemory(m) | DeviceLost(m) => ApiError::unavailable(m.clone()),
            InvalidModel(m) => ApiError::internal(m.clone()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}
