//! How microsocket values travel in NATS messages, and how topics become
//! subjects (`docs/PROTOCOL.md`, "Across NATS").
//!
//! - One non-empty value is the raw payload, with no header: what a plain NATS
//!   user publishes and reads.
//! - Any other number of values (none, several, or a single empty one) is the
//!   payload in microsocket's argument encoding (each value a 32-bit
//!   big-endian length, then its bytes), with the header
//!   `Microsocket-Values: N`.
//! - A message without that header is read as one value, except that an empty
//!   payload is no values.
//! - A failure is the header `Microsocket-Failure: N` and N values in the
//!   argument encoding: the message, then the details.

use async_nats::{HeaderMap, HeaderName};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The header that says the payload holds this many values in microsocket's
/// argument encoding.
pub const VALUES_HEADER: &str = "Microsocket-Values";
/// The header of a failed request's reply: the payload holds the message and
/// the details, this many values in all.
pub const FAILURE_HEADER: &str = "Microsocket-Failure";
/// The header naming the bridge that exported a publication, so that no
/// bridge brings it back to the bus it came from.
pub const ORIGIN_HEADER: &str = "Microsocket-Origin";

/// The most values one message carries: what fits in one microsocket frame
/// after the topic or tag.
pub const MAX_VALUES: usize = 254;

/// A NATS message body: the headers it needs, if any, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// `None` when the payload is one raw value.
    pub headers: Option<HeaderMap>,
    /// The payload.
    pub payload: Bytes,
}

/// What a NATS message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Values: a publication's or a request's arguments, or an answer.
    Values(Vec<Bytes>),
    /// A failed request's reply.
    Failure {
        /// The human-readable message.
        message: Bytes,
        /// Further details.
        details: Vec<Bytes>,
    },
}

/// Why a NATS message's body cannot be read as microsocket values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The count header is not a number up to [`MAX_VALUES`] (or, for a
    /// failure, at least 1).
    #[error("the {header} header is not a count of values: {value:?}")]
    BadCount {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },
    /// The payload does not hold exactly the values its header counts.
    #[error("the payload does not hold the {expected} values its header counts")]
    BadPayload {
        /// The count the header gave.
        expected: usize,
    },
    /// More values than one frame carries.
    #[error("{0} values: one message carries at most {MAX_VALUES}")]
    TooMany(usize),
    /// A value longer than the argument encoding allows (4 GiB).
    #[error("a value is longer than 4 GiB")]
    TooLong,
}

/// The body for these values.
///
/// # Errors
/// [`MappingError::TooMany`] past [`MAX_VALUES`] values, [`MappingError::TooLong`]
/// for a value over 4 GiB.
pub fn encode_values<I>(values: I) -> Result<Body, MappingError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
{
    let values = values.into_iter();
    let mut count = values.clone();
    if let (Some(only), None) = (count.next(), count.next()) {
        let only = only.as_ref();
        if !only.is_empty() {
            return Ok(Body {
                headers: None,
                payload: Bytes::copy_from_slice(only),
            });
        }
    }
    counted(VALUES_HEADER, values)
}

/// The body of a failed request's reply.
///
/// # Errors
/// As [`encode_values`], for the message and details together.
pub fn encode_failure(message: &[u8], details: &[Bytes]) -> Result<Body, MappingError> {
    counted(
        FAILURE_HEADER,
        std::iter::once(message).chain(details.iter().map(|d| &d[..])),
    )
}

fn counted<I>(header: &'static str, values: I) -> Result<Body, MappingError>
where
    I: Iterator + Clone,
    I::Item: AsRef<[u8]>,
{
    let count = values.clone().count();
    if count > MAX_VALUES {
        return Err(MappingError::TooMany(count));
    }
    let size: usize = values.clone().map(|v| 4 + v.as_ref().len()).sum();
    let mut payload = BytesMut::with_capacity(size);
    for value in values {
        let value = value.as_ref();
        let len = u32::try_from(value.len()).map_err(|_| MappingError::TooLong)?;
        payload.put_u32(len);
        payload.put_slice(value);
    }
    let mut headers = HeaderMap::new();
    headers.insert(header_name(header), count.to_string().as_str());
    Ok(Body {
        headers: Some(headers),
        payload: payload.freeze(),
    })
}

/// Reads a NATS message's body. Values are slices of `payload`, not copies.
///
/// # Errors
/// [`MappingError`] when a count header is not a count or the payload does
/// not hold what it counts.
pub fn decode(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<Content, MappingError> {
    decode_with(&OwnHeaders::of(headers), payload)
}

/// The bridge's own headers of a message, read in one pass over its
/// headers (each look-up by name hashes the name: three per message).
#[derive(Debug, Default)]
pub(crate) struct OwnHeaders<'a> {
    pub(crate) origin: Option<&'a str>,
    values: Option<&'a str>,
    failure: Option<&'a str>,
}

impl<'a> OwnHeaders<'a> {
    pub(crate) fn of(headers: Option<&'a HeaderMap>) -> Self {
        let mut own = OwnHeaders::default();
        for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
            let slot = match name.as_ref() {
                ORIGIN_HEADER => &mut own.origin,
                VALUES_HEADER => &mut own.values,
                FAILURE_HEADER => &mut own.failure,
                _ => continue,
            };
            *slot = values.first().map(|v| v.as_str());
        }
        own
    }
}

