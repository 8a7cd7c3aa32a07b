//! RESP2, the Redis wire protocol, as far as the baseline needs it: commands go out as
//! arrays of bulk strings ([`Command`]), replies come back as [`Value`]s parsed
//! incrementally from a read buffer ([`parse`]).
//!
//! Written here rather than taken from a client crate so that the Redis side is driven by
//! exactly the same pipelined, non-blocking worker loop as Cairn: a blocking or async
//! client library would measure a different harness.

use std::io::Write as _;

/// A RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3 foo`, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The integer in an integer reply, or in a bulk string holding a decimal number.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(value) => Some(*value),
            Value::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// Appends commands, one array of bulk strings each, to an output buffer.
pub struct Command<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Command<'a> {
    /// Begins a command of `arguments` arguments (the command name included).
    pub fn begin(out: &'a mut Vec<u8>, arguments: usize) -> Command<'a> {
        let _ = write!(out, "*{arguments}\r\n");
        Command { out }
    }

    /// Appends a text or binary argument.
    pub fn bytes(self, argument: &[u8]) -> Command<'a> {
        let _ = write!(self.out, "${}\r\n", argument.len());
        self.out.extend_from_slice(argument);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends a text argument.
    pub fn text(self, argument: &str) -> Command<'a> {
        self.bytes(argument.as_bytes())
    }

    /// Appends anything displayable (numbers, formatted keys) as an argument, formatted
    /// in place without an intermediate string.
    pub fn display(self, argument: impl std::fmt::Display) -> Command<'a> {
        let mut digits = [0u8; 64];
        let mut cursor = std::io::Cursor::new(&mut digits[..]);
        let _ = write!(cursor, "{argument}");
        let length = cursor.position() as usize;
        self.bytes(&digits[..length])
    }
}

/// Why a buffer cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed RESP reply: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Deepest nesting of arrays accepted: Redis's replies here are at most two deep.
const NESTING_MAX: u32 = 8;

/// Parses one reply from the start of `buffer`: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` if more bytes are needed, or an error if the stream is not RESP.
pub fn parse(buffer: &[u8]) -> Result<Option<(Value, usize)>, ParseError> {
    parse_at(buffer, 0, 0)
}

fn parse_at(buffer: &[u8], start: usize, depth: u32) -> Result<Option<(Value, usize)>, ParseError> {
    if depth > NESTING_MAX {
        return Err(ParseError(format!("arrays nested deeper than {NESTING_MAX}")));
    }
    let Some(line_end) = find_crlf(buffer, start) else { return Ok(None) };
    let Some(&kind) = buffer.get(start) else { return Ok(None) };
    let line = std::str::from_utf8(&buffer[start + 1..line_end]).map_err(|_| ParseError("non-UTF-8 line".into()))?;
    let after = line_end + 2;
    let number = || line.parse::<i64>().map_err(|_| ParseError(format!("{line:?} is not a number")));
    match kind {
        b'+' => Ok(Some((Value::Simple(line.to_string()), after))),
        b'-' => Ok(Some((Value::Error(line.to_string()), after))),
        b':' => Ok(Some((Value::Integer(number()?), after))),
        b'$' => {
            let length = number()?;
            if length < 0 {
                return Ok(Some((Value::Bulk(None), after)));
            }
            let end = after + length as usize;
            if buffer.len() < end + 2 {
                return Ok(None);
            }
            if &buffer[end..end + 2] != b"\r\n" {
                return Err(ParseError("bulk string not followed by CRLF".into()));
            }
            Ok(Some((Value::Bulk(Some(buffer[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                return Ok(Some((Value::Array(None), after)));
            }
            let mut items = Vec::with_capacity((count as usize).min(1_024));
            let mut cursor = after;
            for _ in 0..count {
                match parse_at(buffer, cursor, depth + 1)? {
                    Some((item, next)) => {
                        items.push(item);
                        cursor = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), cursor)))
        }
        other => Err(ParseError(format!("unknown type byte {other:#04x}"))),
    }
}

fn find_crlf(buffer: &[u8], start: usize) -> Option<usize> {
    let rest = buffer.get(start..)?;
    rest.windows(2).position(|pair| pair == b"\r\n").map(|offset| start + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Value) {
        let (value, used) = parse(input).unwrap().expect("a whole reply");
        assert_eq!(value, expected);
        assert_eq!(used, input.len());
        // Every strict prefix is incomplete, never an error or a wrong value.
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        Command::begin(&mut out, 4).text("ZINCRBY").display(format_args!("h:{}:lb", 7)).display(-20).text("p42");
        assert_eq!(out, b"*4\r\n$7\r\nZINCRBY\r\n$6\r\nh:7:lb\r\n$3\r\n-20\r\n$3\r\np42\r\n");
    }

    #[test]
    fn every_reply_type_parses() {
        check(b"+OK\r\n", Value::Simple("OK".into()));
        check(b"-ERR wrong\r\n", Value::Error("ERR wrong".into()));
        check(b":-42\r\n", Value::Integer(-42));
        check(b"$3\r\nfoo\r\n", Value::Bulk(Some(b"foo".to_vec())));
        check(b"$0\r\n\r\n", Value::Bulk(Some(Vec::new())));
        check(b"$-1\r\n", Value::Bulk(None));
        check(b"*-1\r\n", Value::Array(None));
        check(
            b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$2\r\n10\r\n$-1\r\n",
            Value::Array(Some(vec![
                Value::Integer(1),
                Value::Array(Some(vec![Value::Bulk(Some(b"a".to_vec())), Value::Bulk(Some(b"10".to_vec()))])),
                Value::Bulk(None),
            ])),
        );
    }

    #[test]
    fn pipelined_replies_parse_one_at_a_time() {
        let buffer = b":1\r\n+OK\r\n$2\r\nhi\r\n";
        let (first, used) = parse(buffer).unwrap().unwrap();
        assert_eq!(first, Value::Integer(1));
        let (second, more) = parse(&buffer[used..]).unwrap().unwrap();
        assert_eq!(second, Value::Simple("OK".into()));
        assert_eq!(used + more, 9);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12x\r\n").is_err());
        assert!(parse(b"$2\r\nabcd\r\n").is_err());
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn numbers_read_from_integers_and_bulk_strings() {
        assert_eq!(Value::Integer(5).as_i64(), Some(5));
        assert_eq!(Value::Bulk(Some(b"-17".to_vec())).as_i64(), Some(-17));
        assert_eq!(Value::Bulk(None).as_i64(), None);
    }
}
