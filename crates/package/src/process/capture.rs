//! Bounded capture of a child's stdout or stderr: the first bytes are kept, the rest is read and
//! dropped, so a chatty child never blocks on a full pipe.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of one read from a child's pipe.
const READ_CHUNK: usize = 8192;

/// Output of one stream: the first `limit` bytes, the rest read and discarded.
pub(super) struct Capture {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capture {
    /// An empty capture keeping at most `limit` bytes.
    pub(super) fn new(limit: usize) -> Capture {
        Capture { buf: Vec::new(), limit, truncated: false }
    }

    /// Reads `reader` to its end (or first error), keeping what fits.
    pub(super) async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: Option<R>) {
        let Some(mut reader) = reader else { return };
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading child output failed");
                    return;
                }
            }
        }
    }

    /// Keeps what fits of `data` and notes whether anything was dropped.
    pub(super) fn push(&mut self, data: &[u8]) {
        let take = self.limit.saturating_sub(self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.truncated |= take < data.len();
    }

    /// Lossy UTF-8 of at most `limit` bytes, and whether anything was dropped.
    pub(super) fn finish(mut self) -> (String, bool) {
        if self.truncated {
            // Do not turn a character cut in half by the limit into a replacement character.
            let cut = incomplete_tail(&self.buf);
            self.buf.truncate(self.buf.len() - cut);
        }
        let mut text = String::with_capacity(self.buf.len());
        for chunk in self.buf.utf8_chunks() {
            let valid = chunk.valid();
            if text.len() + valid.len() > self.limit {
                let mut end = self.limit - text.len();
                while !valid.is_char_boundary(end) {
                    end -= 1;
                }
                text.push_str(&valid[..end]);
                return (text, true);
            }
            text.push_str(valid);
            if !chunk.invalid().is_empty() {
                if text.len() + char::REPLACEMENT_CHARACTER.len_utf8() > self.limit {
                    return (text, true);
                }
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        (text, self.truncated)
    }
}

/// Length of an incomplete UTF-8 sequence at the end of `buf` (0 if none).
fn incomplete_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(4) {
        let byte = buf[buf.len() - back];
        if byte & 0xC0 != 0x80 {
            let needed = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}