/// [`decode`], with the message's headers already read.
pub(crate) fn decode_with(own: &OwnHeaders<'_>, payload: &Bytes) -> Result<Content, MappingError> {
    if let Some(count) = own.failure {
        let name = FAILURE_HEADER;
        let mut values = split(payload, parse_count(name, count)?)?.into_iter();
        let Some(message) = values.next() else {
            return Err(MappingError::BadCount {
                header: name,
                value: count.to_owned(),
            });
        };
        return Ok(Content::Failure {
            message,
            details: values.collect(),
        });
    }
    if let Some(count) = own.values {
        return Ok(Content::Values(split(payload, parse_count(VALUES_HEADER, count)?)?));
    }
    match single_value(own, payload) {
        Some(one) => Ok(Content::Values(vec![one.clone()])),
        None => Ok(Content::Values(Vec::new())),
    }
}

/// The payload, if the message is one value as it is: no count header and
/// not empty (what a plain NATS user publishes).
pub(crate) fn single_value<'p>(own: &OwnHeaders<'_>, payload: &'p Bytes) -> Option<&'p Bytes> {
    let counted = own.failure.is_some() || own.values.is_some();
    (!counted && !payload.is_empty()).then_some(payload)
}

/// One of the bridge's header names, as the NATS client takes it without
/// copying (it copies a `&str` into a new name).
pub(crate) fn header_name(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn parse_count(header: &'static str, value: &str) -> Result<usize, MappingError> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| MappingError::BadCount {
            header,
            value: value.to_owned(),
        })
}

fn split(payload: &Bytes, count: usize) -> Result<Vec<Bytes>, MappingError> {
    let bad = MappingError::BadPayload { expected: count };
    let mut values = Vec::with_capacity(count);
    let mut at = 0usize;
    for _ in 0..count {
        let len_bytes: [u8; 4] = payload
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad.clone())?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let start = at + 4;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| bad.clone())?;
        values.push(payload.slice(start..end));
        at = end;
    }
    if at == payload.len() {
        Ok(values)
    } else {
        Err(bad)
    }
}

/// Why a topic or command has no NATS subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// It is not UTF-8 (NATS subjects are text).
    #[error("not UTF-8")]
    NotText,
    /// It has an empty token (empty, or a `.` first, last or doubled).
    #[error("an empty token")]
    EmptyToken,
    /// It holds a space, a control character or DEL.
    #[error("a space or control character")]
    Whitespace,
    /// A token is `*` or `>`, which NATS reads as a wildcard.
    #[error("a wildcard token")]
    Wildcard,
}

/// Checks that `name` can be the part of a NATS subject after a prefix: UTF-8,
/// non-empty `.`-separated tokens, no spaces or control characters, no token
/// that is a wildcard. The bridge refuses (and counts) any other topic or
/// command rather than escape it, so a subject always reads as the topic it
/// carries.
///
/// # Errors
/// The first rule `name` breaks.
pub fn subject_tail(name: &[u8]) -> Result<&str, SubjectError> {
    let text = std::str::from_utf8(name).map_err(|_| SubjectError::NotText)?;
    if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(SubjectError::Whitespace);
    }
    for token in text.split('.') {
        match token {
            "" => return Err(SubjectError::EmptyToken),
            "*" | ">" => return Err(SubjectError::Wildcard),
            _ => {}
        }
    }
    Ok(text)
}

/// `prefix.tail`, or `tail` alone when `prefix` is empty.
pub(crate) fn join(prefix: &str, tail: &str) -> String {
    if prefix.is_empty() {
        tail.to_owned()
    } else {
        format!("{prefix}.{tail}")
    }
}

/// What headers add to a message, at most, against NATS's `max_payload`.
const HEADERS_AT_MOST: usize = 256;

/// The NATS server's `max_payload`, as last read from the client (0, for
/// unknown, before the first connect). Publications check against this copy:
/// the client hands out its server information only as a copy of all of it,
/// too dear to take for every message.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaxPayload(Arc<AtomicUsize>);

