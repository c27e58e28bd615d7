//! A minimal unpickler for PyTorch `state_dict` files (`torch.save`, zip format).
//!
//! It understands exactly the opcodes `torch.save` emits for a dict of tensors and builds
//! tensor *descriptions* (storage key, dtype, offset, shape, stride); it never executes
//! anything. Unknown opcodes or globals are errors, not guesses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a PyTorch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Float,
    ComplexFloat,
}

impl StorageKind {
    pub fn element_bytes(self) -> usize {
        match self {
            StorageKind::Float => 4,
            StorageKind::ComplexFloat => 8,
        }
    }
}

/// Where a tensor's values live inside the checkpoint archive.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: String,
    pub kind: StorageKind,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A value on the pickle machine's stack or in its memo. Compound values are shared, not
/// copied, when the memo hands them out again (as Python shares the object), so a pickle
/// that fetches one value many times costs no more memory than one that does not.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Str(Rc<str>),
    Tuple(Rc<Tuple>),
    Dict(Rc<RefCell<Dict>>),
    Global(Rc<str>),
    Storage { kind: StorageKind, key: Rc<str> },
    Tensor(Rc<TensorRef>),
    Mark,
}

#[derive(Debug)]
struct Tuple(Vec<Value>);

#[derive(Debug, Default)]
struct Dict(Vec<(Value, Value)>);

impl Value {
    fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Tuple(items)))
    }

    fn dict() -> Value {
        Value::Dict(Rc::default())
    }

    fn string(bytes: &[u8]) -> Result<Value> {
        let s = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8")?;
        Ok(Value::Str(s.into()))
    }
}

// Values nest as deeply as a pickle likes (200 000 tuples in one another is 600 kB): they
// are dropped from a work list, never by recursion, which would overflow the stack.
impl Drop for Tuple {
    fn drop(&mut self) {
        drop_flat(std::mem::take(&mut self.0));
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        drop_flat(self.0.drain(..).flat_map(|(k, v)| [k, v]).collect());
    }
}

/// Drops `pending` and everything only it holds, emptying each compound value before it
/// goes so that its own drop finds nothing to walk.
fn drop_flat(mut pending: Vec<Value>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Tuple(t) => {
                if let Some(mut t) = Rc::into_inner(t) {
                    pending.append(&mut t.0);
                }
            }
            Value::Dict(d) => {
                if let Some(d) = Rc::into_inner(d) {
                    pending.extend(d.into_inner().0.drain(..).flat_map(|(k, v)| [k, v]));
                }
            }
            _ => {}
        }
    }
}

type Result<T> = std::result::Result<T, String>;

/// Parses `data.pkl` into `name -> tensor reference`, in file order.
pub fn read_state_dict(pkl: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    let mut m = Machine {
        data: pkl,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    let Value::Dict(dict) = root else {
        return Err("the pickle is not a dictionary of tensors".into());
    };
    let dict = dict.borrow();
    dict.0
        .iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Ok((name.to_string(), TensorRef::clone(t))),
            (Value::Str(name), _) => Err(format!("entry {name:?} is not a tensor")),
            _ => Err("dictionary key is not a string".into()),
        })
        .collect()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated GLOBAL")?;
        let s = String::from_utf8(rest[..n].to_vec()).map_err(|_| "GLOBAL is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.bytes(8)?; // FRAME
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack
                        .push(Value::Global(format!("{module}.{name}").into()));
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.push_memo(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.push_memo(i)?;
                }
                b'(' => self.stack.push(Value::Mark),
                b')' => self.stack.push(Value::tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::tuple(items));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = Value::string(self.bytes(n)?)?;
                    self.stack.push(s);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = Value::string(self.bytes(n)?)?;
                    self.stack.push(s);
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err("integer too large".into());
                    }
                    let b = self.bytes(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                0x88 => self.stack.push(Value::Bool),
                0x89 => self.stack.push(Value::Bool),
                b'N' => self.stack.push(Value::None),
                b'}' => self.stack.push(Value::dict()),
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.dict_insert(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.dict_insert(items)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.stack.push(reduce(func, args)?);
                }
                b'b' => {
                    // BUILD: OrderedDict state or tensor metadata; nothing we need.
                    self.pop()?;
                }
                b'.' => return self.pop(),
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    fn push_memo(&mut self, i: u32) -> Result<()> {
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("memo {i} missing"))?;
        self.stack.push(v);
        Ok(())
    }

    fn dict_insert(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err("odd number of dictionary items".into());
        }
        let Value::Dict(d) = self.top()? else {
            return Err("SETITEM on a non-dictionary".into());
        };
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.0.push((k, v));
        }
        Ok(())
    }
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.0.as_slice() {
        [Value::Str(tag), Value::Global(class), Value::Str(key), _location, _numel]
            if &**tag == "storage" =>
        {
            let kind = match &**class {
                "torch.FloatStorage" => StorageKind::Float,
                "torch.ComplexFloatStorage" => StorageKind::ComplexFloat,
                other => return Err(format!("unsupported storage type {other}")),
            };
            Ok(Value::Storage {
                kind,
                key: key.clone(),
            })
        }
        _ => Err("unrecognised persistent id".into()),
    }
}

