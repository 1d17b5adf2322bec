//! How dlt's CSV writer was configured, and reading its files that way.
//!
//! dlt writes CSV jobs with the options of its `[normalize.data_writer]` section (its
//! `CsvFormatConfiguration`): a `delimiter`, an `include_header` switch and an `encoding`, a
//! Python codec name (`utf-8` by default, `latin-1`, `cp1252`, `utf-16`, …). A package does not
//! record them, so [`CsvFormat`] carries them to the reader: the encoding is decoded to UTF-8 as
//! the bytes stream in, and the delimiter of a header line that does not name the table's columns
//! under the configured one is looked for among the usual others (`,` `;` `|` tab), accepted only
//! when every name it splits out is one of the table's columns.

use std::io::{self, BufRead, Read};

use encoding_rs::{DecoderResult, Encoding};

/// The options dlt's CSV writer wrote a package's CSV jobs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvFormat {
    /// The field separator (dlt's `delimiter`, one ASCII character).
    pub delimiter: u8,
    /// Whether each file starts with a line of column names (dlt's `include_header`). Without
    /// one, fields are the table's columns in schema order, as dlt's own load takes them.
    pub include_header: bool,
    /// The files' text encoding (dlt's `encoding`).
    pub encoding: TextEncoding,
}

impl Default for CsvFormat {
    /// dlt's defaults: `,`, a header, UTF-8.
    fn default() -> Self {
        Self {
            delimiter: b',',
            include_header: true,
            encoding: TextEncoding::Utf8,
        }
    }
}

/// Delimiters tried, after the configured one, on a header line that does not split into the
/// table's column names.
pub(crate) const USUAL_DELIMITERS: [u8; 4] = [b',', b';', b'|', b'\t'];

impl CsvFormat {
    /// A delimiter as dlt's configuration gives it: exactly one ASCII character that is not a
    /// quote or a line break.
    pub fn parse_delimiter(text: &str) -> Result<u8, String> {
        match text.as_bytes() {
            [b'"' | b'\n' | b'\r'] => Err(format!("{text:?} cannot separate CSV fields")),
            [byte] if byte.is_ascii() => Ok(*byte),
            _ => Err(format!("{text:?} is not one ASCII character")),
        }
    }
}

/// A text encoding CSV jobs are decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (with or without a byte-order mark): read as it is.
    Utf8,
    /// ISO-8859-1 exactly as Python's `latin-1` writes it: each byte is the code point of its
    /// value (the WHATWG decoders read these labels as windows-1252).
    Latin1,
    /// Any other encoding the WHATWG Encoding Standard knows (`cp1252`, `iso-8859-15`,
    /// `shift_jis`, `utf-16`, …), decoded by `encoding_rs`; a UTF-16 byte-order mark decides
    /// the byte order.
    Other(&'static Encoding),
}

impl TextEncoding {
    /// The encoding a Python codec name stands for (case, `-`, `_` and spaces as Python's
    /// `codecs.lookup` takes them), or `None` for a name berth cannot decode.
    pub fn from_python_name(name: &str) -> Option<Self> {
        let lowered = name.trim().to_ascii_lowercase().replace([' ', '_'], "-");
        let compact = lowered.replace('-', "");
        match compact.as_str() {
            "utf8" | "u8" | "utf" | "utf8sig" | "cp65001" | "ascii" | "usascii" | "646" => return Some(Self::Utf8),
            "latin1" | "latin" | "l1" | "iso88591" | "iso885911987" | "isoir100" | "8859" | "cp819" | "ibm819"
            | "csisolatin1" | "iso8859" => return Some(Self::Latin1),
            "utf16" | "u16" => return Some(Self::Other(encoding_rs::UTF_16LE)),
            "utf16le" => return Some(Self::Other(encoding_rs::UTF_16LE)),
            "utf16be" => return Some(Self::Other(encoding_rs::UTF_16BE)),
            _ => {}
        }
        [lowered.as_str(), compact.as_str()]
            .into_iter()
            .find_map(|label| Encoding::for_label_no_replacement(label.as_bytes()))
            .filter(|e| *e != encoding_rs::X_USER_DEFINED)
            .map(|e| {
                if e == encoding_rs::UTF_8 {
                    Self::Utf8
                } else {
                    Self::Other(e)
                }
            })
    }

    /// The encoding's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Latin1 => "ISO-8859-1",
            Self::Other(e) => e.name(),
        }
    }

    /// `input` decoded to UTF-8 (UTF-8 itself passes through untouched).
    pub(crate) fn reader(self, input: Box<dyn BufRead + Send>) -> Box<dyn BufRead + Send> {
        match self {
            Self::Utf8 => input,
            Self::Latin1 => Box::new(io::BufReader::new(Decoding::new(input, Transcoder::Latin1))),
            Self::Other(encoding) => {
                // Python's `utf-16` writes a byte-order mark, which decides the byte order;
                // its single-byte and CJK codecs never write one.
                let decoder = if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
                    encoding.new_decoder()
                } else {
                    encoding.new_decoder_without_bom_handling()
                };
                Box::new(io::BufReader::new(Decoding::new(input, Transcoder::Whatwg(decoder))))
            }
        }
    }
}

