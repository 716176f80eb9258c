//! rill-engine
