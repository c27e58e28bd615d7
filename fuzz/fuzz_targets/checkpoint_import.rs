//! Any bytes given to the PyTorch checkpoint importer give a model or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssm_runtime::checkpoint::import_pth_bytes;

fuzz_target!(|data: &[u8]| {
    let _ = import_pth_bytes(data, 16_000, 1_000);
});
