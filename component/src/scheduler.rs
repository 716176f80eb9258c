//! Continuous batching: the live generations of one engine advance together, one batched step
//! at a time (one pass over the weights for all of them). The caller decides how much a step
//! takes on ([`StepLimits`]: the host's adaptive batch size and prompt chunk are policy); the
//! scheduler runs it (mechanism): the oldest live generations first, their prompts read in
//! chunks between the others' tokens, and it says what the step did for each.

use crate::engine::{EngineError, FinishReason, Generation, Step, TokenEvent};
use std::collections::BTreeMap;

/// Identifies a generation within its scheduler; they start in the order of their ids.
pub type SeqId = u64;

/// Prompt tokens a step reads when the caller has no better figure: long prompts take few
/// steps, and a step stays within a few hundred tokens of work.
pub const DEFAULT_PROMPT_CHUNK: usize = 256;

/// How much one step may take on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLimits {
    /// Most generations the step advances (at least 1): the oldest live ones.
    pub generations: usize,
    /// Most prompt tokens it reads over all of them (at least 1), the oldest generations first.
    pub prompt_tokens: usize,
}

impl StepLimits {
    /// One generation at a time, prompts in the default chunk (a caller running one generation).
    pub const ONE: StepLimits = StepLimits {
        generations: 1,
        prompt_tokens: DEFAULT_PROMPT_CHUNK,
    };
}

/// What a step did for one generation.
#[derive(Debug)]
pub struct Stepped {
    pub id: SeqId,
    /// The token it made; none while its prompt is read, or when it ended without one.
    pub event: Option<TokenEvent>,
    /// Set when it ended in this step (after `event`, when there is one).
    pub end: Option<End>,
}

/// How a generation ended.
#[derive(Clone, Debug)]
pub enum End {
    Finished(FinishReason),
    Failed(EngineError),
}

#[derive(Default)]
pub struct Scheduler {
    generations: BTreeMap<SeqId, Slot>,
    next_id: SeqId,
}

struct Slot {
    generation: Generation,
    /// A step failed it; it takes no more steps.
    failed: bool,
}

impl Scheduler {
    pub fn add(&mut self, generation: Generation) -> SeqId {
        let id = self.next_id;
        self.next_id += 1;
        self.generations.insert(
            id,
            Slot {
                generation,
                failed: false,
            },
        );
        id
    }

    /// Drops a generation (and its KV cache).
    pub fn remove(&mut self, id: SeqId) -> Option<Generation> {
        self.generations.remove(&id).map(|s| s.generation)
    }

    pub fn get(&self, id: SeqId) -> Option<&Generation> {
        self.generations.get(&id).map(|s| &s.generation)
    }

    pub fn get_mut(&mut self, id: SeqId) -> Option<&mut Generation> {
        self.generations.get_mut(&id).map(|s| &mut s.generation)
    }

    /// Generations that still produce tokens.
    pub fn active(&self) -> usize {
        self.generations.values().filter(|s| s.is_live()).count()
    }

    /// One batched step for the oldest live generations, within `limits`. Each generation that
    /// took part gets one entry, in the order they started: its token, if it made one, and its
    /// end, if it ended (reported once; it takes no more steps). Nothing is kept for later: what
    /// a step made is in what it returns. No live generation: an empty list.
    pub fn step(&mut self, limits: StepLimits) -> Vec<Stepped> {
        let (ids, mut batch): (Vec<SeqId>, Vec<&mut Generation>) = self
            .generations
            .iter_mut()
            .filter(|(_, s)| s.is_live())
            .take(limits.generations.max(1))
            .map(|(&id, s)| (id, &mut s.generation))
            .unzip();
        if batch.is_empty() {
            return Vec::new();
        }
        let results = Generation::step(&mut batch, limits.prompt_tokens.max(1));
        ids.into_iter()
            .zip(results)
            .map(|(id, result)| {
                let slot = self.generations.get_mut(&id).expect("stepped just now");
                let (event, end) = match result {
                    Ok(Step::Token(event)) => (Some(event), slot.generation.finish_reason().map(End::Finished)),
                    Ok(Step::Reading) => (None, None),
                    Ok(Step::Finished) => (None, slot.generation.finish_reason().map(End::Finished)),
                    Err(e) => {
                        slot.failed = true;
                        (None, Some(End::Failed(e)))
                    }
                };
                Stepped { id, event, end }
            })
            .collect()
    }
}

impl Slot {
    fn is_live(&self) -> bool {
        !self.failed && self.generation.finish_reason().is_none()
    }
}
