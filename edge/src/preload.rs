//! `preload` (world `edge-worker` in wit/rill.wit): what `rill bake` calls before it snapshots
//! the instance, so that instances of the baked component start with the model loaded.

use crate::model;

wit_bindgen::generate!({ world: "edge-worker", path: "../wit" });

struct Preload;
export!(Preload);

impl Guest for Preload {
    fn preload() {
        if let Err(e) = model::get() {
            // Only `rill bake` calls this, which reports the trap with this message.
            panic!("{}", e.message);
        }
    }
}
