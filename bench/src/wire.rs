//! Hand-written framing for the floor programs: the least code that speaks the
//! protocol, with no library, so the floor measures the socket and nothing else.

use std::io::{self, BufRead, BufReader, Read};

/// Appends a frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, sigil: u8, args: &[&[u8]]) {
    out.push(sigil);
    out.push(args.len() as u8);
    for arg in args {
        out.extend_from_slice(&(arg.len() as u32).to_be_bytes());
        out.extend_from_slice(arg);
    }
}

/// Reads frames from a blocking stream, reusing one body buffer.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    body: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a stream with a 64 KiB read buffer.
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            body: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Reads the next frame; returns its sigil, or `None` at end of stream.
    pub fn next(&mut self) -> io::Result<Option<u8>> {
        let mut header = [0u8; 2];
        if self.inner.fill_buf()?.is_empty() {
            return Ok(None);
        }
        self.inner.read_exact(&mut header)?;
        self.body.clear();
        self.spans.clear();
        for _ in 0..header[1] {
            let mut len = [0u8; 4];
            self.inner.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            let start = self.body.len();
            self.body.resize(start + len, 0);
            self.inner.read_exact(&mut self.body[start..])?;
            self.spans.push((start, start + len));
        }
        Ok(Some(header[0]))
    }

    /// Argument `i` of the last frame (empty if absent).
    pub fn arg(&self, i: usize) -> &[u8] {
        self.spans.get(i).map_or(&[], |&(a, b)| &self.body[a..b])
    }

    /// Whether bytes are buffered, i.e. another frame may be read without blocking.
    pub fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }
}

/// The async twin of [`FrameReader`].
pub struct AsyncFrameReader<R> {
    inner: tokio::io::BufReader<R>,
    body: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl<R: tokio::io::AsyncRead + Unpin> AsyncFrameReader<R> {
    /// Wraps a stream with a 64 KiB read buffer.
    pub fn new(inner: R) -> Self {
        Self {
            inner: tokio::io::BufReader::with_capacity(64 * 1024, inner),
            body: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Reads the next frame; returns its sigil, or `None` at end of stream.
    pub async fn next(&mut self) -> io::Result<Option<u8>> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        if self.inner.fill_buf().await?.is_empty() {
            return Ok(None);
        }
        let mut header = [0u8; 2];
        self.inner.read_exact(&mut header).await?;
        self.body.clear();
        self.spans.clear();
        for _ in 0..header[1] {
            let len = self.inner.read_u32().await? as usize;
            let start = self.body.len();
            self.body.resize(start + len, 0);
            self.inner.read_exact(&mut self.body[start..]).await?;
            self.spans.push((start, start + len));
        }
        Ok(Some(header[0]))
    }

    /// Argument `i` of the last frame (empty if absent).
    pub fn arg(&self, i: usize) -> &[u8] {
        self.spans.get(i).map_or(&[], |&(a, b)| &self.body[a..b])
    }

    /// Whether bytes are buffered.
    pub fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }
}

/// The one-byte tag of request `i`, as the original client counts.
pub fn tag(i: usize) -> [u8; 1] {
    [(i % 256) as u8]
}

/// Fails a measurement whose answer is wrong.
pub fn check(ok: bool, what: &str) -> io::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("wrong answer: {what}"),
        ))
    }
}
