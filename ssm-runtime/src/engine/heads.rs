//! The output heads: the last layer's outputs to audio, per head and channel.

use std::ops::Range;

use crate::model::Model;

/// What a block writes: one channel, or a stereo pair.
pub enum Outputs<'a> {
    /// A mono model's head, or a stereo model's two channels folded to their mean.
    Mono(&'a mut [f32]),
    /// Left and right (of equal length); a mono model writes its one channel to both.
    Stereo(&'a mut [f32], &'a mut [f32]),
}

impl<'a> Outputs<'a> {
    /// A stereo pair cut to the shorter of `left` and `right`.
    pub fn stereo(left: &'a mut [f32], right: &'a mut [f32]) -> Outputs<'a> {
        let n = left.len().min(right.len());
        Outputs::Stereo(&mut left[..n], &mut right[..n])
    }

    /// Samples per channel (a stereo pair's shorter channel).
    pub fn len(&self) -> usize {
        match self {
            Outputs::Mono(out) => out.len(),
            Outputs::Stereo(left, right) => left.len().min(right.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same channels, borrowed again (to hand to a callee and keep).
    pub fn reborrow(&mut self) -> Outputs<'_> {
        let len = self.len();
        self.part(0..len)
    }

    /// Samples `at` of every channel.
    pub fn part(&mut self, at: Range<usize>) -> Outputs<'_> {
        match self {
            Outputs::Mono(out) => Outputs::Mono(&mut out[at]),
            Outputs::Stereo(left, right) => Outputs::Stereo(&mut left[at.clone()], &mut right[at]),
        }
    }

    /// Every channel, left first.
    pub fn channels(&mut self) -> impl Iterator<Item = &mut [f32]> {
        let (first, second): (&mut [f32], Option<&mut [f32]>) = match self {
            Outputs::Mono(out) => (out, None),
            Outputs::Stereo(left, right) => (left, Some(right)),
        };
        std::iter::once(first).chain(second)
    }
}

/// One output: weights over the last layer's outputs and a bias, before the output scale.
#[derive(Clone)]
struct Channel {
    weight: Vec<f32>,
    bias: f32,
}

impl Channel {
    /// `(b + read + h·w)·scale + offset` (`read`: the channel's read of the first layer's
    /// states, 0 without), in the one order of operations the engine uses awake and asleep.
    #[inline(always)]
    fn out(&self, h: &[f32], read: f32, scale: f32, offset: f32) -> f32 {
        let v = h
            .iter()
            .zip(&self.weight)
            .fold(self.bias + read, |acc, (h, w)| h.mul_add(*w, acc));
        v.mul_add(scale, offset)
    }
}

/// Every head of a model, each ready to play: its left, right and mid channels.
pub(super) struct Heads {
    /// per head `[left, right, mid]`: a stereo head's channels and their mean (what a mono
    /// output of a stereo head plays), all three the head itself for a mono head. Why the
    /// mean is a channel of its own rather than the mean of two outputs: a mono render of a
    /// stereo model then costs one head, as a mono model's does; built here so that
    /// selecting a head on the audio thread allocates nothing.
    heads: Vec<[Channel; 3]>,
    channels: usize,
    /// whether the channels read the first layer's states (a value per head and channel a
    /// sample, head-major)
    reads: bool,
    selected: usize,
    scale: f32,
    offset: f32,
    /// the selected head's `[left, right, mid]` at the last layer's rest output
    rest: [f32; 3],
}

impl Heads {
    pub(super) fn new(model: &Model) -> Heads {
        let heads = (0..model.head_count())
            .map(|h| {
                let channel = |c: usize| {
                    let (weight, bias) = model.head_channel(h, c);
                    Channel {
                        weight: weight.to_vec(),
                        bias,
                    }
                };
                let (left, right) = (channel(0), channel(model.channels - 1));
                let mid = if model.channels == 1 {
                    // a mono head plays itself on every output, bit for bit
                    left.clone()
                } else {
                    let (weight, bias) = model.head_mean(h);
                    Channel { weight, bias }
                };
                [left, right, mid]
            })
            .collect();
        Heads {
            heads,
            channels: model.channels,
            reads: model.head_state_weight.is_some(),
            selected: 0,
            scale: model.info.norm_std as f32,
            offset: model.info.norm_mean as f32,
            rest: [0.0; 3],
        }
    }

    pub(super) fn count(&self) -> usize {
        self.heads.len()
    }

    pub(super) fn selected(&self) -> usize {
        self.selected
    }

    pub(super) fn channels(&self) -> usize {
        self.channels
    }

    /// Selects head `head` (< count); the rest outputs follow at the next `set_rest`.
    pub(super) fn select(&mut self, head: usize) {
        self.selected = head;
    }

    /// The selected head's reads `[left, right, mid]` from a sample's reads (all of every
    /// head's channels).
    #[inline(always)]
    fn read(&self, reads: &[f32]) -> [f32; 3] {
        if !self.reads {
            return [0.0; 3];
        }
        let at = self.selected * self.channels;
        let (l, r) = (reads[at], reads[at + self.channels - 1]);
        [l, r, if self.channels == 1 { l } else { 0.5 * (l + r) }]
    }

    /// Remembers the selected head's outputs at the last layer's rest output `h` and the
    /// reads at rest.
    pub(super) fn set_rest(&mut self, h: &[f32], reads: &[f32]) {
        let play = &self.heads[self.selected];
        let read = self.read(reads);
        self.rest = std::array::from_fn(|i| play[i].out(h, read[i], self.scale, self.offset));
    }

    /// Fills samples `at` of `out` with the rest outputs.
    pub(super) fn write_rest(&self, out: &mut Outputs<'_>, at: Range<usize>) {
        match out {
            Outputs::Mono(o) => o[at].fill(self.rest[2]),
            Outputs::Stereo(l, r) => {
                l[at.clone()].fill(self.rest[0]);
                r[at].fill(self.rest[1]);
            }
        }
    }

    /// Writes samples `at` of `out` from the last layer's outputs `h` (a row of `stride`
    /// values a sample, the first `width` of each read) and the heads' reads of the first
    /// layer's states (`reads`, every head's channels a sample).
    pub(super) fn write(
        &self,
        out: &mut Outputs<'_>,
        at: Range<usize>,
        h: &[f32],
        stride: usize,
        reads: &[f32],
    ) {
        let play = &self.heads[self.selected];
        let width = play[0].weight.len();
        let per_sample = if self.reads {
            self.heads.len() * self.channels
        } else {
            0
        };
        let read = |n: usize| self.read(&reads[n * per_sample..]);
        let rows = h.chunks(stride).map(|row| &row[..width]).enumerate();
        let (scale, offset) = (self.scale, self.offset);
        match out {
            Outputs::Mono(o) => {
                for (o, (n, h)) in o[at].iter_mut().zip(rows) {
                    *o = play[2].out(h, read(n)[2], scale, offset);
                }
            }
            Outputs::Stereo(l, r) => {
                let stereo = self.channels > 1;
                let pairs = l[at.clone()].iter_mut().zip(r[at].iter_mut());
                for ((l, r), (n, h)) in pairs.zip(rows) {
                    let read = read(n);
                    *l = play[0].out(h, read[0], scale, offset);
                    *r = if stereo {
                        play[1].out(h, read[1], scale, offset)
                    } else {
                        *l
                    };
                }
            }
        }
    }
}
