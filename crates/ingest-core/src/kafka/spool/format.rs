//! The spool's on-disk format: record frames, positions, segment names.

use super::*;

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    if id == FRONT { dir.join("front.seg") } else { dir.join(format!("{id:020}.seg")) }
}

pub(super) fn seg_start(id: u64) -> u64 {
    if id == FRONT { FRONT_START } else { SEG_START }
}

pub(super) fn encode_pos((seg, off): (u64, u64)) -> [u8; POS_BYTES] {
    let mut b = [0u8; POS_BYTES];
    b[..8].copy_from_slice(&seg.to_le_bytes());
    b[8..16].copy_from_slice(&off.to_le_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The position encoded in `b` (exactly [`POS_BYTES`]), if its checksum holds.
pub(super) fn decode_pos(b: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; POS_BYTES] = b.try_into().ok()?;
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    (crc32fast::hash(&b[..16]) == crc)
        .then(|| Some((u64::from_le_bytes(b[..8].try_into().ok()?), u64::from_le_bytes(b[8..16].try_into().ok()?))))
        .flatten()
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Frames `e` into `out` (cleared first). `None` if a field exceeds its length prefix.
pub(super) fn encode(e: &Entry<'_>, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(&[0; FRAME]);
    out.extend_from_slice(&e.ts_ms.to_le_bytes());
    for s in [e.topic, e.provider] {
        out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(e.key.len()).ok()?.to_le_bytes());
    out.extend_from_slice(e.key);
    out.push(u8::try_from(e.headers.len()).ok()?);
    for (k, v) in e.headers {
        out.push(u8::try_from(k.len()).ok()?);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).ok()?.to_le_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(e.payload);
    let body_len = out.len() - FRAME;
    if body_len > MAX_RECORD_BYTES {
        return None;
    }
    let crc = crc32fast::hash(&out[FRAME..]);
    out[..4].copy_from_slice(&u32::try_from(body_len).ok()?.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// A decoded body, borrowing from the read buffer.
pub(super) struct Body<'a> {
    pub(super) ts_ms: i64,
    pub(super) topic: &'a str,
    pub(super) provider: &'a str,
    pub(super) key: &'a [u8],
    pub(super) headers: Vec<(&'a str, &'a [u8])>,
    pub(super) payload: &'a [u8],
}

pub(super) fn decode(b: &[u8]) -> Option<Body<'_>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (h, t) = (b.get(..n)?, b.get(n..)?);
        *b = t;
        Some(h)
    }
    fn num<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
        take(b, N)?.try_into().ok()
    }
    let mut b = b;
    let ts_ms = i64::from_le_bytes(num(&mut b)?);
    let n = u16::from_le_bytes(num(&mut b)?) as usize;
    let topic = std::str::from_utf8(take(&mut b, n)?).ok()?;
    let n = u16::from_le_bytes(num(&mut b)?) as usize;
    let provider = std::str::from_utf8(take(&mut b, n)?).ok()?;
    let n = u32::from_le_bytes(num(&mut b)?) as usize;
    let key = take(&mut b, n)?;
    let count = num::<1>(&mut b)?[0];
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = num::<1>(&mut b)?[0] as usize;
        let k = std::str::from_utf8(take(&mut b, n)?).ok()?;
        let n = u32::from_le_bytes(num(&mut b)?) as usize;
        headers.push((k, take(&mut b, n)?));
    }
    Some(Body { ts_ms, topic, provider, key, headers, payload: b })
}

/// The frame at `at` of `seg` as (body length, CRC), if its length is sane and within `len`.
pub(super) fn frame_at(r: &mut Reader, dir: &Path, seg: u64, len: u64, at: u64) -> io::Result<Option<(usize, u32)>> {
    if at + FRAME as u64 > len {
        return Ok(None);
    }
    let h = r.bytes(dir, seg, len, at, FRAME)?;
    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if n > MAX_RECORD_BYTES || at + (FRAME + n) as u64 > len {
        return Ok(None);
    }
    Ok(Some((n, crc)))
}
