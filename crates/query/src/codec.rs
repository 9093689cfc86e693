//! Bit-level codes of the version-2 block files: fixed-width fields and Rice codes,
//! written least significant bit first, and activation values as their 19 significant
//! f32 bits.
//!
//! Hand-written rather than taken from a crate: the readers must never panic on any
//! bytes (every read is bounds-checked and reports an overrun), which the bit-packing
//! crates we weighed (`bitpacking`, SIMD-only, fixed 32-bit lanes) do not promise.

/// Rice quotients of this many zeros or more escape to a raw 64-bit value.
const RICE_ESCAPE: u32 = 31;
/// Bits one unaligned 8-byte load always yields, whatever the bit offset.
const PEEK_BITS: u32 = 57;

/// Appends bit fields to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    filled: u32,
}

impl BitWriter {
    /// Appends the low `width` (at most 64) bits of `value`.
    pub(crate) fn put(&mut self, value: u64, width: u32) {
        if width > 32 {
            self.put(value & 0xffff_ffff, 32);
            self.put(value >> 32, width - 32);
            return;
        }
        if width == 0 {
            return;
        }
        let value = value & (u64::MAX >> (64 - width));
        self.acc |= value << self.filled;
        self.filled += width;
        while self.filled >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.filled -= 8;
        }
    }

    /// Appends `value` Rice-coded with parameter `k`: the quotient `value >> k` in
    /// unary (zeros closed by a one), then the low `k` bits. Quotients of
    /// [`RICE_ESCAPE`] or more are written as the escape and the raw 64-bit value.
    pub(crate) fn put_rice(&mut self, value: u64, k: u32) {
        let quotient = value >> k;
        if quotient >= u64::from(RICE_ESCAPE) {
            self.put(1 << RICE_ESCAPE, RICE_ESCAPE + 1);
            self.put(value, 64);
        } else {
            self.put(1 << quotient, quotient as u32 + 1);
            self.put(value, k);
        }
    }

    /// Bits written so far.
    pub(crate) fn position(&self) -> u64 {
        self.bytes.len() as u64 * 8 + u64::from(self.filled)
    }

    /// Takes the whole bytes written so far (the bits of a partial last byte stay).
    pub(crate) fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// The bytes written, the last one padded with zeros.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// A read past the end of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overrun;

/// Reads bit fields from a byte slice; every read past its end is an [`Overrun`].
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    position: u64,
}

impl<'a> BitReader<'a> {
    /// Starts at bit `position` of `bytes`.
    pub(crate) fn new(bytes: &'a [u8], position: u64) -> Self {
        Self { bytes, position }
    }

