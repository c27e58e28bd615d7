//! What the command's tests share: running `piano-ssm` and reading how it failed.
#![allow(dead_code)]

use std::process::{Command, Output};

/// `piano-ssm` with `args`, its output collected.
pub fn piano_ssm(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_piano-ssm"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

/// Exit code 1 (not a panic's 101 or an abort's 134) and a message containing `needle`.
pub fn assert_fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
