//! Structure-aware fuzzing of the checkpoint importer: a program of the pickle opcodes a
//! state_dict uses (tuples nested at will, dictionaries, memo puts and gets, storages,
//! tensor rebuilds with any offset and shape), inside a zip beside a storage that may be
//! deflated to many times its size. Each gives a model or an error, never a panic, and never
//! more memory than the importer's budget.
#![no_main]

use std::io::Write;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ssm_runtime::checkpoint::import_pth_bytes;

#[derive(Arbitrary, Debug)]
enum Op {
    EmptyTuple,
    Tuple(u8),
    Mark,
    TupleToMark,
    EmptyDict,
    SetItem,
    SetItems,
    Put(u8),
    Get(u8),
    Str(u8),
    Int(u64),
    Global(u8),
    Persistent,
    Reduce,
    Build,
    /// a run of the same opcode: deep nesting and memo chains in few bytes
    Repeat(u16, Box<Op>),
}

const GLOBALS: [&[u8]; 4] = [
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ctorch._utils\n_rebuild_parameter\n",
    b"ccollections\nOrderedDict\n",
    b"ctorch\nFloatStorage\n",
];
const STRINGS: [&str; 5] = ["storage", "0", "cpu", "seq_midi.1.seq.0.seq.norm", "w"];

fn emit(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::EmptyTuple => out.push(b')'),
        Op::Tuple(n) => out.push(0x85 + n % 3),
        Op::Mark => out.push(b'('),
        Op::TupleToMark => out.push(b't'),
        Op::EmptyDict => out.push(b'}'),
        Op::SetItem => out.push(b's'),
        Op::SetItems => out.push(b'u'),
        Op::Put(i) => out.extend([b'q', *i % 8]),
        Op::Get(i) => out.extend([b'h', *i % 8]),
        Op::Str(i) => {
            let s = STRINGS[*i as usize % STRINGS.len()];
            out.push(b'X');
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        }
        Op::Int(v) => {
            out.extend([0x8a, 8]);
            out.extend(v.to_le_bytes());
        }
        Op::Global(i) => out.extend(GLOBALS[*i as usize % GLOBALS.len()]),
        Op::Persistent => out.push(b'Q'),
        Op::Reduce => out.push(b'R'),
        Op::Build => out.push(b'b'),
        Op::Repeat(n, op) => {
            if !matches!(**op, Op::Repeat(..)) {
                for _ in 0..*n % 4096 {
                    emit(op, out);
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Checkpoint {
    program: Vec<Op>,
    /// storage length in kB, deflated: up to 4 MB of zeros
    storage_kb: u16,
}

fuzz_target!(|c: Checkpoint| {
    let mut pkl = vec![0x80, 2];
    for op in &c.program {
        emit(op, &mut pkl);
    }
    pkl.push(b'.');
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pkl).unwrap();
    let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("archive/data/0", deflated).unwrap();
    zip.write_all(&vec![0u8; (c.storage_kb as usize % 4096) << 10]).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let _ = import_pth_bytes(&bytes, 16_000, 1_000);
});
