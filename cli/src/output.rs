//! How values are printed: raw bytes, or hex for binary data.

use std::io::{self, Write};

/// Writes one value: its bytes as they are, or lowercase hex with `--hex`.
pub(crate) fn write_value(out: &mut impl Write, value: &[u8], hex: bool) -> io::Result<()> {
    if hex {
        for b in value {
            write!(out, "{b:02x}")?;
        }
        Ok(())
    } else {
        out.write_all(value)
    }
}

/// Writes values one per line.
pub(crate) fn write_lines<'a>(
    out: &mut impl Write,
    values: impl IntoIterator<Item = &'a [u8]>,
    hex: bool,
) -> io::Result<()> {
    for v in values {
        write_value(out, v, hex)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes the topic then each value, separated by TAB, ending the line.
pub(crate) fn write_publication<'a>(
    out: &mut impl Write,
    topic: &[u8],
    values: impl IntoIterator<Item = &'a [u8]>,
    hex: bool,
) -> io::Result<()> {
    out.write_all(topic)?;
    for v in values {
        out.write_all(b"\t")?;
        write_value(out, v, hex)?;
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_raw() {
        let mut out = Vec::new();
        write_lines(&mut out, [&b"ab"[..], b"\x00\xff"], true).unwrap();
        assert_eq!(out, b"6162\n00ff\n");
        let mut out = Vec::new();
        write_publication(&mut out, b"t", [&b"a"[..], b"b"], false).unwrap();
        assert_eq!(out, b"t\ta\tb\n");
    }
}
