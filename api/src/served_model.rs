//! The model a server serves, as the API shows it: its id, the generation defaults requests
//! start from, and the `/v1/models` objects.

use crate::request::{parse_chat, parse_completion, Endpoint, GenerationRequest};
use crate::ApiError;
use rill_engine::GenerateParams;
use serde_json::{json, Value};

pub struct ServedModel {
    /// The id clients use for it (`/v1/models`, a request's `model`).
    pub id: String,
    /// Unix seconds (the model object's `created`).
    pub created: u64,
    /// Generation settings for what a request leaves out.
    pub defaults: GenerateParams,
}

impl ServedModel {
    /// Parses a generation request and checks the model it names.
    pub fn parse(&self, endpoint: Endpoint, body: &[u8]) -> Result<GenerationRequest, ApiError> {
        let request = match endpoint {
            Endpoint::Chat => parse_chat(body, &self.defaults),
            Endpoint::Completion => parse_completion(body, &self.defaults),
        }?;
        match &request.model {
            Some(m) if *m != self.id => Err(ApiError::model_not_found(m)),
            _ => Ok(request),
        }
    }

    /// `GET /v1/models/{id}`.
    pub fn object(&self) -> Value {
        json!({ "id": self.id, "object": "model", "created": self.created, "owned_by": "rill" })
    }

    /// `GET /v1/models`.
    pub fn list(&self) -> Value {
        json!({ "object": "list", "data": [self.object()] })
    }
}

/// `GET /health`.
pub fn health() -> Value {
    json!({ "status": "ok" })
}
