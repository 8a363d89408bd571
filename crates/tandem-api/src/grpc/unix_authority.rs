//! gRPC over a Unix socket for grpc-core clients (the Python SDK among them).
//!
//! grpc-core sends the socket's path, percent-encoded, as the HTTP/2 `:authority` of
//! every call over a `unix:` target (`tmp%2Fsockets%2Fdapr-app-grpc.socket`). That is
//! no valid authority, and the HTTP/2 layer under tonic refuses such a request with
//! `PROTOCOL_ERROR` before tandem sees it (hyperium/h2#487); daprd (grpc-go) takes it.
//! Over a Unix socket the authority names nothing, so this stream, between the socket
//! and the server, rewrites such a value in the client's HEADERS into one the HTTP/2
//! layer takes: every byte that is not unreserved in a URI becomes `_`. The value keeps
//! its length, so the frames, the HPACK block and both sides' dynamic tables stay as they
//! were (later calls that refer to the indexed value get the rewritten one); only a
//! plain (not Huffman-coded) literal `:authority` is touched, which is what grpc-core
//! sends. Anything this does not understand passes
//! through unchanged, and the HTTP/2 layer judges it as before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// The client's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame's header: length (24 bits), type, flags, stream id.
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// A header block larger than this is passed on as it is (the server refuses it anyway).
const MAX_BLOCK: usize = 1 << 20;

/// A Unix stream whose incoming `:authority` values are made acceptable.
pub struct AuthorityFixing {
    inner: UnixStream,
    /// Bytes read from the socket that are not yet examined.
    pending: Vec<u8>,
    /// Examined bytes not yet handed to the server.
    ready: Vec<u8>,
    /// Where `ready` has been handed out up to.
    ready_at: usize,
    /// Whether the preface has gone by.
    past_preface: bool,
    /// Once something is not understood, everything passes through unchanged.
    passthrough: bool,
    /// The socket reached its end.
    eof: bool,
}

impl AuthorityFixing {
    pub fn new(inner: UnixStream) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            past_preface: false,
            passthrough: false,
            eof: false,
        }
    }

    /// Moves every complete unit of `pending` (the preface, a frame, or HEADERS with its
    /// CONTINUATIONs) to `ready`, fixed.
    fn examine(&mut self) {
        loop {
            if self.passthrough || self.eof {
                self.ready.append(&mut self.pending);
                return;
            }
            if !self.past_preface {
                let seen = self.pending.len().min(PREFACE.len());
                if self.pending[..seen] != PREFACE[..seen] {
                    self.passthrough = true;
                    continue;
                }
                if seen < PREFACE.len() {
                    return;
                }
                self.ready.extend(self.pending.drain(..PREFACE.len()));
                self.past_preface = true;
                continue;
            }
            match unit_length(&self.pending) {
                Unit::Incomplete => return,
                Unit::NotUnderstood => self.passthrough = true,
                Unit::Frames { length, headers } => {
                    let mut unit: Vec<u8> = self.pending.drain(..length).collect();
                    if headers {
                        fix_authority(&mut unit);
                    }
                    self.ready.append(&mut unit);
                }
            }
        }
    }
}

enum Unit {
    /// More bytes are needed.
    Incomplete,
    /// Not HTTP/2 as expected: stop examining.
    NotUnderstood,
    /// The next `length` bytes are whole frames; `headers` when they carry a header block.
    Frames { length: usize, headers: bool },
}

fn frame_at(bytes: &[u8], at: usize) -> Option<(usize, u8, u8)> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    let length =
        (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
    Some((length, header[3], header[4]))
}

/// How long the next unit of `bytes` is: one frame, or a HEADERS frame and the
/// CONTINUATION frames up to the one ending its header block.
fn unit_length(bytes: &[u8]) -> Unit {
    let Some((length, kind, flags)) = frame_at(bytes, 0) else {
        return Unit::Incomplete;
    };
    if length > MAX_BLOCK {
        return Unit::NotUnderstood;
    }
    let mut end = FRAME_HEADER + length;
    if kind != HEADERS {
        return if bytes.len() >= end {
            Unit::Frames {
                length: end,
                headers: false,
            }
        } else {
            Unit::Incomplete
        };
    }
    let mut last_flags = flags;
    while last_flags & END_HEADERS == 0 {
        let Some((length, kind, flags)) = frame_at(bytes, end) else {
            return Unit::Incomplete;
        };
        if kind != CONTINUATION || end + FRAME_HEADER + length > MAX_BLOCK {
            return Unit::NotUnderstood;
        }
        end += FRAME_HEADER + length;
        last_flags = flags;
    }
    if bytes.len() >= end {
        Unit::Frames {
            length: end,
            headers: true,
        }
    } else {
        Unit::Incomplete
    }
}

