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
    /// Tokens in its vocabulary: a request's token ids must be below it.
    pub vocab_size: usize,
}

impl ServedModel {
    /// Parses a generation request and checks it against this model: the model it names and
    /// the token ids of its `logit_bias`.
    pub fn parse(&self, endpoint: Endpoint, body: &[u8]) -> Result<GenerationRequest, ApiError> {
        let request = match endpoint {
            Endpoint::Chat => parse_chat(body, &self.defaults),
            Endpoint::Completion => parse_completion(body, &self.defaults),
        }?;
        if let Some(m) = request.model.as_ref().filter(|m| **m != self.id) {
            return Err(ApiError::model_not_found(m));
        }
        if let Some(id) = request.params.sampling.logit_bias.unknown_token(self.vocab_size) {
            return Err(ApiError::invalid(
                format!(
                    "logit_bias: token id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size
                ),
                Some("logit_bias"),
            ));
        }
        Ok(request)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_against_the_model() {
        let served = ServedModel {
            id: "m".into(),
            created: 0,
            defaults: GenerateParams::default(),
            vocab_size: 10,
        };
        let body = |extra: &str| format!(r#"{{"prompt":"x"{extra}}}"#).into_bytes();
        let parse = |extra: &str| served.parse(Endpoint::Completion, &body(extra));
        assert!(parse(r#","logit_bias":{"9":1}"#).is_ok());
        let e = parse(r#","logit_bias":{"10":1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"), "{e}");
        assert!(e.message.contains("outside the vocabulary of 10 tokens"), "{e}");
        assert!(parse(r#","model":"m""#).is_ok());
        assert_eq!(parse(r#","model":"other""#).unwrap_err().status, 404);
    }
}