    /// The next 64 bits (zeros past the end) without consuming them.
    #[inline]
    fn peek(&self) -> u64 {
        let byte = (self.position / 8) as usize;
        let shift = (self.position % 8) as u32;
        if let Some(word) = self.bytes.get(byte..byte.saturating_add(8)) {
            let low = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes) >> shift;
            if shift == 0 {
                return low;
            }
            let high = u64::from(self.bytes.get(byte + 8).copied().unwrap_or(0));
            return low | (high << (64 - shift));
        }
        self.peek_tail()
    }

    /// At least the next [`PEEK_BITS`] bits (zeros past the end; bits above them
    /// unspecified): one load where the block has 8 bytes left.
    #[inline]
    fn peek_short(&self) -> u64 {
        let byte = (self.position / 8) as usize;
        match self.bytes.get(byte..byte.saturating_add(8)) {
            Some(word) => {
                <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes) >> (self.position % 8)
            }
            None => self.peek_tail(),
        }
    }

    /// [`Self::peek`] in a block's last 8 bytes.
    #[cold]
    fn peek_tail(&self) -> u64 {
        let byte = (self.position / 8) as usize;
        let shift = (self.position % 8) as u32;
        let mut word = [0u8; 16];
        if let Some(rest) = self.bytes.get(byte..) {
            let n = rest.len().min(16);
            word[..n].copy_from_slice(&rest[..n]);
        }
        let wide = u128::from_le_bytes(word);
        (wide >> shift) as u64
    }

    fn consume(&mut self, bits: u32) -> Result<(), Overrun> {
        let end = self.position + u64::from(bits);
        if end > self.bytes.len() as u64 * 8 {
            return Err(Overrun);
        }
        self.position = end;
        Ok(())
    }

    /// The next `width` (at most 64) bits.
    pub(crate) fn get(&mut self, width: u32) -> Result<u64, Overrun> {
        if width == 0 {
            return Ok(0);
        }
        if width > 64 {
            return Err(Overrun);
        }
        let word = if width <= PEEK_BITS {
            self.peek_short()
        } else {
            self.peek()
        };
        let value = word & (u64::MAX >> (64 - width));
        self.consume(width)?;
        Ok(value)
    }

    /// The next Rice-coded value with parameter `k` (see [`BitWriter::put_rice`]).
    /// Always inlined into the block decoders: it runs once per code read (29,312 calls
    /// of 52 instructions for one top-features answer; `#[inline]` alone left it a call).
    #[inline(always)]
    pub(crate) fn rice(&mut self, k: u32) -> Result<u64, Overrun> {
        let word = self.peek_short();
        // Only the low PEEK_BITS bits are known: a one among them is the quotient's
        // end, none means PEEK_BITS or more zeros, which is the escape.
        let zeros = (word | (1 << PEEK_BITS)).trailing_zeros();
        if zeros < RICE_ESCAPE && zeros + 1 + k <= PEEK_BITS {
            // Quotient and remainder both in the word already read.
            let low = (word >> (zeros + 1)) & ((1u64 << k) - 1);
            self.consume(zeros + 1 + k)?;
            return Ok((u64::from(zeros) << k) | low);
        }
        if zeros >= RICE_ESCAPE {
            self.consume(RICE_ESCAPE + 1)?;
            return self.get(64);
        }
        self.consume(zeros + 1)?;
        let low = self.get(k)?;
        Ok((u64::from(zeros) << k) | low)
    }

    /// Whether the reader stands in the last byte of its slice (the rest padding) or
    /// exactly at its end: a block decoded to its end used all of its bytes.
    pub(crate) fn at_end(&self) -> bool {
        self.position.div_ceil(8) == self.bytes.len() as u64
    }

    /// Skips `count` fields of `width` bits.
    pub(crate) fn skip(&mut self, count: u64, width: u32) -> Result<(), Overrun> {
        let bits = count.checked_mul(u64::from(width)).ok_or(Overrun)?;
        let end = self.position.checked_add(bits).ok_or(Overrun)?;
        if end > self.bytes.len() as u64 * 8 {
            return Err(Overrun);
        }
        self.position = end;
        Ok(())
    }
}

/// Appends `value` as LEB128 (7 bits a byte, low first, the high bit of every byte but
/// the last set).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 number at `bytes[*at..]`, `*at` moved past it; `None` past the end or
/// for more than 64 bits.
pub(crate) fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if bits.checked_shl(shift)? >> shift != bits {
            return None;
        }
        value |= bits << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// A histogram as stored in `features.arrow` (query format 5): its bins up to the last
/// that is not zero, each a LEB128 number (an empty histogram is no bytes).
pub(crate) fn pack_histogram(bins: &[u32]) -> Vec<u8> {
    let used = bins
        .iter()
        .rposition(|n| *n != 0)
        .map_or(0, |last| last + 1);
    let mut out = Vec::with_capacity(used);
    for n in &bins[..used] {
        put_varint(&mut out, u64::from(*n));
    }
    out
}

/// The `bins` bins of a histogram written by [`pack_histogram`]; `None` unless the bytes
/// are exactly that (at most `bins` numbers of 32 bits, the last not zero).
pub(crate) fn unpack_histogram(bytes: &[u8], bins: usize) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(bins);
    let mut at = 0;
    while at < bytes.len() {
        out.push(u32::try_from(read_varint(bytes, &mut at)?).ok()?);
    }
    if out.len() > bins || out.last() == Some(&0) {
        return None;
    }
    out.resize(bins, 0);
    Some(out)
}

/// Bits needed to write `value` (0 for 0).
pub(crate) fn bits_for(value: u64) -> u32 {
    64 - value.leading_zeros()
}

/// The Rice parameter that writes `values` in the fewest bits (of the two nearest the
/// logarithm of their mean).
pub(crate) fn rice_parameter(values: impl Iterator<Item = u64> + Clone) -> u32 {
    let (sum, count) = values
        .clone()
        .fold((0u128, 0u128), |(s, c), v| (s + u128::from(v), c + 1));
    if count == 0 {
        return 0;
    }
    let mean = (sum / count) as u64;
    let guess = bits_for(mean).saturating_sub(1).min(30);
    let cost = |k: u32| -> u128 {
        values
            .clone()
            .map(|v| {
                let q = v >> k;
                if q >= u64::from(RICE_ESCAPE) {
                    u128::from(RICE_ESCAPE + 1 + 64)
                } else {
                    u128::from(q) + 1 + u128::from(k)
                }
            })
            .sum()
    };
    let candidates = [guess.saturating_sub(1), guess, (guess + 1).min(30)];
    candidates
        .into_iter()
        .min_by_key(|k| (cost(*k), *k))
        .unwrap_or(guess)
}