/// Rewrites, in place, a percent-encoded path sent as `:authority` in the header block
/// carried by `frames` (a HEADERS frame and its CONTINUATIONs).
fn fix_authority(frames: &mut [u8]) {
    // Where the block's bytes are within `frames`, in order.
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some((length, kind, flags)) = frame_at(frames, at) {
        let (mut start, mut end) = (at + FRAME_HEADER, at + FRAME_HEADER + length);
        if kind == HEADERS {
            if flags & PADDED != 0 {
                let Some(&padding) = frames.get(start) else {
                    return;
                };
                start += 1;
                end = end.saturating_sub(usize::from(padding));
            }
            if flags & PRIORITY != 0 {
                start += 5;
            }
        }
        if start > end || end > frames.len() {
            return;
        }
        spans.push((start, end));
        at += FRAME_HEADER + length;
    }
    let block: Vec<u8> = spans
        .iter()
        .flat_map(|&(start, end)| frames[start..end].iter().copied())
        .collect();
    let Some(fixes) = authority_fixes(&block) else {
        return;
    };
    // Block offsets back to offsets in `frames`.
    for (offset, byte) in fixes {
        let mut skipped = 0;
        for &(start, end) in &spans {
            if offset < skipped + (end - start) {
                frames[start + offset - skipped] = byte;
                break;
            }
            skipped += end - start;
        }
    }
}

/// The bytes to change in an HPACK block, by offset: those of a plain literal
/// `:authority` value holding `%` or `/`. `None` when the block is not understood.
fn authority_fixes(block: &[u8]) -> Option<Vec<(usize, u8)>> {
    let mut fixes = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        let prefix = match first {
            0x80..=0xff => {
                // Indexed field.
                at = integer(block, at, 7)?.1;
                continue;
            }
            0x40..=0x7f => 6, // literal with incremental indexing
            0x20..=0x3f => {
                // Dynamic table size update.
                at = integer(block, at, 5)?.1;
                continue;
            }
            _ => 4, // literal without indexing, or never indexed
        };
        let (index, next) = integer(block, at, prefix)?;
        at = next;
        // The static table's `:authority` (index 1), or the name written out plainly,
        // as grpc-core writes it.
        let mut is_authority = index == 1;
        if index == 0 {
            let (huffman, name, next) = string(block, at)?;
            is_authority = !huffman && &block[name] == b":authority";
            at = next;
        }
        let (huffman, value, next) = string(block, at)?;
        if is_authority && !huffman {
            let text = &block[value.clone()];
            if text.iter().any(|&byte| byte == b'%' || byte == b'/') {
                for (offset, &byte) in value.clone().zip(text) {
                    if !(byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
                    {
                        fixes.push((offset, b'_'));
                    }
                }
            }
        }
        at = next;
    }
    Some(fixes)
}

/// An HPACK integer with an `prefix`-bit prefix at `at`: its value and where it ends.
fn integer(block: &[u8], at: usize, prefix: u32) -> Option<(usize, usize)> {
    let mask = (1usize << prefix) - 1;
    let mut value = usize::from(*block.get(at)?) & mask;
    let mut at = at + 1;
    if value < mask {
        return Some((value, at));
    }
    let mut shift = 0u32;
    loop {
        let byte = *block.get(at)?;
        at += 1;
        if shift > 28 {
            return None;
        }
        value = value.checked_add(usize::from(byte & 0x7f) << shift)?;
        shift += 7;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
}

/// An HPACK string at `at`: whether it is Huffman-coded, where its bytes are, and
/// where it ends.
fn string(block: &[u8], at: usize) -> Option<(bool, std::ops::Range<usize>, usize)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (length, start) = integer(block, at, 7)?;
    let end = start.checked_add(length)?;
    if end > block.len() {
        return None;
    }
    Some((huffman, start..end, end))
}