fn ints(v: &Value) -> Result<Vec<usize>> {
    let Value::Tuple(t) = v else {
        return Err("expected a tuple of integers".into());
    };
    t.0.iter()
        .map(|i| match i {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err("expected a non-negative integer".into()),
        })
        .collect()
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(name) = func else {
        return Err("REDUCE of a non-callable".into());
    };
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match &*name {
        "collections.OrderedDict" => Ok(Value::dict()),
        "torch._utils._rebuild_tensor_v2" => match args.0.as_slice() {
            [Value::Storage { kind, key }, Value::Int(offset), shape, stride, ..]
                if *offset >= 0 =>
            {
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: key.to_string(),
                    kind: *kind,
                    offset: *offset as usize,
                    shape: ints(shape)?,
                    stride: ints(stride)?,
                })))
            }
            _ => Err("malformed _rebuild_tensor_v2 call".into()),
        },
        "torch._utils._rebuild_parameter" => match args.0.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err("malformed _rebuild_parameter call".into()),
        },
        other => Err(format!(
            "the checkpoint calls {other}, which a state_dict never needs"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_callables() {
        // GLOBAL os.system, EMPTY_TUPLE, REDUCE, STOP
        let pkl = b"\x80\x02cos\nsystem\n)R.";
        let err = read_state_dict(pkl).unwrap_err();
        assert!(err.contains("os.system"), "{err}");
    }

    #[test]
    fn rejects_truncation() {
        assert!(read_state_dict(b"\x80\x02X\x10\x00\x00\x00abc").is_err());
        assert!(read_state_dict(b"").is_err());
    }

    /// Each step pairs the memoised value with itself and memoises the pair: 60 steps would
    /// make 2^60 values if a memo fetch copied (a 577-byte file once took 4 GiB in 3 s).
    #[test]
    fn memo_fetches_share_their_value() {
        let mut pkl = b"\x80\x02)q\x00".to_vec();
        for _ in 0..60 {
            pkl.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        pkl.push(b'.');
        let err = read_state_dict(&pkl).unwrap_err();
        assert!(err.contains("not a dictionary"), "{err}");
    }

    /// 200 000 tuples inside one another: built and dropped without recursion (this once
    /// overflowed the stack and aborted the process).
    #[test]
    fn deep_nesting_is_dropped_without_recursion() {
        let mut pkl = b"\x80\x02)".to_vec();
        pkl.extend(std::iter::repeat_n(0x85u8, 200_000));
        pkl.push(b'.');
        let err = read_state_dict(&pkl).unwrap_err();
        assert!(err.contains("not a dictionary"), "{err}");
        // the same inside a dictionary, which the memo also holds
        let mut pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00k)".to_vec();
        pkl.extend(std::iter::repeat_n(0x85u8, 200_000));
        pkl.extend_from_slice(b"s.");
        let err = read_state_dict(&pkl).unwrap_err();
        assert!(err.contains("is not a tensor"), "{err}");
    }

    #[test]
    fn long1_sign_extends() {
        // LONG1 with 1 byte 0xff = -1, wrapped in a dict value to reach the top-level check.
        let mut m = Machine {
            data: b"\x8a\x01\xff.",
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        };
        assert!(matches!(m.run().unwrap(), Value::Int(-1)));
    }
}