impl MaxPayload {
    /// Reads it again from the client.
    pub(crate) fn refresh(&self, nats: &async_nats::Client) {
        self.0.store(nats.server_info().max_payload, Relaxed);
    }

    /// Whether a payload this long, with the bridge's headers, fits under it
    /// (when unknown: yes).
    pub(crate) fn fits(&self, payload: usize) -> bool {
        let max = self.0.load(Relaxed);
        max == 0 || payload + HEADERS_AT_MOST <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(values: &[Vec<u8>]) -> Content {
        let body = encode_values(values).unwrap();
        decode(body.headers.as_ref(), &body.payload).unwrap()
    }

    #[test]
    fn one_value_is_the_raw_payload() {
        let body = encode_values(["21.5"]).unwrap();
        assert_eq!(body.headers, None);
        assert_eq!(body.payload, "21.5");
        assert_eq!(
            decode(None, &Bytes::from("21.5")).unwrap(),
            Content::Values(vec!["21.5".into()])
        );
    }

    #[test]
    fn no_values_single_empty_and_several_carry_a_count() {
        for values in [vec![], vec![vec![]], vec![b"a".to_vec(), vec![]]] {
            let body = encode_values(&values).unwrap();
            let count = body.headers.as_ref().unwrap().get(VALUES_HEADER).unwrap().to_string();
            assert_eq!(count, values.len().to_string());
            assert_eq!(
                roundtrip(&values),
                Content::Values(values.iter().map(|v| v.clone().into()).collect())
            );
        }
        assert_eq!(decode(None, &Bytes::new()).unwrap(), Content::Values(vec![]));
    }

    #[test]
    fn failures_keep_message_and_details() {
        let body = encode_failure(b"no such command", &[Bytes::from("PONG?")]).unwrap();
        assert_eq!(
            decode(body.headers.as_ref(), &body.payload).unwrap(),
            Content::Failure {
                message: "no such command".into(),
                details: vec!["PONG?".into()]
            }
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(VALUES_HEADER, "2");
        let one = encode_values(["a", ""]).unwrap().payload.slice(..5);
        assert!(matches!(
            decode(Some(&headers), &one),
            Err(MappingError::BadPayload { expected: 2 })
        ));
        headers.insert(VALUES_HEADER, "many");
        assert!(matches!(
            decode(Some(&headers), &one),
            Err(MappingError::BadCount { .. })
        ));
        let mut failure = HeaderMap::new();
        failure.insert(FAILURE_HEADER, "0");
        assert!(decode(Some(&failure), &Bytes::new()).is_err());
        assert!(matches!(encode_values(vec!["x"; 255]), Err(MappingError::TooMany(255))));
    }

    #[test]
    fn subjects_refuse_what_nats_would_misread() {
        assert_eq!(subject_tail(b"sensor.kitchen.temp"), Ok("sensor.kitchen.temp"));
        assert_eq!(subject_tail(b""), Err(SubjectError::EmptyToken));
        assert_eq!(subject_tail(b"a..b"), Err(SubjectError::EmptyToken));
        assert_eq!(subject_tail(b"a.b."), Err(SubjectError::EmptyToken));
        assert_eq!(subject_tail(b"a b"), Err(SubjectError::Whitespace));
        assert_eq!(subject_tail(b"a\nb"), Err(SubjectError::Whitespace));
        assert_eq!(subject_tail(b"a.*.b"), Err(SubjectError::Wildcard));
        assert_eq!(subject_tail(b"a.>"), Err(SubjectError::Wildcard));
        assert_eq!(subject_tail(b"a*.b>"), Ok("a*.b>"));
        assert_eq!(subject_tail(b"\xff"), Err(SubjectError::NotText));
    }

    proptest! {
        #[test]
        fn values_roundtrip_exactly(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12)) {
            prop_assert_eq!(roundtrip(&values), Content::Values(values.iter().map(|v| v.clone().into()).collect()));
        }

        #[test]
        fn any_body_decodes_or_errs(count in "[0-9a-z]{0,4}", payload in proptest::collection::vec(any::<u8>(), 0..64), failure: bool) {
            let mut headers = HeaderMap::new();
            headers.insert(if failure { FAILURE_HEADER } else { VALUES_HEADER }, count.as_str());
            let _ = decode(Some(&headers), &Bytes::from(payload));
        }

        #[test]
        fn accepted_subjects_have_only_plain_tokens(name in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(text) = subject_tail(&name) {
                prop_assert!(text.split('.').all(|t| !t.is_empty() && t != "*" && t != ">" && !t.contains(' ')));
            }
        }
    }
}