impl AsyncRead for AuthorityFixing {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let available = &this.ready[this.ready_at..];
                let count = available.len().min(buf.remaining());
                buf.put_slice(&available[..count]);
                this.ready_at += count;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(read.filled());
                    }
                    this.examine();
                }
            }
        }
    }
}

impl AsyncWrite for AuthorityFixing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AuthorityFixing {
    type ConnectInfo = <UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let length = payload.len();
        let mut bytes = vec![
            (length >> 16) as u8,
            (length >> 8) as u8,
            length as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        bytes.extend_from_slice(payload);
        bytes
    }

    /// A literal with incremental indexing of static name 1 (`:authority`), plain.
    fn authority(value: &[u8]) -> Vec<u8> {
        let mut block = vec![0x41, value.len() as u8];
        block.extend_from_slice(value);
        block
    }

    #[test]
    fn a_percent_encoded_path_becomes_a_valid_authority_of_the_same_length() {
        // `:method POST` (indexed 3), the authority, `:path` literal (static 4).
        let mut block = vec![0x83];
        block.extend(authority(b"tmp%2Fs%2Fdapr-a-grpc.socket"));
        block.extend([0x44, 0x03, b'/', b'x', b'y']);
        let mut frames = frame(HEADERS, END_HEADERS, &block);
        fix_authority(&mut frames);
        let fixed = &frames[FRAME_HEADER + 3..FRAME_HEADER + 3 + 28];
        assert_eq!(fixed, b"tmp_2Fs_2Fdapr-a-grpc.socket");
        assert_eq!(
            &frames[frames.len() - 3..],
            b"/xy",
            "the path is left alone"
        );
    }

    #[test]
    fn the_name_written_out_as_grpc_core_writes_it() {
        // Captured from grpc-python 1.85 over `unix:///tmp/cli-t/cap.sock`.
        let mut block = vec![0x40, 0x0a];
        block.extend_from_slice(b":authority");
        block.push(0x16);
        block.extend_from_slice(b"tmp%2Fcli-t%2Fcap.sock");
        block.extend([0x83, 0x86]);
        let mut frames = frame(HEADERS, END_HEADERS, &block);
        fix_authority(&mut frames);
        let text = String::from_utf8_lossy(&frames).into_owned();
        assert!(
            text.contains(":authority\u{16}tmp_2Fcli-t_2Fcap.sock"),
            "{text:?}"
        );
    }

    #[test]
    fn across_continuations_padding_and_priority() {
        let mut block = authority(b"/run/x.sock");
        block.extend([0x82]);
        let (first, second) = block.split_at(5);
        let mut payload = vec![2]; // pad length
        payload.extend([0, 0, 0, 0, 16]); // priority
        payload.extend_from_slice(first);
        payload.extend([0, 0]);
        let mut frames = frame(HEADERS, PADDED | PRIORITY, &payload);
        frames.extend(frame(CONTINUATION, END_HEADERS, second));
        assert!(
            matches!(unit_length(&frames), Unit::Frames { length, headers: true } if length == frames.len())
        );
        fix_authority(&mut frames);
        let text = String::from_utf8_lossy(&frames).into_owned();
        // "/run/x.sock" split after "/ru" by the CONTINUATION frame's header.
        assert!(
            text.contains("_ru\0") && text.contains("n_x.sock"),
            "{text:?}"
        );
        assert!(!text.contains('/'), "{text:?}");
    }

    #[test]
    fn valid_authorities_huffman_and_garbage_pass_unchanged() {
        for block in [
            authority(b"localhost:50001"),
            vec![0x41, 0x83, 0x01, 0x02, 0x03], // Huffman-coded
            vec![0x41, 0x7f],                   // a string running past the end
            vec![0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // an integer too long
        ] {
            let mut frames = frame(HEADERS, END_HEADERS, &block);
            let before = frames.clone();
            fix_authority(&mut frames);
            assert_eq!(frames, before);
        }
        assert!(matches!(
            unit_length(&frame(HEADERS, 0, b"ab")),
            Unit::Incomplete
        ));
        let mut bad = frame(HEADERS, 0, b"ab");
        bad.extend(frame(0x0, 0, b"data"));
        assert!(matches!(unit_length(&bad), Unit::NotUnderstood));
    }
}
