//! A network to and from the runtime's model format.

use super::*;

impl Network {
    /// Loads weights from a runtime model (e.g. an imported published checkpoint). The
    /// network trains mono heads: a stereo model loads as its mono fold (each head the mean
    /// of its channels; head weights on the first layer's states are not trained and
    /// left out), and `trainer stereo` fits a stereo head to the trained network.
    pub fn from_runtime(device: Device, model: &Model) -> Result<Network> {
        model.validate().context("model does not validate")?;
        let model = &model.folded_to_mono();
        if model.widths() != WIDTHS {
            bail!(
                "the trainer builds the paper's widths {WIDTHS:?}; this model has {:?}",
                model.widths()
            );
        }
        Ok(Self::from_parts(
            device,
            &model.layers,
            &model.head_weight,
            &model.head_bias,
            model.head_count(),
            model.info.activation,
        ))
    }

    pub(super) fn from_parts(
        device: Device,
        layers_in: &[SsmLayer],
        head_w: &[f32],
        head_b: &[f32],
        heads: usize,
        activation: Activation,
    ) -> Network {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let var = |path: &nn::Path, name: &str, data: &[f32], shape: &[i64]| {
            let t = Tensor::from_slice(data).reshape(shape).to_device(device);
            path.var_copy(name, &t)
        };
        let layers = layers_in
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = &root / "layers" / i;
                let (pn, inp, out) = (l.state as i64, l.inputs as i64, l.outputs as i64);
                NetworkLayer {
                    norm: var(&p, "norm", &l.norm, &[pn]),
                    angle: var(&p, "angle", &l.angle, &[pn]),
                    b: var(&p, "B", &l.b, &[pn, inp, 2]),
                    b_square: l
                        .b_square
                        .as_ref()
                        .map(|b| var(&p, "B_square", b, &[pn, inp, 2])),
                    b_bias: var(&p, "B_bias", &l.b_bias, &[pn, 2]),
                    c: var(&p, "C", &l.c, &[out, pn, 2]),
                    c_bias: var(&p, "C_bias", &l.c_bias, &[out, 2]),
                    skip: l.skip.as_ref().map(|s| var(&p, "skip", s, &[out, inp])),
                    damper: l.damper.as_ref().map(|d| KeyDamper {
                        key: d.key.clone(),
                        norm: var(&p, "damper_norm", &d.norm, &[pn]),
                        angle: var(&p, "damper_angle", &d.angle, &[pn]),
                        fall_frames: d.fall_frames,
                        settle_frames: d.settle_frames,
                    }),
                    state: pn,
                }
            })
            .collect();
        let h = &root / "heads";
        let head_weight = var(
            &h,
            "weight",
            head_w,
            &[heads as i64, *WIDTHS.last().unwrap() as i64],
        );
        let head_bias = var(&h, "bias", head_b, &[heads as i64]);
        Network {
            vs,
            layers,
            head_weight,
            head_bias,
            activation,
            velocity_exponent: layers_in.first().and_then(|l| l.velocity_exponent),
            kernel: Kernel::default_for(device),
        }
    }

    /// The weights in the runtime's format, with `info` as metadata.
    pub fn to_runtime(&self, info: ModelInfo) -> Result<Model> {
        let layers = self
            .layers
            .iter()
            .map(|l| -> Result<SsmLayer> {
                let c = l.c.size();
                Ok(SsmLayer {
                    inputs: l.b.size()[1] as usize,
                    outputs: c[0] as usize,
                    state: l.state as usize,
                    norm: to_vec(&l.norm)?,
                    angle: to_vec(&l.angle)?,
                    b: to_vec(&l.b)?,
                    b_square: l.b_square.as_ref().map(to_vec).transpose()?,
                    b_bias: to_vec(&l.b_bias)?,
                    c: to_vec(&l.c)?,
                    c_bias: to_vec(&l.c_bias)?,
                    skip: l.skip.as_ref().map(to_vec).transpose()?,
                    damper: l
                        .damper
                        .as_ref()
                        .map(|d| -> Result<Damper> {
                            Ok(Damper {
                                key: d.key.clone(),
                                norm: to_vec(&d.norm)?,
                                angle: to_vec(&d.angle)?,
                                fall_frames: d.fall_frames,
                                settle_frames: d.settle_frames,
                            })
                        })
                        .transpose()?,
                    velocity_exponent: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut layers = layers;
        if let Some(first) = layers.first_mut() {
            first.velocity_exponent = self.velocity_exponent;
        }
        let model = Model {
            info,
            layers,
            channels: 1,
            head_weight: to_vec(&self.head_weight)?,
            head_bias: to_vec(&self.head_bias)?,
            head_state_weight: None,
        };
        model
            .validate()
            .context("exported model does not validate")?;
        Ok(model)
    }
}

pub(super) fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )?)
}
