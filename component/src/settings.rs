//! The generation settings users set, defined once for every place they are set: rill.toml's
//! `[generation]` table, `rill run`'s flags and the body of an HTTP request. The field names are
//! the TOML keys, the JSON fields and (in kebab case) the flags.
//!
//! Every field is optional, so that each layer names only what it changes: each is applied in
//! turn ([`GenerationSettings::apply`]) to the engine's [`GenerateParams`], the defaults, then
//! rill.toml, then the flags or a request.
//!
//! Not here: `stop` and `ignore_eos` (a request's `stop` is a string or a list, a flag is
//! repeated; rill.toml sets neither), OpenAI's `max_completion_tokens` (an HTTP alias of
//! `max_tokens`), and what only the API has (`logprobs`, `stream`, `n`, …).

use crate::model::KvType;
use crate::sampler::LogitBias;
use crate::tokenizer::TokenId;
use crate::{ContextPolicy, GenerateParams};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct GenerationSettings {
    /// Most tokens to generate.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Sample from the K most likely tokens (0: all).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Sample from the most likely tokens whose probabilities add up to P.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Leave out tokens less likely than P times the most likely one.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Penalise the logits of recently seen tokens by this factor (1: off).
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Subtract this times each recent token's count from its logit.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Subtract this from the logit of each token seen recently.
    #[cfg_attr(feature = "cli", arg(long, allow_negative_numbers = true))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// How many recent tokens the penalties look at.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_last_n: Option<usize>,
    /// Random seed of the sampler.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Add BIAS (-100..=100) to token ID's logit before sampling; -100 all but bans it. A flag
    /// per token (`--logit-bias 818=-100`); a map in TOML and JSON (`{ 818 = -100.0 }`).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ID=BIAS", allow_hyphen_values = true, num_args = 1)
    )]
    #[serde(default, with = "bias_map", skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Vec<TokenBias>>,
    /// KV cache size in positions (prompt plus output).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<usize>,
    /// KV cache storage: f16, or q8_0 (half the memory, a small drift in the logits).
    #[cfg_attr(feature = "cli", arg(long, value_name = "f16|q8_0"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_type: Option<KvType>,
    /// When the context fills: finish (finish reason `length`), error (fail with
    /// context-overflow), or shift:N (keep the first N tokens, drop the older half of the rest,
    /// go on).
    #[cfg_attr(feature = "cli", arg(long, value_name = "finish|error|shift:N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_full_context: Option<ContextPolicy>,
}

/// The settings that shape a server's KV cache: rill.toml and the flags set them, a request
/// cannot (an HTTP body's fields of these names are ignored, as any unknown field is).
pub const SERVER_ONLY: [&str; 3] = ["context", "kv_type", "on_full_context"];

/// One token's logit bias, written `ID=BIAS` on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBias {
    pub token: TokenId,
    pub bias: f32,
}

impl std::str::FromStr for TokenBias {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenBias, String> {
        let (id, bias) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ID=BIAS"))?;
        Ok(TokenBias {
            token: id.trim().parse().map_err(|_| format!("{id:?} is not a token id"))?,
            bias: bias.trim().parse().map_err(|_| format!("{bias:?} is not a number"))?,
        })
    }
}

/// `logit_bias` as JSON and TOML write it: [`LogitBias`]'s map from token ids to biases.
mod bias_map {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<TokenBias>>, D::Error> {
        let biases = LogitBias::deserialize(d)?.0;
        Ok(Some(
            biases
                .into_iter()
                .map(|(token, bias)| TokenBias { token, bias })
                .collect(),
        ))
    }

    pub fn serialize<S: Serializer>(biases: &Option<Vec<TokenBias>>, s: S) -> Result<S::Ok, S::Error> {
        super::logit_bias(biases.as_deref().unwrap_or_default()).serialize(s)
    }
}

fn logit_bias(biases: &[TokenBias]) -> LogitBias {
    LogitBias::from_pairs(biases.iter().map(|b| (b.token, b.bias)))
}

impl GenerationSettings {
    /// Every setting as `params` has it.
    pub fn of(params: &GenerateParams) -> GenerationSettings {
        let s = &params.sampling;
        GenerationSettings {
            max_tokens: Some(params.max_tokens),
            temperature: Some(s.temperature),
            top_k: Some(s.top_k),
            top_p: Some(s.top_p),
            min_p: Some(s.min_p),
            repeat_penalty: Some(s.repeat_penalty),
            frequency_penalty: Some(s.frequency_penalty),
            presence_penalty: Some(s.presence_penalty),
            penalty_last_n: Some(s.penalty_last_n),
            seed: Some(s.seed),
            logit_bias: Some(
                s.logit_bias
                    .0
                    .iter()
                    .map(|&(token, bias)| TokenBias { token, bias })
                    .collect(),
            ),
            context: Some(params.context),
            kv_type: Some(params.kv_type),
            on_full_context: Some(params.on_full_context),
        }
    }

    /// Writes the settings that are set into `params`.
    pub fn apply(&self, params: &mut GenerateParams) {
        fn set<T: Clone>(setting: &Option<T>, value: &mut T) {
            if let Some(v) = setting {
                *value = v.clone();
            }
        }
        let s = &mut params.sampling;
        set(&self.max_tokens, &mut params.max_tokens);
        set(&self.temperature, &mut s.temperature);
        set(&self.top_k, &mut s.top_k);
        set(&self.top_p, &mut s.top_p);
        set(&self.min_p, &mut s.min_p);
        set(&self.repeat_penalty, &mut s.repeat_penalty);
        set(&self.frequency_penalty, &mut s.frequency_penalty);
        set(&self.presence_penalty, &mut s.presence_penalty);
        set(&self.penalty_last_n, &mut s.penalty_last_n);
        set(&self.seed, &mut s.seed);
        if let Some(biases) = &self.logit_bias {
            s.logit_bias = logit_bias(biases);
        }
        set(&self.context, &mut params.context);
        set(&self.kv_type, &mut params.kv_type);
        set(&self.on_full_context, &mut params.on_full_context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_overrides_only_what_it_sets() {
        let file = GenerationSettings {
            top_k: Some(7),
            temperature: Some(0.5),
            ..Default::default()
        };
        let flags = GenerationSettings {
            temperature: Some(0.0),
            logit_bias: Some(vec!["818=-100".parse().unwrap()]),
            ..Default::default()
        };
        let mut params = GenerateParams::default();
        file.apply(&mut params);
        flags.apply(&mut params);
        assert_eq!((params.sampling.top_k, params.sampling.temperature), (7, 0.0));
        assert_eq!(params.sampling.logit_bias, LogitBias(vec![(818, -100.0)]));
        assert_eq!(params.max_tokens, GenerateParams::default().max_tokens);
        // A complete set reproduces the parameters it came from.
        let mut again = GenerateParams::default();
        GenerationSettings::of(&params).apply(&mut again);
        assert_eq!(again.sampling, params.sampling);
    }

    #[test]
    fn a_bias_flag_is_id_equals_bias() {
        assert_eq!(
            "818=-100".parse(),
            Ok(TokenBias {
                token: 818,
                bias: -100.0
            })
        );
        assert_eq!("1=x".parse::<TokenBias>().unwrap_err(), "\"x\" is not a number");
        assert!("818".parse::<TokenBias>().is_err());
    }
}
