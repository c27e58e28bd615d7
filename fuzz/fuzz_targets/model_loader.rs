//! Any bytes given to the model loader give a model or an error, never a panic; a model
//! that loads also builds an engine that renders finite audio.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssm_runtime::{Engine, Model};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        if let Ok(mut engine) = Engine::new(&model, 16_000) {
            let mut out = [0.0f32; 16];
            engine.set_keys(&[64; 88]);
            engine.process(&mut out);
        }
    }
});
