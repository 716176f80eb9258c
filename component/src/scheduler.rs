//! Continuous batching: the live generations of one engine advance together. Pulling any of
//! them runs one batched step for every generation that is waiting for tokens (one pass over
//! the weights for all), and keeps the others' events until they are pulled. New generations
//! join between steps; prompts are read in chunks interleaved with the others' decoding.

use crate::engine::{EngineError, Generation, Step, TokenEvent};
use std::collections::{BTreeMap, VecDeque};

/// Identifies a generation within its scheduler.
pub type SeqId = u64;

pub struct Scheduler {
    slots: BTreeMap<SeqId, Slot>,
    next_id: SeqId,
    /// Most generations in one step.
    pub max_batch: usize,
    /// Most prompt tokens read in one step, over all generations.
    pub prompt_chunk: usize,
}

/// Prompt tokens a step reads by default: long prompts take few steps, and a step stays
/// within a few hundred tokens of work.
pub const DEFAULT_PROMPT_CHUNK: usize = 256;

/// A generation stops being stepped while this many of its events wait to be pulled: one that
/// nobody reads pauses instead of buffering without bound.
const MAX_BUFFERED: usize = 16;

struct Slot {
    generation: Generation,
    events: VecDeque<TokenEvent>,
    /// Its last step said it had finished.
    finished: bool,
    error: Option<EngineError>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            slots: BTreeMap::new(),
            next_id: 0,
            max_batch: 16,
            prompt_chunk: DEFAULT_PROMPT_CHUNK,
        }
    }
}

impl Scheduler {
    pub fn add(&mut self, generation: Generation) -> SeqId {
        let id = self.next_id;
        self.next_id += 1;
        self.slots.insert(
            id,
            Slot {
                generation,
                events: VecDeque::new(),
                finished: false,
                error: None,
            },
        );
        id
    }

    /// Drops a generation (and its KV cache).
    pub fn remove(&mut self, id: SeqId) -> Option<Generation> {
        self.slots.remove(&id).map(|s| s.generation)
    }

    pub fn get(&self, id: SeqId) -> Option<&Generation> {
        self.slots.get(&id).map(|s| &s.generation)
    }

    pub fn get_mut(&mut self, id: SeqId) -> Option<&mut Generation> {
        self.slots.get_mut(&id).map(|s| &mut s.generation)
    }

    /// Generations that still produce tokens.
    pub fn active(&self) -> usize {
        self.slots.values().filter(|s| !s.finished && s.error.is_none()).count()
    }

    /// Up to `max_events` of `id`'s events; when none is waiting, runs one batched step first.
    /// An empty list means no event yet (its prompt is still being read) or, once its finish
    /// reason is set, that it has finished. One step per call keeps every generation's tokens
    /// flowing to its reader while a long prompt is read in chunks.
    pub fn next(&mut self, id: SeqId, max_events: usize) -> Result<Vec<TokenEvent>, EngineError> {
        for stepped in [false, true] {
            let slot = self
                .slots
                .get_mut(&id)
                .ok_or_else(|| EngineError::InvalidArgument(format!("no generation {id}")))?;
            if !slot.events.is_empty() {
                let n = slot.events.len().min(max_events.max(1));
                return Ok(slot.events.drain(..n).collect());
            }
            if let Some(e) = slot.error.take() {
                slot.finished = true;
                return Err(e);
            }
            if slot.finished || stepped {
                break;
            }
            self.step(id);
        }
        Ok(Vec::new())
    }

    /// One batched step: `first` and up to `max_batch - 1` other runnable generations.
    fn step(&mut self, first: SeqId) {
        let runnable = |s: &Slot| !s.finished && s.error.is_none() && s.events.len() < MAX_BUFFERED;
        let mut ids: Vec<SeqId> = vec![first];
        ids.extend(
            self.slots
                .iter()
                .filter(|&(&id, s)| id != first && runnable(s))
                .map(|(&id, _)| id)
                .take(self.max_batch.max(1) - 1),
        );
        let mut picked: Vec<(SeqId, &mut Slot)> = self
            .slots
            .iter_mut()
            .filter(|(id, _)| ids.contains(id))
            .map(|(&id, s)| (id, s))
            .collect();
        // `first` leads, so it gets the prompt budget before the others.
        picked.sort_by_key(|(id, _)| *id != first);
        let mut gens: Vec<&mut Generation> = Vec::with_capacity(picked.len());
        let mut rest: Vec<(&mut VecDeque<TokenEvent>, &mut bool, &mut Option<EngineError>)> =
            Vec::with_capacity(picked.len());
        for (_, slot) in picked {
            let Slot {
                generation,
                events,
                finished,
                error,
            } = slot;
            gens.push(generation);
            rest.push((events, finished, error));
        }
        let results = Generation::step(&mut gens, self.prompt_chunk);
        for ((events, finished, error), result) in rest.into_iter().zip(results) {
            match result {
                Ok(Step::Token(e)) => events.push_back(e),
                Ok(Step::Reading) => {}
                Ok(Step::Finished) => *finished = true,
                Err(e) => *error = Some(e),
            }
        }
    }
}
