//! The little binary codec shared by the stored forms strata writes itself: sketches and set
//! members (base64 in documents), the write-ahead log's records and the consolidator's
//! checkpoints. Varints (LEB128) for counts and ids, zigzag varints for signed numbers, raw
//! little-endian bytes for `f64` (exact, and NaN-free by the ingest rules).

/// Input ended early, or a field does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed binary data")]
pub struct Malformed;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length, then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads what the `put_*` functions wrote, front to back.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        if self.0.len() < N {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("length checked"))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    /// A varint that must fit `usize` and be at most `max` (a length read from a file must not
    /// make the reader allocate what the file does not hold).
    pub(crate) fn len(&mut self, max: usize) -> Result<usize, Malformed> {
        let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        if n > max {
            return Err(Malformed);
        }
        Ok(n)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Malformed> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, Malformed> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len(self.0.len())?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_back_as_written() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        put_i64(&mut out, i64::MIN);
        put_i64(&mut out, -3);
        put_f64(&mut out, -0.5);
        put_bytes(&mut out, "héllo".as_bytes());
        let mut r = Reader(&out);
        assert_eq!(r.varint(), Ok(u64::MAX));
        assert_eq!(r.i64(), Ok(i64::MIN));
        assert_eq!(r.i64(), Ok(-3));
        assert_eq!(r.f64(), Ok(-0.5));
        assert_eq!(r.str(), Ok("héllo"));
        assert!(r.is_empty());
        assert_eq!(r.byte(), Err(Malformed));
    }

    #[test]
    fn a_length_past_the_input_is_malformed() {
        let mut out = Vec::new();
        put_varint(&mut out, 1 << 40);
        out.push(1);
        assert_eq!(Reader(&out).bytes(), Err(Malformed));
    }
}
