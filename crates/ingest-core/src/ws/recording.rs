//! Recordings of WebSocket feeds: every data frame with its receive time, as JSON Lines.
//!
//! ```text
//! {"format":"finstream-ws-recording/1","provider":"polygon"}
//! {"received_at":"2024-01-02T14:30:00.123456789Z","epoch":1,"text":"[{\"ev\":\"status\",…}]"}
//! {"received_at":"2024-01-02T14:30:00.223Z","epoch":1,"binary":"W//+XQ=="}
//! ```
//! The first line names the format and the provider; each next line is one frame, text as a
//! JSON string or bytes as base64. Control frames (ping, pong, close) are not recorded.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Frame;
use crate::record::ts;

/// The format line's value.
pub const FORMAT: &str = "finstream-ws-recording/1";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    provider: String,
}

#[derive(Serialize)]
struct LineOut<'a> {
    #[serde(with = "ts")]
    received_at: DateTime<Utc>,
    epoch: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<String>,
}

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedFrame {
    /// When it was received.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
    /// Connection epoch it arrived on.
    pub epoch: u64,
    /// A text frame.
    #[serde(default)]
    pub text: Option<String>,
    /// A binary frame, base64.
    #[serde(default)]
    pub binary: Option<String>,
}

impl RecordedFrame {
    /// The frame's payload: text, or the decoded bytes of a binary frame.
    pub fn payload(&self) -> Result<RecordedPayload, String> {
        match (&self.text, &self.binary) {
            (Some(t), None) => Ok(RecordedPayload::Text(t.clone())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(RecordedPayload::Binary)
                .map_err(|e| format!("bad base64: {e}")),
            _ => Err("a frame needs exactly one of `text` and `binary`".into()),
        }
    }
}

/// A recorded frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedPayload {
    /// Text frame.
    Text(String),
    /// Binary frame.
    Binary(Vec<u8>),
}

impl RecordedPayload {
    /// As a [`Frame`].
    pub fn frame(&self) -> Frame<'_> {
        match self {
            RecordedPayload::Text(t) => Frame::Text(t),
            RecordedPayload::Binary(b) => Frame::Binary(b),
        }
    }
}

/// Writes a recording (buffered; flushed on drop).
#[derive(Debug)]
pub struct Recorder {
    out: BufWriter<File>,
}

impl Recorder {
    /// Creates (or truncates) `path` and writes the format line.
    pub fn create(path: &Path, provider: &str) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        serde_json::to_writer(&mut out, &Header { format: FORMAT.into(), provider: provider.into() })?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(Self { out })
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: Frame<'_>, received_at: DateTime<Utc>, epoch: u64) -> io::Result<()> {
        let line = match frame {
            Frame::Text(t) => LineOut { received_at, epoch, text: Some(t), binary: None },
            Frame::Binary(b) => LineOut {
                received_at,
                epoch,
                text: None,
                binary: Some(base64::engine::general_purpose::STANDARD.encode(b)),
            },
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

/// Records `frame` if recording; on a write error, logs it once and stops recording (the
/// stream itself goes on).
pub(crate) fn record(recorder: &mut Option<Recorder>, frame: Frame<'_>, received_at: DateTime<Utc>, epoch: u64) {
    if let Some(r) = recorder
        && let Err(error) = r.write(frame, received_at, epoch)
    {
        tracing::error!(%error, "writing the recording failed; recording stopped");
        *recorder = None;
    }
}

/// Opens a recording: checks the format line and returns the provider and the frames.
pub fn open(path: &Path) -> Result<(String, impl Iterator<Item = Result<RecordedFrame, String>>), String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines.next().ok_or("empty recording")?.map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_str(&first).map_err(|e| format!("not a recording (first line: {e})"))?;
    if header.format != FORMAT {
        return Err(format!("unsupported recording format `{}` (expected {FORMAT})", header.format));
    }
    let frames = lines.enumerate().filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty())).map(|(i, l)| {
        let l = l.map_err(|e| e.to_string())?;
        serde_json::from_str::<RecordedFrame>(&l).map_err(|e| format!("line {}: {e}", i + 2))
    });
    Ok((header.provider, frames))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn round_trips_text_and_binary_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let t = Utc.timestamp_nanos(1_704_205_800_123_456_789);
        {
            let mut r = Recorder::create(&path, "polygon").unwrap();
            r.write(Frame::Text(r#"[{"ev":"T","sym":"A\"B"}]"#), t, 1).unwrap();
            r.write(Frame::Binary(&[0x5b, 0xff, 0x5d]), t, 2).unwrap();
        }
        let (provider, frames) = open(&path).unwrap();
        assert_eq!(provider, "polygon");
        let frames: Vec<RecordedFrame> = frames.map(Result::unwrap).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].payload().unwrap(), RecordedPayload::Text(r#"[{"ev":"T","sym":"A\"B"}]"#.into()));
        assert_eq!(frames[1].payload().unwrap(), RecordedPayload::Binary(vec![0x5b, 0xff, 0x5d]));
        assert_eq!((frames[0].received_at, frames[1].epoch), (t, 2));
    }

    #[test]
    fn refuses_other_files_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"format\":\"other/9\",\"provider\":\"x\"}\n").unwrap();
        assert!(open(&path).err().unwrap().contains("unsupported recording format"));
        std::fs::write(&path, "hello\n").unwrap();
        assert!(open(&path).err().unwrap().contains("not a recording"));
        assert!(open(&dir.path().join("missing")).err().unwrap().contains("cannot open"));
    }
}
