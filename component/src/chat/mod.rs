//! Chat templates: the model's Jinja template (`tokenizer.chat_template`) rendered with
//! minijinja, as Hugging Face's `apply_chat_template` does.

use crate::gguf::Gguf;
use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChatError {
    #[error(
        "the model has no chat template (tokenizer.chat_template) and Rill has none built in for architecture {0:?}"
    )]
    Missing(String),
    #[error("chat template: {0}")]
    Template(String),
}

/// A model's chat template, compiled.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Where the template came from: "gguf" or "built-in gemma".
    pub source: &'static str,
}

impl ChatTemplate {
    /// The GGUF's template, or a built-in one for architectures whose GGUFs may lack it.
    pub fn from_gguf(g: &Gguf, bos: String, eos: String) -> Result<ChatTemplate, ChatError> {
        let (source, text) = match g.str("tokenizer.chat_template") {
            Ok(t) => ("gguf", t.to_string()),
            Err(_) => match g.architecture().unwrap_or("") {
                a if a.starts_with("gemma") => ("built-in gemma", include_str!("gemma.jinja").to_string()),
                a => return Err(ChatError::Missing(a.to_string())),
            },
        };
        let mut env = Environment::new();
        // Templates written for Python's Jinja call str methods (.strip(), .startswith(), ...).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", text)
            .map_err(|e| ChatError::Template(e.to_string()))?;
        Ok(ChatTemplate { env, bos, eos, source })
    }

    /// The prompt text for `messages`, ending with the assistant's turn opening when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::Template("no messages".into()));
        }
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ChatError::Template(e.to_string()))?;
        tmpl.render(context! { messages, add_generation_prompt, bos_token => self.bos, eos_token => self.eos })
            .map_err(|e| ChatError::Template(format!("{e:#}")))
    }
}
