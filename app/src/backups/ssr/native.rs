//! ClickHouse's `Native` format, read just far enough to count rows, and the byte plumbing
//! around it: files are `Native` streams in an LZ4 frame, hashed as they are written.
//!
//! A `Native` stream (as the HTTP interface sends it, without block info) is a sequence
//! of blocks: the column count and the row count (unsigned LEB128), then per column its
//! name, its type (each a length-prefixed string) and its values. Counting rows means
//! walking every column's values, which needs each type's layout: fixed widths, strings,
//! `Nullable`, `Array` and `FixedString` cover every table Salvage keeps; another type is
//! reported by name rather than guessed.

use std::io::{self, BufRead, Read, Write};

use sha2::{Digest, Sha256};

/// Rows in the `Native` stream `reader`, read to its end.
pub fn count_rows(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut rows = 0u64;
    while !reader.fill_buf()?.is_empty() {
        let columns = read_varuint(reader)?;
        let block_rows = read_varuint(reader)?;
        for _ in 0..columns {
            let _name = read_string(reader)?;
            let kind = String::from_utf8(read_string(reader)?)
                .map_err(|_| invalid("a column type that is not UTF-8"))?;
            skip_values(reader, kind.trim(), block_rows)?;
        }
        rows += block_rows;
    }
    Ok(rows)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a Native stream: {what}"),
    )
}

fn read_varuint(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = match reader.fill_buf()?.first() {
            Some(byte) => *byte,
            None => return Err(eof()),
        };
        reader.consume(1);
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("a length longer than 64 bits"))
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ends inside a block",
    )
}

