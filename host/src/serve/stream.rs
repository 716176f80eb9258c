//! One request's tokens on their way from the engine thread to the connection that wants them.
//!
//! The engine pushes without ever waiting; the connection takes everything that has arrived
//! since it last looked. A client that reads slower than tokens are made therefore gets several
//! tokens per event (adaptive flush) and the backlog is text, bounded by `max_tokens`, never a
//! queue of frames.

use rill_api::{ApiError, Finish, TokenOut, Usage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;

/// How a generation ended.
#[derive(Clone, Debug)]
pub enum End {
    Done {
        finish: Finish,
        usage: Usage,
        timings: rill_api::Timings,
    },
    Failed(ApiError),
}

/// What [`TokenStream::next`] hands the connection.
pub enum Item {
    /// Every token that arrived since the last call, in order (at least one).
    Tokens(Vec<TokenOut>),
    /// The end, after the last token.
    End(End),
}

pub struct TokenStream {
    /// When the request arrived (queue time and time to first token count from here).
    pub arrived: Instant,
    state: Mutex<State>,
    notify: Notify,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct State {
    pending: Vec<TokenOut>,
    end: Option<End>,
}

impl TokenStream {
    pub fn new(arrived: Instant) -> TokenStream {
        TokenStream {
            arrived,
            state: Mutex::default(),
            notify: Notify::new(),
            cancelled: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Engine side: one more token.
    pub fn push(&self, token: TokenOut) {
        let mut s = self.state();
        s.pending.push(token);
        drop(s);
        self.notify.notify_one();
    }

    /// Engine side: the end (only the first call counts).
    pub fn finish(&self, end: End) {
        self.state().end.get_or_insert(end);
        self.notify.notify_one();
    }

    /// Connection side: the client is gone or asked to stop. The engine ends the generation
    /// at its next token.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub fn is_finished(&self) -> bool {
        self.state().end.is_some()
    }

    /// Connection side: waits for tokens or the end.
    pub async fn next(&self) -> Item {
        loop {
            {
                let mut s = self.state();
                if !s.pending.is_empty() {
                    return Item::Tokens(std::mem::take(&mut s.pending));
                }
                if let Some(end) = &s.end {
                    return Item::End(end.clone());
                }
            }
            // notify_one keeps a permit when nobody waits, so a push between the check above
            // and this await is not lost.
            self.notify.notified().await;
        }
    }
}

/// Cancels the stream when dropped before it finished: a connection that goes away (the client
/// disconnected, its handler was dropped) stops its generation.
pub struct CancelOnDrop(pub std::sync::Arc<TokenStream>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> TokenOut {
        TokenOut {
            text: text.into(),
            ..TokenOut::default()
        }
    }

    #[tokio::test]
    async fn tokens_that_pile_up_leave_together_then_the_end() {
        let s = TokenStream::new(Instant::now());
        s.push(token("a"));
        s.push(token("b"));
        s.push(token("c"));
        s.finish(End::Failed(ApiError::internal("x")));
        match s.next().await {
            Item::Tokens(t) => assert_eq!(t.iter().map(|t| t.text.as_str()).collect::<String>(), "abc"),
            Item::End(_) => panic!("tokens come before the end"),
        }
        assert!(matches!(s.next().await, Item::End(End::Failed(_))));
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_the_next_token() {
        let s = std::sync::Arc::new(TokenStream::new(Instant::now()));
        let reader = tokio::spawn({
            let s = s.clone();
            async move { matches!(s.next().await, Item::Tokens(t) if t.len() == 1) }
        });
        tokio::task::yield_now().await;
        s.push(token("a"));
        assert!(reader.await.unwrap());
    }

    #[test]
    fn dropping_the_connection_cancels_an_unfinished_stream_only() {
        let (running, done) = (
            std::sync::Arc::new(TokenStream::new(Instant::now())),
            std::sync::Arc::new(TokenStream::new(Instant::now())),
        );
        done.finish(End::Failed(ApiError::internal("x")));
        drop((CancelOnDrop(running.clone()), CancelOnDrop(done.clone())));
        assert!(running.is_cancelled() && !done.is_cancelled());
    }
}