/// Low f32 bits an activation value leaves zero (the Parquet keeps 11 significant bits).
pub(crate) const VALUE_DROPPED_BITS: u32 = 13;
/// Bits of a stored value code.
pub(crate) const VALUE_CODE_BITS: u32 = 32 - VALUE_DROPPED_BITS;

/// The stored code of activation `value`: its f32 bits without the low
/// [`VALUE_DROPPED_BITS`], which must be zero (values are rounded to f16 precision when
/// the Parquet is written). Codes of positive values order as the values do.
pub(crate) fn value_code(value: f32) -> Option<u32> {
    let bits = value.to_bits();
    (bits & ((1 << VALUE_DROPPED_BITS) - 1) == 0).then_some(bits >> VALUE_DROPPED_BITS)
}

/// The activation value of a stored code.
pub(crate) fn code_value(code: u32) -> f32 {
    f32::from_bits(code << VALUE_DROPPED_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_pack_to_their_used_bins_and_read_back() {
        let bins = [3u32, 0, 200, 70_000, u32::MAX, 1, 0, 0];
        let packed = pack_histogram(&bins);
        assert_eq!(packed.len(), 1 + 1 + 2 + 3 + 5 + 1);
        assert_eq!(unpack_histogram(&packed, 8), Some(bins.to_vec()));
        assert_eq!(pack_histogram(&[0; 20]), Vec::<u8>::new());
        assert_eq!(unpack_histogram(&[], 20), Some(vec![0; 20]));
        // A trailing zero, too many bins, a number past 32 bits, a cut number.
        assert_eq!(unpack_histogram(&[1, 0], 20), None);
        assert_eq!(unpack_histogram(&[1; 21], 20), None);
        assert_eq!(unpack_histogram(&[0xff, 0xff, 0xff, 0xff, 0x1f], 20), None);
        assert_eq!(unpack_histogram(&[0x80], 20), None);
        assert_eq!(read_varint(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn fields_and_rice_codes_round_trip() {
        let mut writer = BitWriter::default();
        let fields = [(5u64, 3u32), (0, 0), (u64::MAX, 64), (1234, 11), (7, 3)];
        let rice = [0u64, 1, 17, 4000, u64::MAX, 3];
        for (value, width) in fields {
            writer.put(value, width);
        }
        for value in rice {
            writer.put_rice(value, 4);
        }
        let bytes = writer.finish();
        let mut reader = BitReader::new(&bytes, 0);
        for (value, width) in fields {
            assert_eq!(reader.get(width), Ok(value));
        }
        for value in rice {
            assert_eq!(reader.rice(4), Ok(value));
        }
        assert!(reader.get(16).is_err());
        assert_eq!(BitReader::new(&[], 0).rice(0), Err(Overrun));
    }

    #[test]
    fn every_rice_parameter_reads_back_at_every_offset() {
        // Offsets 0..8 and widths up to 64 take both the one-load and the slow paths,
        // in the middle of a block and in its last bytes.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for lead in 0..8u32 {
            let mut writer = BitWriter::default();
            writer.put(0, lead);
            let mut written = Vec::new();
            for k in 0..32u32 {
                for _ in 0..6 {
                    let value = next() >> (next() % 64);
                    let width = (next() % 65) as u32;
                    writer.put_rice(value, k);
                    writer.put(value, width);
                    written.push((k, value, width));
                }
            }
            let bytes = writer.finish();
            let mut reader = BitReader::new(&bytes, u64::from(lead));
            for (k, value, width) in written {
                assert_eq!(reader.rice(k), Ok(value), "k {k}");
                let mask = if width == 64 {
                    u64::MAX
                } else {
                    (1 << width) - 1
                };
                assert_eq!(reader.get(width), Ok(value & mask), "width {width}");
            }
            assert!(reader.at_end());
        }
    }

    #[test]
    fn rice_parameter_fits_the_values() {
        assert_eq!(rice_parameter([0u64, 0, 1].into_iter()), 0);
        let k = rice_parameter([250u64, 300, 200, 260].into_iter());
        assert!((6..=8).contains(&k), "{k}");
    }

    #[test]
    fn values_keep_their_order_and_bits() {
        let values = [0.37f32, 0.74, 1.0, 14.8, 1e-20, 123456.0];
        for value in values {
            let rounded = saeidx_format::tables::round_to_half_precision(value);
            let code = value_code(rounded).unwrap();
            assert_eq!(code_value(code).to_bits(), rounded.to_bits());
        }
        assert!(value_code(0.1).is_none());
        assert!(value_code(1.0).unwrap() < value_code(1.5).unwrap());
    }
}