fn read_string(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let len = read_varuint(reader)?;
    if len > 1 << 20 {
        return Err(invalid("a column name or type over 1 MiB"));
    }
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Skips `bytes` bytes in the reader's buffer, without copying them anywhere.
fn skip(reader: &mut impl BufRead, mut bytes: u64) -> io::Result<()> {
    while bytes > 0 {
        let available = reader.fill_buf()?.len() as u64;
        if available == 0 {
            return Err(eof());
        }
        let step = available.min(bytes);
        reader.consume(step as usize);
        bytes -= step;
    }
    Ok(())
}

/// The width in bytes of one value of a fixed-width type, if `kind` is one.
fn fixed_width(kind: &str) -> Option<u64> {
    let base = kind.split('(').next().unwrap_or(kind);
    Some(match base {
        "UInt8" | "Int8" | "Enum8" | "Bool" => 1,
        "UInt16" | "Int16" | "Enum16" | "Date" => 2,
        "UInt32" | "Int32" | "Float32" | "DateTime" | "Date32" | "IPv4" => 4,
        "UInt64" | "Int64" | "Float64" | "DateTime64" => 8,
        "UInt128" | "Int128" | "UUID" | "IPv6" => 16,
        "UInt256" | "Int256" => 32,
        "Decimal32" => 4,
        "Decimal64" => 8,
        "Decimal128" => 16,
        "Decimal256" => 32,
        "Decimal" => {
            let precision: u32 = inner(kind)?.split(',').next()?.trim().parse().ok()?;
            match precision {
                0..=9 => 4,
                10..=18 => 8,
                19..=38 => 16,
                _ => 32,
            }
        }
        "FixedString" => inner(kind)?.trim().parse().ok()?,
        _ => return None,
    })
}

/// What is inside the outermost parentheses of `kind`.
fn inner(kind: &str) -> Option<&str> {
    let open = kind.find('(')?;
    kind.strip_suffix(')').map(|rest| &rest[open + 1..])
}

fn skip_values(reader: &mut impl BufRead, kind: &str, rows: u64) -> io::Result<()> {
    if let Some(width) = fixed_width(kind) {
        return skip(reader, width * rows);
    }
    if kind == "String" {
        for _ in 0..rows {
            let len = read_varuint(reader)?;
            skip(reader, len)?;
        }
        return Ok(());
    }
    if let Some(nested) = kind
        .strip_prefix("Nullable(")
        .and_then(|k| k.strip_suffix(')'))
    {
        skip(reader, rows)?; // the null map, one byte per row
        return skip_values(reader, nested, rows);
    }
    if let Some(nested) = kind
        .strip_prefix("Array(")
        .and_then(|k| k.strip_suffix(')'))
    {
        // Cumulative offsets, one UInt64 per row; the last is the nested values' count.
        let mut total = 0u64;
        for _ in 0..rows {
            let mut offset = [0u8; 8];
            reader.read_exact(&mut offset)?;
            total = u64::from_le_bytes(offset);
        }
        return skip_values(reader, nested, total);
    }
    Err(invalid(&format!(
        "the column type {kind} is not one Salvage reads"
    )))
}

/// A file being written: every byte counted and hashed on its way to disk.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The writer back, with the bytes written and their SHA-256 (hex).
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file being read: every byte counted and hashed as it is read.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (so the hash covers the whole file), then the bytes read and
    /// their SHA-256 (hex).
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.bytes, hex(&self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// Reads from `inner` and writes a copy of every byte read to `copy`.
pub struct TeeReader<R, W> {
    pub inner: R,
    pub copy: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.copy.write_all(&buf[..read])?;
        Ok(read)
    }
}

/// A blocking reader over chunks sent from async code (a `Native` stream arriving from
/// ClickHouse, read on a blocking thread that counts and compresses it).
pub struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl ChannelReader {
    pub fn new(chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        Self {
            chunks,
            current: bytes::Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varuint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn string(out: &mut Vec<u8>, text: &[u8]) {
        varuint(out, text.len() as u64);
        out.extend_from_slice(text);
    }

    /// A block of `rows` rows with a UUID, a String, a Nullable(UInt32) and an
    /// Array(UInt16) column.
    fn block(rows: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varuint(&mut out, 4);
        varuint(&mut out, rows);
        string(&mut out, b"id");
        string(&mut out, b"UUID");
        out.extend(std::iter::repeat_n(7u8, 16 * rows as usize));
        string(&mut out, b"name");
        string(&mut out, b"String");
        for row in 0..rows {
            string(&mut out, "x".repeat(row as usize % 300).as_bytes());
        }
        string(&mut out, b"duration_ms");
        string(&mut out, b"Nullable(UInt32)");
        out.extend(std::iter::repeat_n(0u8, rows as usize));
        out.extend(std::iter::repeat_n(1u8, 4 * rows as usize));
        string(&mut out, b"codes");
        string(&mut out, b"Array(UInt16)");
        for row in 0..rows {
            out.extend_from_slice(&(row * 2).to_le_bytes());
        }
        let nested = rows.saturating_sub(1) * 2;
        out.extend(std::iter::repeat_n(0u8, 2 * nested as usize));
        out
    }

    #[test]
    fn counts_the_rows_of_every_block() {
        let mut stream = block(3);
        stream.extend(block(0));
        stream.extend(block(1000));
        let rows = count_rows(&mut io::Cursor::new(stream)).unwrap();
        assert_eq!(rows, 1003);
    }

    #[test]
    fn a_stream_cut_inside_a_block_is_an_error_not_a_smaller_count() {
        let mut stream = block(50);
        stream.truncate(stream.len() - 3);
        let error = count_rows(&mut io::Cursor::new(stream)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn an_unknown_type_is_named() {
        let mut stream = Vec::new();
        varuint(&mut stream, 1);
        varuint(&mut stream, 1);
        string(&mut stream, b"m");
        string(&mut stream, b"Map(String, String)");
        let error = count_rows(&mut io::Cursor::new(stream)).unwrap_err();
        assert!(error.to_string().contains("Map(String, String)"), "{error}");
    }

    #[test]
    fn widths_of_parameterised_types() {
        assert_eq!(fixed_width("DateTime('UTC')"), Some(4));
        assert_eq!(fixed_width("DateTime64(3, 'UTC')"), Some(8));
        assert_eq!(fixed_width("Enum8('generation' = 1, 'trace' = 2)"), Some(1));
        assert_eq!(fixed_width("FixedString(12)"), Some(12));
        assert_eq!(fixed_width("Decimal(20, 4)"), Some(16));
        assert_eq!(fixed_width("String"), None);
    }

    #[test]
    fn hashing_writer_and_reader_agree() {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"salvage").unwrap();
        let (bytes, len, sha) = writer.finish();
        let (read_len, read_sha) = HashingReader::new(io::Cursor::new(bytes)).finish().unwrap();
        assert_eq!((len, sha.as_str()), (read_len, read_sha.as_str()));
        assert_eq!(
            sha,
            "224829cfb38f6b5e62c56f8aae33428fbfbf7003feaa4a849b69ff85435bec83"
        ); // sha256sum of "salvage"
    }
}
