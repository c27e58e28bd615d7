//! Training checkpoints: weights, Adam moments and the loop's state in one safetensors file,
//! written atomically (temp file + rename) so an interrupted run always finds a whole one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::Norm;
use crate::optim::Adam;

/// Where the loop stands, and what it has logged so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Epochs completed (fine-tuning epochs included).
    pub epochs_done: u64,
    pub adam_step: i64,
    pub norm: Norm,
    /// The training options the run started with, to refuse resuming a different run.
    pub fingerprint: String,
    pub log: Vec<LogRow>,
    /// Wall-clock seconds spent training so far, over all sessions.
    pub seconds: f64,
}

/// One line of the CSV log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRow {
    pub epoch: u64,
    pub steps: i64,
    pub lr: f64,
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
    pub test_loss: Option<f64>,
    pub audio_seconds_per_second: f64,
}

const STATE_KEY: &str = "trainer_state";

fn tensor_bytes(t: &Tensor) -> Result<(Vec<usize>, Vec<u8>)> {
    let t = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = Vec::try_from(t.flatten(0, -1))?;
    Ok((shape, data.iter().flat_map(|x| x.to_le_bytes()).collect()))
}

pub fn save(
    path: &Path,
    params: &BTreeMap<String, Tensor>,
    adam: &Adam,
    state: &LoopState,
) -> Result<()> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, map) in [("model", params), ("adam_m", &adam.m), ("adam_v", &adam.v)] {
        for (name, t) in map {
            let (shape, bytes) = tensor_bytes(t)?;
            owned.push((format!("{prefix}/{name}"), shape, bytes));
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_>>()?;
    let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
    let bytes = safetensors::serialize(views, Some(meta))?;
    ssm_runtime::fsutil::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Restores weights (into `params`, in place) and the optimizer, and returns the loop state.
pub fn load(path: &Path, params: &BTreeMap<String, Tensor>, adam: &mut Adam) -> Result<LoopState> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a checkpoint", path.display()))?;
    let state: LoopState = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .map(|s| serde_json::from_str(s))
        .transpose()?
        .with_context(|| format!("{} has no trainer state", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)?;
    let read = |name: &str, like: &Tensor| -> Result<Option<Tensor>> {
        let Ok(view) = st.tensor(name) else {
            return Ok(None);
        };
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if shape != like.size() {
            bail!(
                "checkpoint tensor {name} has shape {shape:?}, the model expects {:?}",
                like.size()
            );
        }
        Ok(Some(
            Tensor::from_slice(&data)
                .reshape(&shape)
                .to_device(like.device()),
        ))
    };
    let _guard = tch::no_grad_guard();
    for (name, p) in params {
        let t = read(&format!("model/{name}"), p)?
            .with_context(|| format!("checkpoint lacks weight {name}"))?;
        p.shallow_clone().copy_(&t);
        if let Some(m) = read(&format!("adam_m/{name}"), p)? {
            adam.m.insert(name.clone(), m);
        }
        if let Some(v) = read(&format!("adam_v/{name}"), p)? {
            adam.v.insert(name.clone(), v);
        }
    }
    adam.step = state.adam_step;
    Ok(state)
}

/// The log as CSV text.
pub fn csv(log: &[LogRow]) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.6}"));
    let mut out =
        String::from("epoch,steps,lr,train_loss,valid_loss,test_loss,audio_seconds_per_second\n");
    for r in log {
        out += &format!(
            "{},{},{:.6e},{:.6},{},{},{:.3}\n",
            r.epoch,
            r.steps,
            r.lr,
            r.train_loss,
            opt(r.valid_loss),
            opt(r.test_loss),
            r.audio_seconds_per_second
        );
    }
    out
}
