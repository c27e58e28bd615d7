//! MAPS: `<root>/<piano>/MUS/MAPS_MUS-<piece>_<piano>.{wav,mid}`. Piano-SSM uses the two
//! Disklavier recordings, ENSTDkAm (ambient microphones) and ENSTDkCl (close microphones).
//! MAPS has no official split: every fifth piece (sorted by name) is held out for testing,
//! and validation uses the test pieces.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::files::{Pair, PairedFiles};
use super::Rates;

pub const PIANOS: [(&str, &str); 2] = [("ambient", "ENSTDkAm"), ("close", "ENSTDkCl")];

/// The pianos a `--train-year` value selects for MAPS: ambient, close or all.
pub fn pianos(selector: &str) -> Result<Vec<&'static str>> {
    match selector {
        "all" => Ok(PIANOS.iter().map(|p| p.1).collect()),
        s => PIANOS
            .iter()
            .find(|p| p.0 == s || p.1 == s)
            .map(|p| vec![p.1])
            .with_context(|| format!("MAPS selection {s:?}: expected ambient, close or all")),
    }
}

/// Head labels: one per piano with `multi_head`.
pub fn heads(multi_head: bool) -> Vec<String> {
    if multi_head {
        PIANOS.iter().map(|p| p.1.to_string()).collect()
    } else {
        vec!["all".into()]
    }
}

fn pieces(root: &Path, piano: &str, head: usize) -> Result<Vec<Pair>> {
    let dir = root.join(piano).join("MUS");
    let listing = std::fs::read_dir(&dir)
        .with_context(|| format!("MAPS folder {} not found", dir.display()))?;
    let mut pairs: Vec<Pair> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .map(|wav| Pair {
            midi: wav.with_extension("mid"),
            wav,
            head,
        })
        .collect();
    pairs.sort_by(|a, b| a.wav.cmp(&b.wav));
    Ok(pairs)
}

pub fn open(root: &Path, rates: Rates, selector: &str, multi_head: bool) -> Result<PairedFiles> {
    if !root.is_dir() {
        bail!("MAPS folder {} does not exist", root.display());
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for piano in pianos(selector)? {
        let head = if multi_head {
            PIANOS.iter().position(|p| p.1 == piano).unwrap()
        } else {
            0
        };
        for (i, pair) in pieces(root, piano, head)?.into_iter().enumerate() {
            if i % 5 == 4 {
                test.push(pair)
            } else {
                train.push(pair)
            }
        }
    }
    if train.is_empty() && test.is_empty() {
        bail!("{}: no MAPS pieces (.wav + .mid) found", root.display());
    }
    // fewer than five pieces: hold out the last one (or share the only one)
    if test.is_empty() {
        test.push(if train.len() > 1 {
            train.pop().unwrap()
        } else {
            train[0].clone()
        });
    }
    PairedFiles::new(
        &format!("MAPS at {}", root.display()),
        train,
        test.clone(),
        test,
        rates,
        heads(multi_head),
        "piano",
    )
}
