//! The engine hand-over on the audio thread: a new engine goes into the player at once, the
//! one it replaces plays on beside it for a short linear crossfade, and is then handed back
//! for disposal off the audio thread. One small type holds that state (after fundsp's `Slot`),
//! so the instrument only says "install this" and "mix the fade into this block".

use ssm_runtime::engine::Outputs;
use ssm_runtime::{Engine, KeyFrame, Player};

/// The outgoing engine and where its fade is.
pub struct Slot {
    /// the engine fading out, playing the same keys as the player's
    fading: Option<Box<Engine>>,
    /// samples of the fade done
    done: usize,
    /// the fade's length in samples
    len: usize,
    /// an engine that could not be handed back yet (the disposer's queue was full)
    garbage: Option<Box<Engine>>,
}

impl Slot {
    /// A slot whose crossfades last `fade_len` samples.
    pub fn new(fade_len: usize) -> Slot {
        Slot {
            fading: None,
            done: 0,
            len: fade_len.max(1),
            garbage: None,
        }
    }

    /// Whether a new engine may go in: none is fading out and none waits for disposal (so a
    /// switch never has two engines to hold on to).
    pub fn is_free(&self) -> bool {
        self.fading.is_none() && self.garbage.is_none()
    }

    /// Whether an engine is still fading out.
    pub fn is_fading(&self) -> bool {
        self.fading.is_some()
    }

    /// Puts `engine` into `player`; the engine it replaces (if any) starts fading out. A busy
    /// slot (see [`Slot::is_free`]) gives `engine` back instead: taking it would mean freeing
    /// an engine here, on the audio thread.
    pub fn install(&mut self, player: &mut Player, engine: Box<Engine>) -> Result<(), Box<Engine>> {
        if !self.is_free() {
            return Err(engine);
        }
        let mut slot = Some(engine);
        player.swap_engine(&mut slot);
        self.fading = slot;
        self.done = 0;
        Ok(())
    }

    /// Mixes the outgoing engine into `out` (the player's output for the same samples, one
    /// channel or a stereo pair): the new engine's gain rises linearly from 0 to 1 over the
    /// fade, the old one's falls. The old engine plays `keys` (the player's roll) into
    /// `scratch` (at least `2 · out.len()` samples long for a pair, `out.len()` for one
    /// channel). When the fade ends the old engine goes to `dispose`, which returns it if it
    /// cannot take it now; it is offered again by [`Slot::collect`].
    pub fn fade(
        &mut self,
        keys: &KeyFrame,
        mut out: Outputs<'_>,
        scratch: &mut [f32],
        dispose: impl FnOnce(Box<Engine>) -> Result<(), Box<Engine>>,
    ) {
        let Some(old) = &mut self.fading else { return };
        let stereo = matches!(out, Outputs::Stereo(..));
        let n = out.len().min(scratch.len() / if stereo { 2 } else { 1 });
        let (left, right) = scratch.split_at_mut(n);
        let mut theirs = if stereo {
            Outputs::Stereo(left, &mut right[..n])
        } else {
            Outputs::Mono(left)
        };
        old.set_keys(keys);
        old.process_outputs(theirs.part(0..n));
        for (ours, theirs) in out.part(0..n).channels().zip(theirs.channels()) {
            for (i, (o, s)) in ours.iter_mut().zip(theirs.iter()).enumerate() {
                let t = ((self.done + i) as f32 / self.len as f32).min(1.0);
                *o = *o * t + *s * (1.0 - t);
            }
        }
        self.done += n;
        if self.done >= self.len {
            self.finish(dispose);
        }
    }

    /// Ends a fade at once (a reset): the outgoing engine goes to `dispose`.
    pub fn finish(&mut self, dispose: impl FnOnce(Box<Engine>) -> Result<(), Box<Engine>>) {
        if let Some(old) = self.fading.take() {
            self.garbage = dispose(old).err();
        }
    }

    /// Offers an engine that could not be handed back before to `dispose` again.
    pub fn collect(&mut self, dispose: impl FnOnce(Box<Engine>) -> Result<(), Box<Engine>>) {
        if let Some(old) = self.garbage.take() {
            self.garbage = dispose(old).err();
        }
    }
}