enum Transcoder {
    Latin1,
    Whatwg(encoding_rs::Decoder),
}

/// A `Read` of UTF-8 made from the bytes of another encoding as they are read.
struct Decoding {
    input: Box<dyn BufRead + Send>,
    transcoder: Transcoder,
    decoded: Vec<u8>,
    position: usize,
    finished: bool,
}

impl Decoding {
    fn new(input: Box<dyn BufRead + Send>, transcoder: Transcoder) -> Self {
        Self {
            input,
            transcoder,
            decoded: Vec::new(),
            position: 0,
            finished: false,
        }
    }

    /// Decodes the next piece of input into `decoded`; false at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        self.decoded.clear();
        self.position = 0;
        while self.decoded.is_empty() && !self.finished {
            let source = self.input.fill_buf()?;
            let last = source.is_empty();
            let consumed = match &mut self.transcoder {
                Transcoder::Latin1 => {
                    for &byte in source {
                        if byte < 0x80 {
                            self.decoded.push(byte);
                        } else {
                            self.decoded
                                .extend_from_slice(&[0xC0 | (byte >> 6), 0x80 | (byte & 0x3F)]);
                        }
                    }
                    source.len()
                }
                Transcoder::Whatwg(decoder) => {
                    // Room for all of it: the decoder keeps a split sequence's bytes itself.
                    let room = decoder
                        .max_utf8_buffer_length_without_replacement(source.len())
                        .unwrap_or(source.len() * 3 + 16);
                    self.decoded.resize(room, 0);
                    let (result, read, written) =
                        decoder.decode_to_utf8_without_replacement(source, &mut self.decoded, last);
                    self.decoded.truncate(written);
                    if let DecoderResult::Malformed(..) = result {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bytes that are not {} text", decoder.encoding().name()),
                        ));
                    }
                    read
                }
            };
            self.input.consume(consumed);
            self.finished = last;
        }
        Ok(!self.decoded.is_empty())
    }
}

impl Read for Decoding {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position == self.decoded.len() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.decoded.len() - self.position);
        buf[..n].copy_from_slice(&self.decoded[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(encoding: TextEncoding, bytes: &[u8]) -> io::Result<String> {
        let mut text = String::new();
        encoding
            .reader(Box::new(io::Cursor::new(bytes.to_vec())))
            .read_to_string(&mut text)?;
        Ok(text)
    }

    #[test]
    fn python_codec_names_name_their_encodings() {
        let by = |n| TextEncoding::from_python_name(n);
        assert_eq!(by("utf-8"), Some(TextEncoding::Utf8));
        assert_eq!(by("UTF_8_SIG"), Some(TextEncoding::Utf8));
        assert_eq!(by("latin-1"), Some(TextEncoding::Latin1));
        assert_eq!(by("ISO-8859-1"), Some(TextEncoding::Latin1));
        assert_eq!(by("cp1252"), Some(TextEncoding::Other(encoding_rs::WINDOWS_1252)));
        assert_eq!(by("iso8859_15"), Some(TextEncoding::Other(encoding_rs::ISO_8859_15)));
        assert_eq!(by("shift_jis"), Some(TextEncoding::Other(encoding_rs::SHIFT_JIS)));
        assert_eq!(by("utf_16_be"), Some(TextEncoding::Other(encoding_rs::UTF_16BE)));
        assert_eq!(by("klingon"), None);
        assert_eq!(by("iso-2022-kr"), None);
    }

    #[test]
    fn each_encoding_decodes_as_python_wrote_it() {
        // Python: "café €\x85".encode(...) for each codec.
        assert_eq!(decode(TextEncoding::Latin1, b"caf\xe9 \x85").unwrap(), "café \u{85}");
        let cp1252 = TextEncoding::from_python_name("cp1252").unwrap();
        assert_eq!(decode(cp1252, b"caf\xe9 \x80").unwrap(), "café €");
        let utf16 = TextEncoding::from_python_name("utf-16").unwrap();
        assert_eq!(decode(utf16, b"\xff\xfec\x00a\x00f\x00\xe9\x00").unwrap(), "café");
        assert_eq!(decode(utf16, b"\xfe\xff\x00c\x00a\x00f\x00\xe9").unwrap(), "café");
        let sjis = TextEncoding::from_python_name("shift_jis").unwrap();
        assert_eq!(decode(sjis, b"\x93\xfa\x96\x7b").unwrap(), "日本");
    }

    #[test]
    fn bytes_the_encoding_cannot_have_are_an_error() {
        let sjis = TextEncoding::from_python_name("shift_jis").unwrap();
        let err = decode(sjis, b"ok \x85\xff").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_delimiter_is_one_ascii_character() {
        assert_eq!(CsvFormat::parse_delimiter("|"), Ok(b'|'));
        assert_eq!(CsvFormat::parse_delimiter("\t"), Ok(b'\t'));
        assert!(CsvFormat::parse_delimiter("||").is_err());
        assert!(CsvFormat::parse_delimiter("é").is_err());
        assert!(CsvFormat::parse_delimiter("\"").is_err());
        assert!(CsvFormat::parse_delimiter("").is_err());
    }
}
